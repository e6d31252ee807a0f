#include "models/sgs.h"

#include <torch/torch.h>

#include "core/error.h"
#include "models/flops.h"

namespace holo::models {
namespace {
thread_local int64_t t_forced_bins = 0;
}

SgsForcedBins::SgsForcedBins(int64_t bins) : outer_(t_forced_bins) { t_forced_bins = bins; }
SgsForcedBins::~SgsForcedBins() { t_forced_bins = outer_; }

SgsKernel parse_sgs_kernel(const std::string& s) {
  if (s == "linear") return SgsKernel::kLinear;
  if (s == "linear_clamped") return SgsKernel::kLinearClamped;
  if (s == "kronecker") return SgsKernel::kKronecker;
  throw RecipeError("[model]", 0, 0, "model.sgs_kernel",
                    "unknown kernel '" + s + "' (linear, linear_clamped, kronecker)");
}

SgsMeasure parse_sgs_measure(const std::string& s) {
  if (s == "mean_distance") return SgsMeasure::kMeanDistance;
  if (s == "magnitude") return SgsMeasure::kMagnitude;
  throw RecipeError("[model]", 0, 0, "model.sgs_measure",
                    "unknown measure '" + s + "' (mean_distance, magnitude)");
}

torch::Tensor sgs_weights(const torch::Tensor& delta, int64_t bins, SgsKernel kernel, double eps) {
  TORCH_CHECK(delta.dim() == 2, "SGS: delta must be N x T");
  TORCH_CHECK(bins >= 1, "SGS: bins must be >= 1");
  const auto opts = delta.options();
  auto dmax = std::get<0>(delta.max(1, /*keepdim=*/true));         // N x 1
  auto gamma = dmax.clamp_min(eps) / static_cast<double>(2 * bins);  // N x 1
  if (kernel != SgsKernel::kKronecker) {
    auto b = torch::arange(1, bins + 1, opts);                     // B
    auto beta = (2.0 * b - 1.0).unsqueeze(0) * gamma;              // N x B
    auto d = delta;
    if (kernel == SgsKernel::kLinearClamped) {
      auto lo = beta.narrow(1, 0, 1), hi = beta.narrow(1, bins - 1, 1);
      d = torch::max(torch::min(delta, hi), lo);                   // clamp to [beta_1, beta_B]
    }
    auto dist = (d.unsqueeze(2) - beta.unsqueeze(1)).abs();        // N x T x B
    auto psi = torch::relu(1.0 - dist / gamma.unsqueeze(2));       // (6.6)
    if (kernel == SgsKernel::kLinear) {
      // The frame at max Delta sits exactly on the upper edge of bin B, weight 0 in 6.6; in
      // floating point its weight is a rounding residue (about 1e-7), which would keep the bin
      // nominally active depending on rounding. Weights below kSgsZeroWeight count as 0.
      psi = psi * (psi.detach() > kSgsZeroWeight).to(psi.scalar_type());
      // A clip whose frames all weigh 0 (every Delta equal) gets one bin of all its frames.
      auto empty = (psi.detach().sum({1, 2}) == 0).view({-1, 1, 1});  // N x 1 x 1
      auto first = torch::zeros({1, 1, bins}, opts);
      first.select(2, 0).fill_(1.0);
      psi = torch::where(empty, first.expand_as(psi), psi);
    }
    return psi;
  }
  // Kronecker (6.5): the bin holding Delta_t, averaged over the bin's frames. No gradient
  // reaches Delta through a step function.
  auto idx = torch::floor(delta.detach() / (2.0 * gamma.detach()))
                 .clamp(0, static_cast<double>(bins - 1))
                 .to(torch::kLong);                                 // N x T
  auto onehot = torch::one_hot(idx, bins).to(delta.scalar_type());  // N x T x B
  auto count = onehot.sum(1, /*keepdim=*/true);                     // N x 1 x B
  return onehot / count.clamp_min(1.0);
}

SgsOutput sgs_sample(const torch::Tensor& x, const torch::Tensor& delta, int64_t bins,
                     SgsKernel kernel, double eps) {
  TORCH_CHECK(x.dim() == 5, "SGS: x must be N x C x T x H x W, got ", x.sizes());
  const int64_t n = x.size(0), c = x.size(1), t = x.size(2), h = x.size(3), w = x.size(4);
  TORCH_CHECK(delta.size(0) == n && delta.size(1) == t, "SGS: delta must be N x T");
  auto psi = sgs_weights(delta, bins, kernel, eps);  // N x T x B
  auto occupied = psi.detach().sum(1) > 0;           // N x B
  auto xf = x.permute({0, 1, 3, 4, 2}).reshape({n, c * h * w, t});
  auto o = torch::bmm(xf, psi);                      // N x CHW x B
  flops_add(static_cast<double>(n) * c * h * w * t * bins);
  SgsOutput out;
  out.active_bins = occupied.sum(1).to(torch::kLong);
  const int64_t bmax = std::max<int64_t>(1, out.active_bins.max().item<int64_t>());
  // Active bins first, in bin order: sort by (empty, bin index).
  auto key = (~occupied).to(torch::kLong) * bins + torch::arange(bins, out.active_bins.options());
  auto order = std::get<1>(key.sort(1)).narrow(1, 0, bmax);  // N x B'max
  out.mask = torch::arange(bmax, out.active_bins.options()).unsqueeze(0) <
             out.active_bins.unsqueeze(1);
  auto picked = o.gather(2, order.unsqueeze(1).expand({n, c * h * w, bmax}));
  picked = picked * out.mask.unsqueeze(1).to(picked.scalar_type());
  out.features = picked.reshape({n, c, h, w, bmax}).permute({0, 1, 4, 2, 3}).contiguous();
  out.delta = delta;
  return out;
}

SgsImpl::SgsImpl(const SgsOptions& o) : options_(o) {
  TORCH_CHECK(o.channels() > 0 && o.bins() > 0 && o.dim() > 0, "SGS: bad sizes");
  const int64_t hidden = std::max<int64_t>(1, o.channels() / 2);
  fc1_ = register_module("fc1", torch::nn::Linear(o.channels(), hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, o.dim()));
  bn_ = register_module("bn", BatchNorm1d(o.dim()));
}

torch::Tensor SgsImpl::embed(const torch::Tensor& x) {
  const int64_t n = x.size(0), t = x.size(2);
  auto p = x.mean({3, 4}).transpose(1, 2).reshape({n * t, x.size(1)});  // (N T) x C
  auto z = bn_->forward(counted(fc2_, torch::relu(counted(fc1_, p))));
  return z.view({n, t, options_.dim()});
}

SgsOutput SgsImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 5 && x.size(1) == options_.channels(), "SGS: expected N x ",
              options_.channels(), " x T x H x W, got ", x.sizes());
  auto z = embed(x);
  if (t_forced_bins > 0) {
    const int64_t n = x.size(0), c = x.size(1), t = x.size(2), h = x.size(3), w = x.size(4);
    flops_add(static_cast<double>(n) * c * h * w * t * options_.bins());  // as sgs_sample counts
    SgsOutput out;
    out.features = torch::zeros({n, c, t_forced_bins, h, w}, x.options());
    out.active_bins = torch::full({n}, t_forced_bins, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
    out.mask = torch::ones({n, t_forced_bins}, torch::TensorOptions().dtype(torch::kBool).device(x.device()));
    out.delta = torch::zeros({n, t}, x.options());
    return out;
  }
  if (options_.measure() == SgsMeasure::kMeanDistance) z = z - z.mean(1, /*keepdim=*/true);
  // sqrt with a floor: finite gradient where Z_t is exactly the reference point.
  auto delta = (z * z).sum(2).clamp_min(1e-24).sqrt();  // N x T
  return sgs_sample(x, delta, options_.bins(), options_.kernel(), options_.eps());
}

}  // namespace holo::models
