// The queue between a decoder and its conversion threads, with converters that can be held
// and made to fail: what a failing request leaves behind does not depend on timing here, as it
// does through a codec (Decoder.FailingRequestWithFramesInConversionRecovers).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/conversion_pool.h"

namespace holo::pipeline {
namespace {

using ::testing::HasSubstr;

/// A frame named by its pts, with a buffer whose references the test can count.
av::FramePtr numbered_frame(int64_t pts) {
  av::FramePtr f = av::make_frame();
  f->pts = pts;
  f->buf[0] = av_buffer_alloc(16);
  return f;
}

/// Writes a frame's pts into every slot of `out` (one byte per frame), and records it.
struct Recorder {
  std::mutex mutex;
  std::vector<int64_t> converted;
  void write(const AVFrame* frame, const std::vector<int64_t>& slots, FrameBuffer& out) {
    for (int64_t s : slots) out.data[static_cast<size_t>(s)] = static_cast<uint8_t>(frame->pts);
    std::lock_guard<std::mutex> lock(mutex);
    converted.push_back(frame->pts);
  }
  std::vector<int64_t> snapshot() {
    std::lock_guard<std::mutex> lock(mutex);
    return converted;
  }
};

FrameBuffer bytes(int64_t n) {
  FrameBuffer out;
  out.count = n;
  out.data.assign(static_cast<size_t>(n), 0);
  return out;
}

TEST(ConversionPool, FramesFillTheirSlots) {
  Recorder rec;
  ConversionPool pool(3, [&] {
    return [&](const AVFrame* f, const std::vector<int64_t>& slots, FrameBuffer& out) {
      rec.write(f, slots, out);
    };
  });
  FrameBuffer out = bytes(40);
  // Frame 7 fills three positions (a clip that repeats it), the others one each.
  pool.submit(numbered_frame(7), {0, 35, 39}, out);
  for (int64_t i = 1; i <= 30; ++i) pool.submit(numbered_frame(100 + i), {i}, out);
  pool.wait();
  EXPECT_EQ(out.data[0], 7);
  EXPECT_EQ(out.data[35], 7);
  EXPECT_EQ(out.data[39], 7);
  for (int64_t i = 1; i <= 30; ++i) EXPECT_EQ(out.data[i], 100 + i) << "slot " << i;
  EXPECT_EQ(out.data[31], 0);
  EXPECT_EQ(rec.snapshot().size(), 31u);
}

// A request that fails while one frame is being converted and two wait in the queue: abandon()
// returns only when nothing writes into the buffer any more and every frame reference is
// released, and the pool serves the next request.
TEST(ConversionPool, AbandonLeavesNothingRunningOrQueued) {
  Recorder rec;
  std::promise<void> started, gate;
  std::shared_future<void> open = gate.get_future().share();
  std::atomic<int> running{0};
  ConversionPool pool(1, [&] {
    return [&](const AVFrame* f, const std::vector<int64_t>& slots, FrameBuffer& out) {
      ++running;
      if (f->pts == 0) {
        started.set_value();
        open.wait();
      }
      rec.write(f, slots, out);
      --running;
    };
  });
  auto out = std::make_unique<FrameBuffer>(bytes(3));
  std::vector<AVBufferRef*> mine;
  for (int64_t i = 0; i < 3; ++i) {
    av::FramePtr f = numbered_frame(i);
    mine.push_back(av_buffer_ref(f->buf[0]));
    pool.submit(std::move(f), {i}, *out);
    // Frame 0 is in the converter before the others are queued (the queue holds 2).
    if (i == 0) started.get_future().wait();
  }
  std::future<size_t> dropped = std::async(std::launch::async, [&] { return pool.abandon(); });
  // abandon() cannot return while frame 0 is held.
  EXPECT_EQ(dropped.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  gate.set_value();
  const size_t n = dropped.get();
  EXPECT_EQ(running.load(), 0) << "a conversion still ran after abandon() returned";
  const std::vector<int64_t> converted = rec.snapshot();
  // The frames marked before the thread took them are dropped, not converted.
  EXPECT_EQ(converted.size() + n, 3u);
  EXPECT_EQ(converted.front(), 0);
  EXPECT_LE(n, 2u);
  for (AVBufferRef* ref : mine) {
    EXPECT_EQ(av_buffer_get_ref_count(ref), 1) << "the pool kept a frame reference";
    av_buffer_unref(&ref);
  }
  out.reset();  // the failing request's buffer goes

  FrameBuffer next = bytes(2);
  pool.submit(numbered_frame(41), {1}, next);
  pool.wait();
  EXPECT_EQ(next.data[1], 41);
}

TEST(ConversionPool, ConversionErrorFailsTheRequestOnce) {
  Recorder rec;
  ConversionPool pool(2, [&] {
    return [&](const AVFrame* f, const std::vector<int64_t>& slots, FrameBuffer& out) {
      if (f->pts == 13) throw std::runtime_error("frame 13 has no pixels");
      rec.write(f, slots, out);
    };
  });
  FrameBuffer out = bytes(20);
  pool.submit(numbered_frame(12), {0}, out);
  pool.submit(numbered_frame(13), {1}, out);
  try {
    pool.wait();
    ADD_FAILURE() << "wait() returned after a failed conversion";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("frame 13"));
  }
  // Reported once: the next request succeeds.
  pool.submit(numbered_frame(14), {2}, out);
  pool.wait();
  EXPECT_EQ(out.data[0], 12);
  EXPECT_EQ(out.data[2], 14);

  // While a request goes on, the error fails a later submit(), as the decoding thread's own
  // conversion would fail the request at that frame. The queue holds 4: within a few frames
  // after frame 13 is taken, submit() must throw.
  pool.submit(numbered_frame(13), {3}, out);
  int accepted = 0;
  bool threw = false;
  for (; accepted < 1000 && !threw; ++accepted) {
    try {
      pool.submit(numbered_frame(15), {4}, out);
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(e.what(), HasSubstr("frame 13"));
      threw = true;
    }
  }
  EXPECT_TRUE(threw) << "submit() went on taking frames after a failed conversion";
  pool.abandon();
  pool.submit(numbered_frame(16), {5}, out);
  pool.wait();
  EXPECT_EQ(out.data[5], 16);
}

TEST(ConversionPool, ConverterThatCannotBeMadeFailsItsFrames) {
  ConversionPool pool(2, []() -> ConversionPool::Convert {
    throw std::runtime_error("no swscale context for yuv420p");
  });
  FrameBuffer out = bytes(1);
  pool.submit(numbered_frame(1), {0}, out);
  try {
    pool.wait();
    ADD_FAILURE() << "a frame was converted without a converter";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no swscale context"));
  }
  EXPECT_EQ(out.data[0], 0);
}

}  // namespace
}  // namespace holo::pipeline
