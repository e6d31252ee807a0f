#pragma once
/// Optimisers built from a recipe's [optim] table, with their per-parameter state exposed by
/// parameter name so that checkpoints hold it world-size independently.

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/recipe.h"

namespace holo::train {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// Registers the optimisers under optim.name (core/registry.h); train/registry.h calls it.
void register_optimisers();
struct OptimiserKind;

/// SGD (Nesterov momentum) or AdamW over the trainable parameters of `params`. Parameters with
/// one dimension or fewer (normalisation weights, biases) go into a second group without weight
/// decay unless optim.decay_norm_bias is set. Frozen parameters (requires_grad false) are left
/// out.
class Optimizer {
 public:
  Optimizer(const OptimOptions& options, const NamedTensors& params);

  torch::optim::Optimizer& get() { return *optimizer_; }
  void zero_grad() { optimizer_->zero_grad(); }
  void step() { optimizer_->step(); }
  /// Sets the learning rate of every group.
  void set_lr(double lr);
  double lr() const;

  /// Optimiser state as named tensors: "optim.<param>.<buffer>" (momentum_buffer, exp_avg,
  /// exp_avg_sq, step). Parameters without state yet are absent.
  NamedTensors state() const;
  /// Restores what state() returned. Unknown names throw holo::Error naming them.
  void load_state(const std::map<std::string, torch::Tensor>& state);

 private:
  OptimOptions options_;
  const OptimiserKind* kind_ = nullptr;  ///< optim.name's entry
  NamedTensors params_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

/// Global L2 norm of the gradients of `params`, clipped to `max_norm` when > 0. Returns the norm
/// before clipping.
double clip_grad_norm(const NamedTensors& params, double max_norm);

}  // namespace holo::train
