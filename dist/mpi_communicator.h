#pragma once
/// Communicator over MPI for CPU tensors. Blocking collectives call the blocking MPI routines
/// (the library's tuned algorithms); all_reduce_async uses MPI_Iallreduce, which progresses each
/// time it is tested. Each collective is registered with the watchdog (watchdog.h).

#include <mpi.h>

#include <memory>
#include <mutex>

#include "dist/communicator.h"
#include "dist/watchdog.h"

namespace holo::dist {

class MpiCommunicator : public Communicator {
 public:
  /// Duplicates `comm` (collective over its ranks). `timeout_s` <= 0 runs without a watchdog.
  MpiCommunicator(MPI_Comm comm, double timeout_s);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  void all_reduce(torch::Tensor& t, ReduceOp op) override;
  void broadcast(torch::Tensor& t, int root) override;
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override;
  void barrier() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  std::shared_ptr<Work> all_reduce_async(torch::Tensor t, ReduceOp op) override;

  /// The communicator's own MPI communicator (a duplicate), e.g. for a baseline loop.
  MPI_Comm comm() const { return comm_; }
  /// The watchdog collectives report to; nullptr without one.
  CollectiveMonitor* monitor() const { return watchdog_.get(); }

 private:
  void release();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::unique_ptr<Watchdog> watchdog_;
  std::mutex mutex_;
  int finalize_hook_ = -1;
};

}  // namespace holo::dist
