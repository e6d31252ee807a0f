#include "pipeline/conversion_pool.h"

#include <utility>

namespace holo::pipeline {

ConversionPool::ConversionPool(int threads, std::function<Convert()> make_converter) {
  // Enough queued frames to keep every thread busy while the decoder delivers the next ones;
  // each holds a reference to one of the decoder's frame buffers.
  capacity_ = static_cast<size_t>(2 * threads);
  try {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, make_converter] { run(make_converter); });
    }
  } catch (...) {
    stop();  // the threads started so far (a thread that cannot start throws std::system_error)
    throw;
  }
}

ConversionPool::~ConversionPool() { stop(); }

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
  const size_t dropped = jobs_.size();
  for (Job& job : jobs_) job.skip = true;
  done_.wait(lock, [&] { return jobs_.empty() && running_ == 0; });
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

void ConversionPool::run(const std::function<Convert()>& make_converter) {
  // A converter that cannot be made fails each frame given to this thread, as a conversion
  // error would.
  Convert convert;
  std::exception_ptr broken;
  try {
    convert = make_converter();
  } catch (...) {
    broken = std::current_exception();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stop_, and nothing left
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    ++running_;
    const bool skip = job.skip || error_ != nullptr;
    lock.unlock();
    done_.notify_all();  // room in the queue
    std::exception_ptr error;
    if (!skip) {
      try {
        if (broken) std::rethrow_exception(broken);
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
