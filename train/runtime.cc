// start_runtime (train/task.h): what every rank sets up before a task, the same for training,
// evaluation and feature extraction.
#include <ATen/Context.h>
#include <torch/torch.h>

#include <cstdlib>

#include "core/env.h"
#include "core/error.h"
#include "core/recipe.h"
#include "dist/communicator.h"
#include "dist/world.h"
#include "train/task.h"

namespace holo::train {
namespace {

torch::Device pick_device(const dist::World& world) {
  const int n = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  const int d = dist::select_device(world, n);
  return d >= 0 ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(d)) : torch::Device(torch::kCPU);
}

/// Checks what only makes sense together, before any work starts.
void check_runnable(const Recipe& r, const torch::Device& device) {
  if (r.train.precision == "fp16" && !device.is_cuda()) {
    throw RecipeError("--set/recipe", 0, 0, "train.precision",
                      "fp16 needs a CUDA device; use bf16 or fp32 on the CPU");
  }
}

/// run.deterministic: the same kernels, summing in the same order, on every run: cuDNN's
/// deterministic algorithms without autotuning, LibTorch's deterministic implementations where it
/// has them (a warning names an operation that has none), and full float32 on GPUs (no TF32, whose
/// results depend on the GPU generation). cuBLAS needs a fixed workspace for that, set before its
/// first handle exists unless the environment already chose one.
void use_deterministic_kernels() {
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  auto& context = at::globalContext();
  context.setDeterministicCuDNN(true);
  context.setBenchmarkCuDNN(false);
  context.setDeterministicAlgorithms(true, /*warn_only=*/true);
  context.setAllowTF32CuDNN(false);
  context.setAllowTF32CuBLAS(false);
}

}  // namespace

Runtime start_runtime(const Recipe& recipe) {
  Runtime rt;
  rt.world = &dist::init_world();
  rt.rank = rt.world->rank;
  rt.world_size = rt.world->size;
  if (recipe.run.deterministic) use_deterministic_kernels();
  rt.device = pick_device(*rt.world);
  check_runnable(recipe, rt.device);
  if (env::num_threads() > 0) torch::set_num_threads(env::num_threads());
  rt.comm = dist::make_communicator(recipe.dist, rt.device);
  rt.precision = recipe.train.precision;
  return rt;
}

}  // namespace holo::train
