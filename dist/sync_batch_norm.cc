#include "dist/sync_batch_norm.h"

#include <torch/csrc/autograd/custom_function.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace holo::dist {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// The communicator, carried from forward to backward in the autograd context.
struct CommHolder : torch::CustomClassHolder {
  explicit CommHolder(std::shared_ptr<Communicator> c) : comm(std::move(c)) {}
  std::shared_ptr<Communicator> comm;
};

/// Every dimension but the channels (1).
std::vector<int64_t> reduced_dims(const torch::Tensor& x) {
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

/// Shape that broadcasts a per-channel vector against `x`: (1, C, 1, ...).
std::vector<int64_t> channel_shape(const torch::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = x.size(1);
  return shape;
}

/// float for float16/bfloat16/float32 inputs, double for double: the type the layer computes in.
torch::ScalarType compute_type(const torch::Tensor& x) {
  return x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
}

/// y = (x - mean) * invstd * weight + bias with the global mean and invstd (float64, per channel),
/// and the backward that matches one process normalising the concatenated batch.
class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               const torch::Tensor& mean, const torch::Tensor& invstd,
                               double count, const c10::intrusive_ptr<CommHolder>& comm) {
    const auto shape = channel_shape(input);
    const auto type = compute_type(input);
    auto y = (input.to(type) - mean.to(type).view(shape)) * invstd.to(type).view(shape);
    if (weight.defined()) y = y * weight.to(type).view(shape);
    if (bias.defined()) y = y + bias.to(type).view(shape);
    ctx->save_for_backward({input, weight, mean, invstd});
    ctx->saved_data["count"] = count;
    ctx->saved_data["comm"] = c10::IValue::make_capsule(comm);
    return y.to(input.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& input = saved[0];
    const auto& weight = saved[1];
    const auto& mean = saved[2];
    const auto& invstd = saved[3];
    const double count = ctx->saved_data["count"].toDouble();
    auto holder = c10::static_intrusive_pointer_cast<CommHolder>(ctx->saved_data["comm"].toCapsule());
    const auto shape = channel_shape(input);
    const auto dims = reduced_dims(input);
    const auto type = compute_type(input);
    const int64_t channels = input.size(1);

    const auto dy = grad_outputs[0].to(type);
    const auto xhat = (input.to(type) - mean.to(type).view(shape)) * invstd.to(type).view(shape);
    auto sums = torch::cat({dy.sum(dims, false, torch::kDouble),
                            (dy * xhat).sum(dims, false, torch::kDouble)});
    // Local sums for the affine parameters (averaged later by the gradient reducer) ...
    torch::Tensor grad_weight, grad_bias;
    if (weight.defined()) grad_weight = sums.narrow(0, channels, channels).to(weight.scalar_type());
    if (ctx->needs_input_grad(2)) grad_bias = sums.narrow(0, 0, channels).to(weight.defined() ? weight.scalar_type() : type);
    // ... and global ones for the input. Every rank reduces, whatever it needs.
    holder->comm->all_reduce(sums, ReduceOp::kSum);
    torch::Tensor grad_input;
    if (ctx->needs_input_grad(0)) {
      const auto mean_dy = (sums.narrow(0, 0, channels) / count).to(type).view(shape);
      const auto mean_dy_xhat = (sums.narrow(0, channels, channels) / count).to(type).view(shape);
      auto scale = invstd.to(type).view(shape);
      if (weight.defined()) scale = scale * weight.to(type).view(shape);
      grad_input = ((dy - mean_dy - xhat * mean_dy_xhat) * scale).to(input.scalar_type());
    }
    return {grad_input, grad_weight, grad_bias, torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor sync_batch_norm(const torch::Tensor& input, const torch::Tensor& weight,
                              const torch::Tensor& bias, const torch::Tensor& running_mean,
                              const torch::Tensor& running_var, double factor, double eps,
                              const std::shared_ptr<Communicator>& comm) {
  HOLO_CHECK(comm != nullptr, "sync_batch_norm needs a communicator");
  if (input.dim() < 2) {
    throw UsageError("sync_batch_norm: expected an input of shape (N, C, ...), got " +
                     std::to_string(input.dim()) + " dimension(s)");
  }
  const int64_t channels = input.size(1);
  torch::Tensor mean, invstd;
  double count = 0;
  {
    torch::NoGradGuard no_grad;
    const auto x = input.detach();
    const auto dims = reduced_dims(x);
    const auto xd = x.to(compute_type(x));
    // [sum x, sum x^2, count] over the local batch, summed over the ranks in float64 (the
    // difference E[x^2] - E[x]^2 would lose too much in float32).
    auto stats = torch::cat({xd.sum(dims, false, torch::kDouble), xd.square().sum(dims, false, torch::kDouble),
                             torch::full({1}, static_cast<double>(channels > 0 ? x.numel() / channels : 0),
                                         torch::TensorOptions().dtype(torch::kDouble).device(x.device()))});
    comm->all_reduce(stats, ReduceOp::kSum);
    count = stats[2 * channels].item<double>();
    if (count <= 1) {
      throw UsageError("sync_batch_norm: expected more than 1 value per channel over all ranks in "
                       "training, got " + std::to_string(static_cast<int64_t>(count)) +
                       " (input of shape " + c10::str(input.sizes()) + " on this rank)");
    }
    mean = stats.narrow(0, 0, channels) / count;
    const auto var = (stats.narrow(0, channels, channels) / count - mean.square()).clamp_min(0);
    invstd = (var + eps).rsqrt();
    if (running_mean.defined()) {
      running_mean.mul_(1 - factor).add_(mean.to(running_mean.scalar_type()), factor);
    }
    if (running_var.defined()) {
      running_var.mul_(1 - factor).add_((var * (count / (count - 1))).to(running_var.scalar_type()), factor);
    }
  }
  return SyncBatchNormFunction::apply(input, weight, bias, mean, invstd, count,
                                      c10::make_intrusive<CommHolder>(comm));
}

}  // namespace holo::dist
