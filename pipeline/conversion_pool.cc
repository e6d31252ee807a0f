#include "pipeline/conversion_pool.h"

#include <stdexcept>
#include <string>
#include <utility>

namespace holo::pipeline {

ConversionPool::ConversionPool(int threads, const std::function<Convert()>& make_converter) {
  if (threads <= 0) {
    throw std::invalid_argument("a conversion pool needs at least one thread, not " +
                                std::to_string(threads));
  }
  // Enough queued frames to keep every thread busy while the decoder delivers the next ones;
  // each holds a reference to one of the decoder's frame buffers.
  capacity_ = static_cast<size_t>(2 * threads);
  // Every converter is made before a thread starts: one that cannot be made fails the open.
  std::vector<Convert> converters;
  for (int i = 0; i < threads; ++i) converters.push_back(make_converter());
  try {
    for (Convert& convert : converters) {
      threads_.emplace_back([this, convert = std::move(convert)] { run(convert); });
    }
  } catch (...) {
    stop();  // the threads started so far (a thread that cannot start throws std::system_error)
    throw;
  }
}

ConversionPool::~ConversionPool() {
  abandon();  // the buffers of frames still queued may be gone
  stop();
}

void ConversionPool::submit(av::FramePtr frame, const std::vector<int64_t>& slots,
                            FrameBuffer& out) {
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return jobs_.size() < capacity_ || error_; });
  // A frame that could not be converted fails the request now, as it does on one thread.
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  jobs_.push_back(Job{std::move(frame), slots, &out});
  lock.unlock();
  work_.notify_one();
}

void ConversionPool::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return jobs_.empty() && running_ == 0; });
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

size_t ConversionPool::abandon() noexcept {
  std::unique_lock<std::mutex> lock(mutex_);
  // Off the queue at once, and their frame references released.
  const size_t dropped = jobs_.size();
  jobs_.clear();
  done_.wait(lock, [&] { return running_ == 0; });
  error_ = nullptr;
  return dropped;
}

void ConversionPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_.notify_all();
  for (auto& t : threads_) t.join();
}

void ConversionPool::run(const Convert& convert) {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stop_, and nothing left
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    ++running_;
    // After a failed frame the request fails: the frames behind it are not converted.
    const bool skip = error_ != nullptr;
    lock.unlock();
    done_.notify_all();  // room in the queue
    std::exception_ptr error;
    if (!skip) {
      try {
        convert(job.frame.get(), job.slots, *job.out);
      } catch (...) {
        error = std::current_exception();
      }
    }
    job.frame.reset();
    lock.lock();
    if (error && !error_) error_ = error;
    --running_;
    done_.notify_all();
  }
}

}  // namespace holo::pipeline
