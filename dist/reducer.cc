#include "dist/reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <map>
#include <thread>

#include "core/error.h"
#include "core/time.h"
#include "dist/world_internal.h"

namespace holo::dist {
namespace {

/// Runs a callback after a parameter's gradient accumulator has written `.grad`.
class AccumulatedHook : public torch::autograd::FunctionPostHook {
 public:
  explicit AccumulatedHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    fn_();
    return outputs;
  }

 private:
  std::function<void()> fn_;
};

/// How often the communication thread tests the in-flight all-reduces while backward computes.
/// Each test is a wake-up of this thread and an MPI progress call; at the former 50 us, 6000 of
/// them in a 300 ms backward cost the compute thread about 8% on a machine whose cores are all
/// computing (holo bench scaling, docs/benchmarks.md). A bucket needs only a few progress calls
/// once its peers have joined (shared memory single copy), and the last bucket, which no
/// backward can hide, is driven without pause in finish().
constexpr std::chrono::microseconds kPollDuringBackward{1000};

}  // namespace

ReducerOptions ReducerOptions::from(const holo::DistOptions& dist) {
  return ReducerOptions().bucket_mb(dist.bucket_mb);
}

GradientReducer::GradientReducer(std::vector<torch::Tensor> parameters,
                                 std::shared_ptr<Communicator> comm, ReducerOptions options)
    : comm_(std::move(comm)), options_(options) {
  HOLO_CHECK(comm_ != nullptr, "GradientReducer needs a communicator");
  HOLO_CHECK(options_.bucket_mb() > 0, "bucket_mb must be positive");
  for (auto& p : parameters) {
    if (p.requires_grad()) params_.push_back(p);
  }
  slots_.resize(params_.size());
  // Buckets in reverse registration order: the last layers' gradients come first in backward.
  const auto limit = static_cast<int64_t>(options_.bucket_mb() * 1024 * 1024);
  int64_t bytes = 0;
  for (int64_t i = static_cast<int64_t>(params_.size()) - 1; i >= 0; --i) {
    const auto& p = params_[i];
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    const bool fits = !buckets_.empty() && bytes + size <= limit &&
                      params_[buckets_.back().params.front()].scalar_type() == p.scalar_type() &&
                      params_[buckets_.back().params.front()].device() == p.device();
    if (!fits) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    const int64_t offset = b.offsets.empty() ? 0
                           : b.offsets.back() + params_[b.params.back()].numel();
    slots_[i].bucket = static_cast<int64_t>(buckets_.size()) - 1;
    slots_[i].position = static_cast<int64_t>(b.params.size());
    b.params.push_back(i);
    b.offsets.push_back(offset);
    bytes += size;
  }
  for (auto& b : buckets_) {
    const auto& last = params_[b.params.back()];
    const int64_t numel = b.offsets.back() + last.numel();
    b.flat = torch::zeros({numel}, last.options().requires_grad(false));
  }
  // Hooks on the gradient accumulators (kept alive here: a parameter holds its accumulator only
  // weakly, and a new one would come without the hook).
  for (size_t i = 0; i < params_.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(params_[i]);
    HOLO_CHECK(acc != nullptr, "GradientReducer: parameter " + std::to_string(i) + " is not a leaf");
    const auto index = static_cast<int64_t>(i);
    hook_keys_.push_back(
        acc->add_post_hook(std::make_unique<AccumulatedHook>([this, index] { on_gradient(index); })));
    accumulators_.push_back(std::move(acc));
  }
  // The communication thread drives all-reduces while backward runs. It calls MPI concurrently
  // with the watchdog, which needs MPI_THREAD_MULTIPLE; without it, buckets progress when finish()
  // waits.
  use_thread_ = comm_->size() > 1 &&
                (comm_->backend() != "mpi" || detail::thread_level() >= 3 /* MPI_THREAD_MULTIPLE */);
  if (use_thread_) thread_ = std::thread([this] { comm_loop(); });
}

GradientReducer::~GradientReducer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

