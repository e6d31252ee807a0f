#pragma once
/// Threads that convert decoded frames to RGB while the decoder goes on decoding
/// (docs/pipeline.md, "Threads"). Internal to the libav decoders; a header of its own so that
/// its queue can be tested without a codec.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "pipeline/av_handles.h"
#include "pipeline/decoder.h"

namespace holo::pipeline {

/// Frames are queued with the positions of the clip they fill; the decoder waits for all of
/// them before it returns the clip.
class ConversionPool {
 public:
  /// Writes a frame (in system memory) into `out` at every position in `slots`.
  using Convert = std::function<void(const AVFrame* frame, const std::vector<int64_t>& slots,
                                     FrameBuffer& out)>;
  /// Starts `threads` (at least 1) threads, each with a converter of its own from
  /// `make_converter` (swscale contexts are not thread-safe); a converter that cannot be made
  /// throws here. At most 2 x `threads` frames wait in the queue.
  ConversionPool(int threads, const std::function<Convert()>& make_converter);
  /// Drops the frames still queued (as abandon()), waits for those being converted, joins the
  /// threads.
  ~ConversionPool();
  ConversionPool(const ConversionPool&) = delete;
  ConversionPool& operator=(const ConversionPool&) = delete;

  /// Queues `frame` for the positions `slots` of `out`; waits while the queue is full. `out`
  /// must stay in place until wait() or abandon() returns. Throws the error of a frame that
  /// could not be converted since the last wait(), instead of queueing this one.
  void submit(av::FramePtr frame, const std::vector<int64_t>& slots, FrameBuffer& out);
  /// Waits until every queued frame is converted; rethrows the first conversion error.
  void wait();
  /// The same, for a request that is failing anyway and whose buffer is about to go: the
  /// frames still queued are taken off the queue unconverted and their references released at
  /// once, the ones being converted are waited for, and a conversion error is forgotten. The
  /// pool takes new frames afterwards. Returns the number of frames dropped.
  size_t abandon() noexcept;

 private:
  struct Job {
    av::FramePtr frame;
    std::vector<int64_t> slots;
    FrameBuffer* out = nullptr;
  };
  void run(const Convert& convert);
  void stop();

  std::mutex mutex_;
  std::condition_variable work_;  ///< a job was queued, or stop_
  std::condition_variable done_;  ///< a job left the queue or finished
  std::deque<Job> jobs_;
  size_t capacity_ = 2;
  int running_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

}  // namespace holo::pipeline
