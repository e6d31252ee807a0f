#include "train/precision.h"

#include <ATen/autocast_mode.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "dist/communicator.h"

namespace holo::train {

AutocastGuard::AutocastGuard(const std::string& precision, const torch::Device& device) {
  if (precision == "fp32") return;
  const auto dtype = precision == "bf16" ? at::kBFloat16 : at::kHalf;
  active_ = true;
  cuda_ = device.is_cuda();
  if (cuda_) {
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (cuda_) {
    at::autocast::set_enabled(false);
  } else {
    at::autocast::set_cpu_enabled(false);
  }
  at::autocast::clear_cache();
}

bool LossScaler::unscale(const std::vector<std::pair<std::string, torch::Tensor>>& params, dist::Communicator& comm,
                         const torch::Device& device) {
  if (!enabled_) return true;
  torch::NoGradGuard no_grad;
  torch::Tensor bad = torch::zeros({1}, torch::TensorOptions().device(device));
  for (const auto& [n, p] : params) {
    if (!p.grad().defined()) continue;
    p.grad().div_(scale_);
    bad += (~torch::isfinite(p.grad())).any().to(torch::kFloat32);
  }
  comm.all_reduce(bad, dist::ReduceOp::kMax);
  if (bad.item<float>() > 0) {
    scale_ /= 2;
    good_ = 0;
    spdlog::warn("fp16 overflow: step skipped, loss scale now {}", scale_);
    return false;
  }
  if (++good_ % 2000 == 0) scale_ *= 2;
  return true;
}

}  // namespace holo::train