std::vector<std::vector<int64_t>> GradientReducer::bucket_layout() const {
  std::vector<std::vector<int64_t>> out;
  for (const auto& b : buckets_) out.push_back(b.params);
  return out;
}

void GradientReducer::prepare_for_backward(bool synchronize) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (in_pass_) {
    throw Error(where_prefix() + "GradientReducer: prepare_for_backward() called again before "
                "finish() of the synchronised pass");
  }
  synchronize_ = synchronize;
  if (!synchronize || comm_->size() == 1) return;
  in_pass_ = true;
  next_launch_ = 0;
  for (auto& s : slots_) s.ready = s.used = false;
  for (auto& b : buckets_) {
    b.pending = static_cast<int64_t>(b.params.size());
    b.launched = b.done = false;
    b.work.reset();
  }
}

void GradientReducer::copy_in(int64_t index) {
  Slot& s = slots_[index];
  Bucket& b = buckets_[s.bucket];
  const auto& p = params_[index];
  auto slice = b.flat.narrow(0, b.offsets[s.position], p.numel());
  const auto& grad = p.grad();
  torch::NoGradGuard no_grad;
  if (grad.defined()) {
    slice.copy_(grad.reshape({-1}));
    s.used = true;
  } else {
    slice.zero_();
  }
  s.ready = true;
  --b.pending;
}

void GradientReducer::on_gradient(int64_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!in_pass_) return;
  if (slots_[index].ready) {
    throw Error(where_prefix() + "GradientReducer: parameter " + std::to_string(index) +
                " received a second gradient in one synchronised pass; call "
                "prepare_for_backward() before each backward()");
  }
  copy_in(index);
  if (options_.overlap()) launch_ready_buckets();
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < static_cast<int64_t>(buckets_.size()) &&
         buckets_[next_launch_].pending == 0) {
    launch(next_launch_++);
    ++stats_.buckets_in_backward;
  }
}

void GradientReducer::launch(int64_t bucket) {
  Bucket& b = buckets_[bucket];
  b.launched = true;
  if (use_thread_) {
    queue_.push_back(bucket);
    changed_.notify_all();
  } else {
    b.work = comm_->all_reduce_async(b.flat, ReduceOp::kAvg);
  }
}

void GradientReducer::comm_loop() {
  // Nonblocking all-reduces started in bucket order (the same on every rank) and driven by
  // testing them: gently (kPollDuringBackward) while backward computes, so that this thread takes
  // little CPU from it, and without pause (yielding the core) once finish() waits.
  // Blocking calls cannot be used here: a rank may start a bucket during backward that another
  // starts in finish(), and blocking and nonblocking collectives do not match in MPI.
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stopping_ || !queue_.empty() || !in_flight_.empty(); });
    if (stopping_ && queue_.empty() && in_flight_.empty()) return;
    try {
      while (!queue_.empty()) {
        const int64_t b = queue_.front();
        queue_.pop_front();
        torch::Tensor flat = buckets_[b].flat;
        lock.unlock();
        auto work = comm_->all_reduce_async(flat, ReduceOp::kAvg);
        lock.lock();
        buckets_[b].work = std::move(work);
        in_flight_.push_back(b);
      }
      // Works complete in the order they started: test the oldest first.
      bool progressed = false;
      while (!in_flight_.empty()) {
        auto work = buckets_[in_flight_.front()].work;
        lock.unlock();
        const bool done = work->test();
        lock.lock();
        if (!done) break;
        buckets_[in_flight_.front()].done = true;
        in_flight_.erase(in_flight_.begin());
        progressed = true;
      }
      if (progressed) changed_.notify_all();
      if (!in_flight_.empty() && queue_.empty() && !finishing_) {
        changed_.wait_for(lock, kPollDuringBackward,
                          [this] { return stopping_ || finishing_ || !queue_.empty(); });
      } else if (!in_flight_.empty() && queue_.empty() && !progressed) {
        // finish() waits: test again at once, but let a runnable thread of this machine (the
        // slower rank's backward, when ranks share cores) go first.
        lock.unlock();
        std::this_thread::yield();
        lock.lock();
      }
    } catch (...) {
      if (!lock.owns_lock()) lock.lock();
      comm_error_ = std::current_exception();
      for (int64_t b : in_flight_) buckets_[b].done = true;
      for (int64_t b : queue_) buckets_[b].done = true;
      in_flight_.clear();
      queue_.clear();
      changed_.notify_all();
    }
  }
}

