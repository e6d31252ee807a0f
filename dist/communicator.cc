// The one place that names the concrete communicators and holds the build-dependent choice.
#include "dist/communicator.h"
#include "dist/backends.h"

#include <spdlog/spdlog.h>

#include "core/env.h"
#include "core/error.h"
#include "dist/mpi_communicator.h"
#include "dist/world.h"
#include "holo/build_config.h"
#if HOLO_WITH_NCCL
#include "dist/nccl_communicator.h"
#endif

namespace holo::dist {

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

std::shared_ptr<Work> Communicator::all_reduce_async(torch::Tensor t, ReduceOp op) {
  all_reduce(t, op);
  return std::make_shared<CompletedWork>();
}

void SelfCommunicator::all_reduce(torch::Tensor& t, ReduceOp op) {
  HOLO_CHECK(t.defined(), "all_reduce: undefined tensor");
  if (op == ReduceOp::kAvg && !at::isFloatingType(t.scalar_type())) {
    throw UsageError(std::string("all_reduce: avg needs a floating-point tensor, got ") +
                     c10::toString(t.scalar_type()));
  }
}

void SelfCommunicator::broadcast(torch::Tensor& t, int root) {
  if (root != 0) {
    throw UsageError("broadcast: root " + std::to_string(root) + " is not a rank of a world of 1");
  }
}

std::vector<torch::Tensor> SelfCommunicator::all_gather(const torch::Tensor& t) {
  return {t.clone()};
}

double collective_timeout(const holo::DistOptions& options) {
  for (const auto& k : env::knobs()) {
    if (k.name == "HOLO_COLLECTIVE_TIMEOUT" && k.is_set()) return env::collective_timeout();
  }
  return options.timeout_s;
}

bool nccl_built_in() { return HOLO_WITH_NCCL != 0; }

std::string nccl_unavailable_reason() {
#if HOLO_WITH_NCCL
  return nccl_load_error();
#else
  return "this build of holo has no NCCL: its headers (nccl.h) were not found at build time";
#endif
}

std::shared_ptr<Communicator> make_communicator(const holo::DistOptions& options,
                                                const torch::Device& device) {
  const World& w = init_world();
  std::string backend = options.backend;
  if (backend == "auto") backend = device.is_cuda() ? "nccl" : "mpi";
  if (backend != "mpi" && backend != "nccl") {
    throw UsageError("dist.backend '" + options.backend + "' is not one of auto, mpi, nccl");
  }
  if (backend == "mpi" && !device.is_cpu()) {
    throw UsageError("dist.backend = \"mpi\" moves CPU tensors; the model is on " + device.str() +
                     " (use \"nccl\" or \"auto\")");
  }
  if (backend == "nccl" && !device.is_cuda()) {
    throw UsageError("dist.backend = \"nccl\" moves CUDA tensors; the model is on " + device.str() +
                     " (use \"mpi\" or \"auto\")");
  }
  if (w.size > 1 && !w.mpi) {
    throw DistError("a world of " + std::to_string(w.size) + " ranks was described by " +
                    w.launcher + " variables, but Holo's collectives bootstrap over MPI: start "
                    "the job with `holo launch`, mpirun or srun");
  }
  const double timeout = collective_timeout(options);
  std::shared_ptr<Communicator> comm;
  if (backend == "nccl") {
#if HOLO_WITH_NCCL
    comm = make_nccl_communicator(device.has_index() ? device.index() : 0, timeout);
#else
    throw UsageError("dist.backend = \"nccl\": this build of holo has no NCCL (holo version)");
#endif
  } else if (!w.mpi) {
    comm = std::make_shared<SelfCommunicator>();
  } else {
    comm = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, timeout);
  }
  spdlog::debug("communicator: {} over {} ranks, collective timeout {} s", comm->backend(),
                comm->size(), timeout);
  return comm;
}

}  // namespace holo::dist
