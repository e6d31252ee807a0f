#pragma once
/// Similarity Guided Sampling (SGS), chapter 6 of the thesis (adaptive temporal feature
/// resolution, ATFR).
///
/// A similarity network maps each temporal slice I_t of X (N x C x T x H x W) to Z_t in an
/// L-dimensional space: spatial average pool, Linear C -> C/2, ReLU, Linear -> L,
/// BatchNorm1d(L) (the authors' release). Delta_t is either ||Z_t - mean_t Z|| (kMeanDistance,
/// the release, default) or ||Z_t|| (kMagnitude, the thesis' 6.1). With B bins,
/// gamma = max(max_t Delta_t, eps) / 2B and centres beta_b = (2b - 1) gamma. Output bins are
/// weighted sums O_b = sum_t I_t Psi(Delta_t, beta_b):
///   - kLinear (6.6, the default): Psi = max(0, 1 - |Delta_t - beta_b| / gamma), verbatim. A
///     frame on the outer edges (Delta = 0, or Delta = max, which every clip has) weighs 0 in
///     every bin, as 6.6 says; the authors' release gives it about 1e-7 (a rounding residue,
///     which Holo sets to 0 with every weight below kSgsZeroWeight).
///   - kLinearClamped: the same with Delta clamped to [beta_1, beta_B] first, so the extreme
///     frames fall fully into the outer bins (Holo's kernel before 6.6 became the default);
///   - kKronecker (6.5): each frame in the bin floor(Delta_t / 2 gamma) (the last bin closed),
///     O_b the average of its frames.
/// Degenerate clips: when every frame has the same Delta (identical frames; or two frames
/// under the distance to their mean), 6.6 puts all of them on the upper edge and every bin is
/// empty (the release divides by zero there when Delta = 0). The linear kernel then gives the
/// clip one bin holding every frame with weight 1, which is what a frame at a bin's centre
/// gets and what kLinearClamped gives.
/// gamma stays in the autograd graph (exact gradients of the forward function; 6.8 is the
/// partial derivative with gamma held fixed). A bin is empty when no frame has positive
/// weight in it. Empty bins are dropped per clip, the remaining B' keep their bin order, and
/// the batch is zero-padded to its largest B' with a mask. The eps floor of gamma keeps
/// identical frames (all Delta equal, possibly 0) finite: they land in one bin.

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/pimpl.h>

#include "models/batch_norm.h"

namespace holo::models {

enum class SgsKernel { kLinear, kLinearClamped, kKronecker };

/// Linear-kernel weights below this are 0: the frame at max Delta lies on the upper edge of the
/// last bin, where 6.6 gives 0 but floating point leaves a residue of about 1e-7.
constexpr double kSgsZeroWeight = 1e-5;
enum class SgsMeasure { kMeanDistance, kMagnitude };

struct SgsOptions {
  SgsOptions(int64_t channels, int64_t bins) : channels_(channels), bins_(bins) {}
  /// C of the input map.
  TORCH_ARG(int64_t, channels);
  /// B; the thesis sets B = T.
  TORCH_ARG(int64_t, bins);
  /// L, the similarity space dimension.
  TORCH_ARG(int64_t, dim) = 8;
  TORCH_ARG(SgsKernel, kernel) = SgsKernel::kLinear;
  TORCH_ARG(SgsMeasure, measure) = SgsMeasure::kMeanDistance;
  /// Floor of max Delta in gamma (identical frames).
  TORCH_ARG(double, eps) = 1e-6;
};

/// What SGS gives.
struct SgsOutput {
  torch::Tensor features;     ///< N x C x B'max x H x W, zero where mask is false
  torch::Tensor mask;         ///< bool N x B'max, true for the active bins of each clip
  torch::Tensor active_bins;  ///< int64 N: B' per clip
  torch::Tensor delta;        ///< N x T: Delta_t
};

/// Kernel weights Psi (N x T x B) for Delta (N x T): see the file comment. For kKronecker the
/// weights already include the 1/count of (6.5).
torch::Tensor sgs_weights(const torch::Tensor& delta, int64_t bins, SgsKernel kernel, double eps);

/// Sampling given Delta: O = sum_t I_t Psi, empty bins dropped, padded, masked.
SgsOutput sgs_sample(const torch::Tensor& x, const torch::Tensor& delta, int64_t bins,
                     SgsKernel kernel, double eps);

class SgsImpl : public torch::nn::Module {
 public:
  explicit SgsImpl(const SgsOptions& options);
  /// x: N x C x T x H x W.
  SgsOutput forward(const torch::Tensor& x);
  /// Z (N x T x L) of the similarity network.
  torch::Tensor embed(const torch::Tensor& x);
  const SgsOptions& options() const { return options_; }

 private:
  SgsOptions options_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
  BatchNorm1d bn_{nullptr};
};
TORCH_MODULE(Sgs);

/// While alive, every SGS layer on this thread keeps exactly `bins` bins (zero features, every
/// bin active) and counts its MACs as usual: how a network's cost for a given B' is measured
/// (models/network.h, clip_gflops).
class SgsForcedBins {
 public:
  explicit SgsForcedBins(int64_t bins);
  ~SgsForcedBins();
  SgsForcedBins(const SgsForcedBins&) = delete;
  SgsForcedBins& operator=(const SgsForcedBins&) = delete;

 private:
  int64_t outer_;
};

/// Parses "linear"/"linear_clamped"/"kronecker" and "mean_distance"/"magnitude" (recipe values).
SgsKernel parse_sgs_kernel(const std::string& s);
SgsMeasure parse_sgs_measure(const std::string& s);

}  // namespace holo::models
