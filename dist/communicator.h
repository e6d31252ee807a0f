#pragma once
/// Collective communication between the ranks of the world: one interface, one implementation
/// per backend family (mpi_communicator.*: CPU tensors over MPI; nccl_communicator.*: CUDA
/// tensors over NCCL, its unique id broadcast over MPI), and one factory that picks by device.
///
/// Every rank must call the same collectives in the same order with tensors of the same shape and
/// dtype (all_gather included). Calls made from several threads at once are serialised; their
/// order must still agree across ranks, so in practice one thread issues them. Each collective is
/// watched (watchdog.h): one that waits longer than dist.timeout_s ends the job with a report.

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/recipe.h"

namespace holo::dist {

enum class ReduceOp { kSum, kAvg, kMax, kMin };

/// "sum", "avg", "max", "min".
const char* to_string(ReduceOp op);

/// A collective in flight. Completing it (test() returning true, or wait()) applies whatever the
/// operation does at the end (the division of kAvg, the copy back into a non-contiguous tensor).
class Work {
 public:
  virtual ~Work() = default;
  /// Advances the operation; true once it is complete (then the result is in the tensor).
  virtual bool test() = 0;
  /// Blocks until complete.
  virtual void wait() = 0;
};

/// A Work that was complete when it was returned.
class CompletedWork : public Work {
 public:
  bool test() override { return true; }
  void wait() override {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  /// In place: every rank's `t` becomes the reduction over the ranks. kAvg needs a floating
  /// dtype. float16/bfloat16 are reduced in float32 on CPU.
  virtual void all_reduce(torch::Tensor& t, ReduceOp op) = 0;
  /// In place: every rank's `t` becomes root's.
  virtual void broadcast(torch::Tensor& t, int root) = 0;
  /// Every rank's `t` (same shape and dtype everywhere, checked), in rank order.
  virtual std::vector<torch::Tensor> all_gather(const torch::Tensor& t) = 0;
  virtual void barrier() = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "mpi", "nccl" or "self".
  virtual std::string backend() const = 0;

  /// Starts an all-reduce and returns at once; the tensor must not be touched until the Work
  /// completes. Works complete in the order they were started. The default runs all_reduce.
  virtual std::shared_ptr<Work> all_reduce_async(torch::Tensor t, ReduceOp op);
};

/// The communicator of a world of one process: every collective leaves its tensor as it is.
class SelfCommunicator : public Communicator {
 public:
  void all_reduce(torch::Tensor& t, ReduceOp op) override;
  void broadcast(torch::Tensor& t, int root) override;
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override;
  void barrier() override {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "self"; }
};

/// Picks the backend for tensors on `device`: dist.backend "auto" means NCCL for CUDA and MPI
/// for CPU; "self" semantics when the world has one rank and no MPI. Initialises the world
/// (init_world) if needed. Collective: every rank calls it. Throws holo::UsageError for a
/// backend this build or machine cannot provide (naming why), holo::DistError for a world of
/// several ranks without MPI.
std::shared_ptr<Communicator> make_communicator(const holo::DistOptions& options,
                                                const torch::Device& device);

/// Seconds a collective may wait: HOLO_COLLECTIVE_TIMEOUT when set, else dist.timeout_s.
double collective_timeout(const holo::DistOptions& options);

}  // namespace holo::dist
