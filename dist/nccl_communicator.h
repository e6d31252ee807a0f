#pragma once
/// Communicator over NCCL for CUDA tensors. NCCL and the CUDA runtime are not linked: they are
/// opened with dlopen when the first NCCL communicator is made (libnccl.so.2, libcudart.so.*), so
/// a CPU build never needs them at run time and a CUDA run uses the copies LibTorch already
/// loaded. MPI is the control plane: it broadcasts the ncclUniqueId, holds the watchdog and runs
/// barriers; NCCL moves the tensors on a stream of its own, ordered after the work already queued
/// on the legacy default stream (LibTorch's default) and before the work queued after it.
///
/// On any NCCL error, and on a collective that exceeds the timeout, the NCCL communicator is
/// aborted (ncclCommAbort) before the error is thrown.

#include <memory>
#include <string>

#include "dist/communicator.h"

namespace holo::dist {

/// Collective over the world (init_world). `device`: CUDA device index of this rank.
std::shared_ptr<Communicator> make_nccl_communicator(int device, double timeout_s);

/// Loads NCCL and the CUDA runtime (once per process) as a communicator would: "" when both load
/// with every function Holo calls, else why not.
std::string nccl_load_error();

}  // namespace holo::dist
