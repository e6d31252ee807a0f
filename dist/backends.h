#pragma once
/// What this build and process can use to move gradients, for `holo version` and `holo doctor`
/// (communicator.h picks the backend of a run).

#include <string>

namespace holo::dist {

/// NCCL's headers were found at build time, so the NCCL communicator is compiled in.
bool nccl_built_in();

/// "" when the NCCL communicator can be used by this process as far as its libraries go (NCCL
/// and the CUDA runtime load with dlopen and have every function Holo calls), else why not. A GPU
/// is not looked for.
std::string nccl_unavailable_reason();

}  // namespace holo::dist
