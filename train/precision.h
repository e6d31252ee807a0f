#pragma once
/// Mixed precision for the trainer and evaluation: autocast over a forward pass (bf16 on CPUs
/// and GPUs, fp16 on GPUs) and dynamic loss scaling for fp16 (train.precision).

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

namespace holo::dist {
class Communicator;
}

namespace holo::train {

/// Autocast to train.precision's type while it lives ("fp32": nothing).
class AutocastGuard {
 public:
  AutocastGuard(const std::string& precision, const torch::Device& device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
};

/// Dynamic loss scaling for fp16: scale up after a run of finite steps, halve and skip the step
/// on overflow (decided by all ranks together). Disabled, it passes losses and gradients through.
class LossScaler {
 public:
  explicit LossScaler(bool enabled) : enabled_(enabled) {}
  torch::Tensor scale(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }
  /// Unscales the gradients of `params`; returns false when the step must be skipped (a
  /// gradient of some rank is not finite).
  bool unscale(const std::vector<std::pair<std::string, torch::Tensor>>& params, dist::Communicator& comm,
               const torch::Device& device);
  double value() const { return scale_; }
  void set(double s) { scale_ = s; }
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  double scale_ = 65536.0;
  int64_t good_ = 0;
};

}  // namespace holo::train
