#pragma once
/// SCT (thesis ch. 8, §8.3): weakly supervised action segmentation from action sets. A video's
/// features go through one stack of dilated residual layers (the released code's f_e and f_r
/// together): the output of layer `z_after` (after its pooling) is Z, the final one, after a 1x1
/// convolution and group norm, is Z' with K temporal regions. Heads:
/// - f_c: region action probabilities A = softmax(conv(Z') / temperature), C x K;
/// - f_l: region lengths L, two 1x1 convolutions (no activation between them, as released), K;
/// - f_s: frame logits S = conv(Z) resized to T by nearest neighbour, C x T.
/// f_u (region_upsample) turns A and L into frame probabilities Y (C x T), differentiably in L.
///
/// Parameter names are the release's (fer.WaveNet.l_3.dilated_conv.weight, fc.classifier.weight,
/// ...), so that its state dicts load by name. docs/segmentation.md, "SCT"; docs/sct-plan.md.

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "models/mucon.h"

namespace holo::models {

struct SctOptions {
  int64_t in_dim = 2048;
  int64_t classes = 0;
  int64_t hidden = 128;                                  ///< D'
  int64_t layers = 11;                                   ///< dilation 2^i
  std::vector<int64_t> pool_after = {1, 2, 4, 8, 10};    ///< 0-based layers followed by a max pool of 2
  int64_t z_after = 4;                                   ///< Z: the output of this layer (after its pooling)
  double temperature = 0.1;                              ///< of f_c's softmax
  double input_dropout = 0.05;
  double dropout = 0.25;
  int64_t groups = 32;
};

struct SctEncoderImpl : torch::nn::Module {
  SctEncoderImpl(const SctOptions& o);
  WaveNetBlock WaveNet{nullptr};
  torch::nn::GroupNorm group_norm{nullptr};
};
TORCH_MODULE(SctEncoder);

struct SctOutput {
  torch::Tensor a;  ///< C x K region probabilities
  torch::Tensor l;  ///< K region lengths (before the softmax of eq. 8.1)
  torch::Tensor s;  ///< C x T frame logits of f_s
  torch::Tensor y;  ///< C x T frame probabilities of f_u
};

class SctNetImpl : public torch::nn::Module {
 public:
  explicit SctNetImpl(const SctOptions& options);
  /// features: 1 x D x T. Throws holo::Error when T leaves fewer than 2 regions.
  SctOutput forward(const torch::Tensor& features);
  /// The fewest frames that give 2 regions.
  int64_t min_frames() const;
  const SctOptions& options() const { return options_; }

 private:
  SctOptions options_;
  torch::nn::Dropout drop_on_frames{nullptr};
  SctEncoder fer{nullptr};
  torch::nn::Conv1d fs_classifier{nullptr}, fc_classifier{nullptr}, fl_conv1{nullptr}, fl_conv2{nullptr};
};
TORCH_MODULE(SctNet);

/// SCT's options from a recipe's [model] (model.sct_*) for features of `in_dim` and `classes`.
SctOptions sct_options(const ModelOptions& model, int64_t in_dim, int64_t classes);

/// f_u (§8.3.3): region k of probabilities a_k (column k of `a`, C x K) covers
/// l'_k = T softmax(l)_k frames; it is sampled from a template of J = 100 copies of a_k with a
/// linear kernel at x' = (2w + 1) / l'_k - 1, w = 0, 1, ... (eq. 8.3 on pixel centres, as the
/// released code's grid_sample with align_corners = False), cropped to round(l'_k) columns
/// (ties to even), the regions concatenated and resized to `frames` by nearest neighbour.
/// Differentiable in `l` through the partly covered columns. Returns C x frames.
torch::Tensor region_upsample(const torch::Tensor& a, const torch::Tensor& l, int64_t frames);

}  // namespace holo::models
