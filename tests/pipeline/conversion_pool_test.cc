// The queue between a decoder and its conversion threads, with converters that the tests hold
// and make fail: a failing request finds frames queued and one being converted whatever the
// timing, which through a codec it may or may not
// (Decoder.FailingRequestWithFramesInConversionRecovers).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
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
  FrameBuffer out = bytes(40);  // before the pool: it must outlive the pool's threads
  ConversionPool pool(3, [&] {
    return [&](const AVFrame* f, const std::vector<int64_t>& slots, FrameBuffer& out) {
      rec.write(f, slots, out);
    };
  });
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

int refs(AVBufferRef* ref) { return av_buffer_get_ref_count(ref); }

/// A converter holds its frame until the test opens the gate.
struct Gate {
  std::promise<void> promise;
  std::shared_future<void> opened = promise.get_future().share();
  bool open_ = false;
  void open() {
    if (!open_) promise.set_value();
    open_ = true;
  }
};

/// Opens the gate when it goes: declared after the pool, it lets a held converter finish
/// before the pool joins its thread when an assertion returns early.
struct OpenOnExit {
  Gate& gate;
  ~OpenOnExit() { gate.open(); }
};

// A request that fails while one frame is being converted and two wait in the queue:
// abandon() takes the two off the queue and releases them at once, returns only when the
// frame being converted is done, and the pool serves the next request.
TEST(ConversionPool, AbandonDropsQueuedFramesAndWaitsForTheRunningOne) {
  Recorder rec;
  std::promise<void> started;
  std::atomic<int> running{0};
  auto out = std::make_unique<FrameBuffer>(bytes(3));
  FrameBuffer next = bytes(2);
  Gate gate;
  ConversionPool pool(1, [&] {
    return [&](const AVFrame* f, const std::vector<int64_t>& slots, FrameBuffer& out) {
      ++running;
      if (f->pts == 0) {
        started.set_value();
        gate.opened.wait();
      }
      rec.write(f, slots, out);
      --running;
    };
  });
  std::future<size_t> dropped;  // its destructor waits for abandon(), which waits for the gate
  OpenOnExit open_on_exit{gate};
  std::vector<AVBufferRef*> mine;
  for (int64_t i = 0; i < 3; ++i) {
    av::FramePtr f = numbered_frame(i);
    mine.push_back(av_buffer_ref(f->buf[0]));
    pool.submit(std::move(f), {i}, *out);
    // Frame 0 is in the converter before the others are queued (the queue holds 2).
    if (i == 0) {
      ASSERT_EQ(started.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
    }
  }
  EXPECT_EQ(refs(mine[1]), 2);  // the test's and the queue's
  dropped = std::async(std::launch::async, [&] { return pool.abandon(); });
  // Frames 1 and 2 are released while frame 0 is still held: the queue dropped them.
  for (int wait_ms = 0; refs(mine[1]) > 1 || refs(mine[2]) > 1; ++wait_ms) {
    ASSERT_LT(wait_ms, 60000) << "abandon() kept the queued frames";
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // abandon() cannot return while frame 0 is held.
  EXPECT_EQ(dropped.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  gate.open();
  EXPECT_EQ(dropped.get(), 2u);
  EXPECT_EQ(running.load(), 0) << "a conversion still ran after abandon() returned";
  EXPECT_EQ(rec.snapshot(), std::vector<int64_t>{0});
  for (AVBufferRef* ref : mine) {
    EXPECT_EQ(refs(ref), 1) << "the pool kept a frame reference";
    av_buffer_unref(&ref);
  }
  out.reset();  // the failing request's buffer goes

  pool.submit(numbered_frame(41), {1}, next);
  pool.wait();
  EXPECT_EQ(next.data[1], 41);
}

TEST(ConversionPool, ConversionErrorFailsTheRequestOnce) {
  Recorder rec;
  FrameBuffer out = bytes(20);
  ConversionPool pool(1, [&] {
    return [&](const AVFrame* f, const std::vector<int64_t>& slots, FrameBuffer& out) {
      if (f->pts == 13) throw std::runtime_error("frame 13 has no pixels");
      rec.write(f, slots, out);
    };
  });
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
  // conversion would fail the request at that frame. With one thread and a queue of 2, the
  // third submit() after frame 13 at the latest finds the queue full until frame 13 has failed.
  pool.submit(numbered_frame(13), {3}, out);
  int accepted = 0;
  bool threw = false;
  for (; accepted < 3 && !threw; ++accepted) {
    try {
      pool.submit(numbered_frame(15 + accepted), {4 + accepted}, out);
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(e.what(), HasSubstr("frame 13"));
      threw = true;
    }
  }
  EXPECT_TRUE(threw) << "submit() went on taking frames after a failed conversion";
  pool.abandon();
  pool.submit(numbered_frame(19), {9}, out);
  pool.wait();
  EXPECT_EQ(out.data[9], 19);
  EXPECT_EQ(out.data[3], 0);
}

TEST(ConversionPool, ConverterThatCannotBeMadeFailsTheOpen) {
  int made = 0;
  try {
    ConversionPool pool(3, [&]() -> ConversionPool::Convert {
      if (++made == 2) throw std::runtime_error("no swscale context for yuv420p");
      return [](const AVFrame*, const std::vector<int64_t>&, FrameBuffer&) {};
    });
    ADD_FAILURE() << "a pool started without its converters";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no swscale context"));
  }
  EXPECT_EQ(made, 2);
  EXPECT_THROW(ConversionPool(0, [] { return ConversionPool::Convert(); }), std::invalid_argument);
}

}  // namespace
}  // namespace holo::pipeline