void GradientReducer::rethrow_comm_error() {
  if (comm_error_) {
    auto e = comm_error_;
    comm_error_ = nullptr;
    in_pass_ = false;
    std::rethrow_exception(e);
  }
}

void GradientReducer::finish() {
  if (comm_->size() == 1 || !synchronize_) return;
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  if (!in_pass_) throw Error(where_prefix() + "GradientReducer: finish() without a synchronised pass");
  rethrow_comm_error();
  // Gradients that never arrived: the parameter took no part in this pass on this rank. Its
  // bucket still has to be reduced everywhere.
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].ready) copy_in(static_cast<int64_t>(i));
  }
  while (next_launch_ < static_cast<int64_t>(buckets_.size())) {
    launch(next_launch_++);
    ++stats_.buckets_in_finish;
  }
  if (use_thread_) {
    finishing_ = true;
    changed_.notify_all();
    changed_.wait(lock, [this] {
      if (comm_error_) return true;
      for (const auto& b : buckets_) {
        if (!b.done) return false;
      }
      return true;
    });
    finishing_ = false;
    rethrow_comm_error();
  } else {
    for (auto& b : buckets_) {
      b.work->wait();
      b.done = true;
    }
  }
  torch::Tensor used_anywhere;
  if (options_.find_unused()) {
    used_anywhere = torch::zeros({static_cast<int64_t>(slots_.size())}, torch::kUInt8);
    auto* u = used_anywhere.data_ptr<uint8_t>();
    for (size_t i = 0; i < slots_.size(); ++i) u[i] = slots_[i].used ? 1 : 0;
    lock.unlock();
    comm_->all_reduce(used_anywhere, ReduceOp::kMax);
    lock.lock();
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (used_anywhere.defined() && used_anywhere.data_ptr<uint8_t>()[i] == 0) continue;
    const Slot& s = slots_[i];
    const Bucket& b = buckets_[s.bucket];
    auto& p = params_[i];
    auto avg = b.flat.narrow(0, b.offsets[s.position], p.numel()).view(p.sizes());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(avg);
    } else {
      p.mutable_grad() = avg.clone();
    }
  }
  in_pass_ = false;
  ++stats_.steps;
  stats_.finish_s += seconds_since(t0);
}

namespace {

/// Runs `fn` on one flat tensor per (dtype, device) group of `tensors` and copies the result back.
void coalesced(const std::vector<torch::Tensor>& tensors,
               const std::function<void(torch::Tensor&)>& fn) {
  std::map<std::pair<int, std::string>, std::vector<torch::Tensor>> groups;
  for (const auto& t : tensors) {
    groups[{static_cast<int>(t.scalar_type()), t.device().str()}].push_back(t);
  }
  torch::NoGradGuard no_grad;
  for (auto& [key, group] : groups) {
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : group) flat_parts.push_back(t.reshape({-1}));
    torch::Tensor flat = torch::cat(flat_parts);
    fn(flat);
    int64_t offset = 0;
    for (auto& t : group) {
      t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

}  // namespace

void broadcast_module(torch::nn::Module& module, Communicator& comm, int root) {
  if (comm.size() == 1) return;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : module.parameters()) tensors.push_back(p);
  for (const auto& b : module.buffers()) tensors.push_back(b);
  coalesced(tensors, [&](torch::Tensor& flat) { comm.broadcast(flat, root); });
}

void average_buffers(torch::nn::Module& module, Communicator& comm) {
  if (comm.size() == 1) return;
  std::vector<torch::Tensor> tensors;
  for (const auto& b : module.buffers()) {
    if (at::isFloatingType(b.scalar_type())) tensors.push_back(b);
  }
  coalesced(tensors, [&](torch::Tensor& flat) { comm.all_reduce(flat, ReduceOp::kAvg); });
}

}  // namespace holo::dist
