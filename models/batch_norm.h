#pragma once
/// BatchNorm layers whose training-mode normalisation can be handed to someone else after the
/// network is built: data-parallel training with `train.sync_bn` gives them the normalisation
/// over the batch of all ranks (dist/sync_batch_norm.h), without the models knowing about it.
///
/// `BatchNorm{1,2,3}d` here are torch's BatchNorm{1,2,3}d (same options, parameters and buffers:
/// weight, bias, running_mean, running_var, num_batches_tracked, so checkpoints and weight loading
/// see an ordinary BatchNorm) with one addition: a `BatchNormTraining` function that, when set,
/// replaces the normalisation with the layer's own batch statistics in training. In eval mode, and
/// while no function is set, they compute exactly what torch's BatchNorm computes.
///
/// The layers are swapped in place rather than replaced in the module tree: the networks call
/// their BatchNorm members directly, and a module registered in their place would never be
/// called.

#include <torch/nn/modules/batchnorm.h>

#include <functional>
#include <ostream>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace holo::models {

/// Normalisation of a BatchNorm layer in training. Called with the layer's input (N, C, ...),
/// its weight and bias (undefined without affine), its running buffers (undefined without
/// track_running_stats), the running-average factor of this step (momentum, or 1/steps for a
/// cumulative average) and eps. Updates the running buffers in place and returns the output.
using BatchNormTraining = std::function<torch::Tensor(
    const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias,
    const torch::Tensor& running_mean, const torch::Tensor& running_var, double factor,
    double eps)>;

/// A BatchNorm layer of `D` spatial dimensions that can be given a BatchNormTraining. Built on
/// torch's BatchNormImplBase (options, parameters, buffers, reset and forward are torch's).
/// Not a subclass of torch::nn::BatchNorm{1,2,3}dImpl: LibTorch does not export what a subclass
/// of those would need, so `as<torch::nn::BatchNorm3d>()` does not find these layers; look for
/// holo::models::BatchNorm3d (or both).
template <size_t D, typename Derived>
class SwappableBatchNormImpl : public torch::nn::BatchNormImplBase<D, Derived> {
 public:
  using torch::nn::BatchNormImplBase<D, Derived>::BatchNormImplBase;

  torch::Tensor forward(const torch::Tensor& input) {
    if (!training_ || !this->is_training()) {
      return torch::nn::BatchNormImplBase<D, Derived>::forward(input);
    }
    this->_check_input_dim(input);
    // The running-average factor exactly as torch's BatchNorm computes it.
    double factor = this->options.momentum().value_or(0.0);
    if (this->options.track_running_stats() && this->num_batches_tracked.defined()) {
      this->num_batches_tracked += 1;
      if (!this->options.momentum()) {
        factor = 1.0 / this->num_batches_tracked.template item<double>();
      }
    }
    const bool track = this->options.track_running_stats();
    return training_(input, this->weight, this->bias,
                     track ? this->running_mean : torch::Tensor(),
                     track ? this->running_var : torch::Tensor(), factor, this->options.eps());
  }

  /// Replaces the training-mode normalisation; an empty function restores torch's own. A clone
  /// of the layer shares the function.
  void set_training(BatchNormTraining training) { training_ = std::move(training); }
  bool has_training() const { return static_cast<bool>(training_); }

 protected:
  /// Input of `dims` dimensions (or `alt_dims`, 0 for none), as torch's BatchNorm{1,2,3}d check.
  void check_dims(const torch::Tensor& input, int64_t dims, int64_t alt_dims) const {
    TORCH_CHECK(input.dim() == dims || (alt_dims > 0 && input.dim() == alt_dims),
                "BatchNorm", D, "d: expected ", dims, "D", alt_dims > 0 ? " or " : "",
                alt_dims > 0 ? std::to_string(alt_dims) + "D" : std::string(), " input (got ",
                input.dim(), "D input)");
  }

 private:
  BatchNormTraining training_;
};

class BatchNorm1dImpl : public SwappableBatchNormImpl<1, BatchNorm1dImpl> {
 public:
  using SwappableBatchNormImpl<1, BatchNorm1dImpl>::SwappableBatchNormImpl;

