#pragma once
/// Data-parallel gradient reduction: gradients are averaged over the ranks while backward still
/// runs (docs/distributed.md).
///
///   GradientReducer reducer(model->parameters(), comm, ReducerOptions::from(recipe.dist));
///   broadcast_module(*model, *comm);               // same start on every rank
///   for (each step) {
///     for (int m = 0; m < accumulate; ++m) {
///       reducer.prepare_for_backward(m == accumulate - 1);  // communicate on the last only
///       loss(model(x_m)).backward();
///     }
///     reducer.finish();                              // every bucket reduced, grads averaged
///     optimizer.step(); optimizer.zero_grad();
///   }
///
/// Parameters are grouped into buckets of about `bucket_mb` in reverse registration order (the
/// order backward produces gradients in), one dtype and device per bucket. A hook on each
/// parameter's gradient accumulator copies the gradient into its bucket; when a bucket's last
/// gradient is in, its all-reduce starts (buckets start in order, the same on every rank) on a
/// communication thread that drives it while backward goes on. finish() fills the gradients of
/// parameters that got none in this pass (zeros, or what an earlier accumulation step left), so
/// every rank joins every bucket and nothing deadlocks; then it waits and writes the averages
/// back. A parameter that got no gradient on any rank keeps an undefined gradient, as it would in
/// one process, so optimisers skip it.

#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/recipe.h"
#include "dist/communicator.h"

namespace holo::dist {

struct ReducerOptions {
  /// Target bucket size in MB (a parameter larger than this gets a bucket of its own).
  TORCH_ARG(double, bucket_mb) = 25.0;
  /// Start each bucket's all-reduce as soon as it is complete; false starts them all in
  /// finish() (the baseline that `holo bench scaling` compares with).
  TORCH_ARG(bool, overlap) = true;
  /// Agree (one small all-reduce per step) on which parameters got a gradient on any rank, so
  /// that those that got none anywhere keep an undefined gradient.
  TORCH_ARG(bool, find_unused) = true;

  /// From the recipe's [dist] section.
  static ReducerOptions from(const holo::DistOptions& dist);
};

/// What the reducer measured, summed over synchronised steps.
struct ReducerStats {
  int64_t steps = 0;             ///< finish() calls after a synchronised pass
  int64_t buckets_in_backward = 0;  ///< buckets whose all-reduce started during backward
  int64_t buckets_in_finish = 0;    ///< buckets started by finish() (unused params, overlap off)
  double finish_s = 0.0;         ///< time spent in finish(): the communication not hidden
};

class GradientReducer {
 public:
  /// Parameters that do not require a gradient are ignored. Every rank must pass the same
  /// parameters in the same order.
  GradientReducer(std::vector<torch::Tensor> parameters, std::shared_ptr<Communicator> comm,
                  ReducerOptions options = {});
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Call before each backward pass. `synchronize` false: gradients accumulate locally and
  /// nothing is communicated (and finish() is not needed).
  void prepare_for_backward(bool synchronize = true);
  /// After a synchronised backward pass: waits for every bucket; gradients are then averaged.
  void finish();

  /// Parameter indices (into the requires-grad parameters, in the order given) per bucket, in
  /// the order buckets are reduced.
  std::vector<std::vector<int64_t>> bucket_layout() const;
  const ReducerStats& stats() const { return stats_; }
  void reset_stats() { stats_ = ReducerStats{}; }

 private:
  struct Bucket {
    std::vector<int64_t> params;   ///< indices into params_
    std::vector<int64_t> offsets;  ///< element offset of each in flat
    torch::Tensor flat;
    int64_t pending = 0;  ///< gradients still to come in this pass
    bool launched = false;
    bool done = false;
    std::shared_ptr<Work> work;
  };
  struct Slot {
    int64_t bucket = 0;
    int64_t position = 0;  ///< index within the bucket
    bool ready = false;    ///< its gradient is in the bucket for this pass
    bool used = false;     ///< it had a gradient on this rank in this pass
  };

  void on_gradient(int64_t index);
  void copy_in(int64_t index);
  void launch_ready_buckets();  ///< mutex_ held
  void launch(int64_t bucket);  ///< mutex_ held
  void comm_loop();
  void rethrow_comm_error();    ///< mutex_ held

  std::vector<torch::Tensor> params_;
  std::shared_ptr<Communicator> comm_;
  ReducerOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<Slot> slots_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;

  std::mutex mutex_;
  std::condition_variable changed_;
  bool synchronize_ = false;
  bool in_pass_ = false;
  int64_t next_launch_ = 0;
  std::deque<int64_t> queue_;     ///< buckets for the communication thread to start
  std::vector<int64_t> in_flight_;
  bool finishing_ = false;        ///< finish() waits: drive the works without pause
  std::exception_ptr comm_error_;
  bool stopping_ = false;
  bool use_thread_ = false;
  std::thread thread_;
  ReducerStats stats_;
};

/// Copies rank `root`'s parameters and buffers into every rank's `module` (collective).
void broadcast_module(torch::nn::Module& module, Communicator& comm, int root = 0);

/// BatchNorm statistics synchronisation by buffer averaging: every floating-point buffer of
/// `module` (running_mean, running_var) becomes its mean over the ranks; integer buffers
/// (num_batches_tracked) are left alone, they agree anyway. Collective. Synchronised BatchNorm
/// (dist/sync_batch_norm.h, train.sync_bn) makes the statistics agree without it.
void average_buffers(torch::nn::Module& module, Communicator& comm);

}  // namespace holo::dist