 protected:
  void _check_input_dim(const torch::Tensor& input) override { check_dims(input, 2, 3); }
};
class BatchNorm2dImpl : public SwappableBatchNormImpl<2, BatchNorm2dImpl> {
 public:
  using SwappableBatchNormImpl<2, BatchNorm2dImpl>::SwappableBatchNormImpl;

 protected:
  void _check_input_dim(const torch::Tensor& input) override { check_dims(input, 4, 0); }
};
class BatchNorm3dImpl : public SwappableBatchNormImpl<3, BatchNorm3dImpl> {
 public:
  using SwappableBatchNormImpl<3, BatchNorm3dImpl>::SwappableBatchNormImpl;

 protected:
  void _check_input_dim(const torch::Tensor& input) override { check_dims(input, 5, 0); }
};
TORCH_MODULE(BatchNorm1d);
TORCH_MODULE(BatchNorm2d);
TORCH_MODULE(BatchNorm3d);

namespace detail {
inline void print_batch_norm(std::ostream& stream, int dims, const torch::nn::BatchNormOptions& o) {
  stream << std::boolalpha << "holo::models::BatchNorm" << dims << "d(" << o.num_features()
         << ", eps=" << o.eps() << ", momentum=";
  if (o.momentum()) {
    stream << *o.momentum();
  } else {
    stream << "None";
  }
  stream << ", affine=" << o.affine() << ", track_running_stats=" << o.track_running_stats() << ")";
}
}  // namespace detail

}  // namespace holo::models

// torch declares BatchNormImplBase::pretty_print and defines it only for its own layers.
template <>
inline void torch::nn::BatchNormImplBase<1, holo::models::BatchNorm1dImpl>::pretty_print(
    std::ostream& stream) const {
  holo::models::detail::print_batch_norm(stream, 1, options);
}
template <>
inline void torch::nn::BatchNormImplBase<2, holo::models::BatchNorm2dImpl>::pretty_print(
    std::ostream& stream) const {
  holo::models::detail::print_batch_norm(stream, 2, options);
}
template <>
inline void torch::nn::BatchNormImplBase<3, holo::models::BatchNorm3dImpl>::pretty_print(
    std::ostream& stream) const {
  holo::models::detail::print_batch_norm(stream, 3, options);
}

namespace holo::models {

/// Gives every BatchNorm layer of `module` (itself included) the training-mode normalisation
/// `training` (an empty function restores torch's own) and returns how many there are. Throws
/// holo::UsageError, naming the layer, for a BatchNorm built as a plain torch::nn::BatchNorm:
/// it could not be swapped, and training would silently use per-rank statistics for it.
inline int64_t set_batch_norm_training(torch::nn::Module& module, const BatchNormTraining& training) {
  std::vector<std::function<void()>> swaps;
  for (const auto& item : module.named_modules("", /*include_self=*/true)) {
    auto m = item.value();
    if (auto b1 = std::dynamic_pointer_cast<BatchNorm1dImpl>(m)) {
      swaps.emplace_back([b1, &training] { b1->set_training(training); });
    } else if (auto b2 = std::dynamic_pointer_cast<BatchNorm2dImpl>(m)) {
      swaps.emplace_back([b2, &training] { b2->set_training(training); });
    } else if (auto b3 = std::dynamic_pointer_cast<BatchNorm3dImpl>(m)) {
      swaps.emplace_back([b3, &training] { b3->set_training(training); });
    } else if (m->as<torch::nn::BatchNorm1d>() || m->as<torch::nn::BatchNorm2d>() ||
               m->as<torch::nn::BatchNorm3d>()) {
      throw UsageError("BatchNorm layer '" + (item.key().empty() ? m->name() : item.key()) +
                       "' is a plain torch::nn BatchNorm, which cannot be synchronised; build "
                       "it as holo::models::BatchNorm{1,2,3}d (models/batch_norm.h)");
    }
  }
  for (const auto& swap : swaps) swap();  // only once every layer is known to be swappable
  return static_cast<int64_t>(swaps.size());
}

}  // namespace holo::models
