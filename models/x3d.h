#pragma once
/// X3D (Feichtenhofer, CVPR 2020), built as PySlowFast builds it (video_model_builder.py `X3D`,
/// resnet_helper.py `X3DTransform`, stem_helper.py `X3DStem`, head_helper.py `X3DHead`), with
/// optional Similarity Guided Sampling: the X3D + ATFR networks of chapter 6 (Tables 6.6-6.9).
///
///   stem   conv_xy 1x3x3 stride (1,2,2), 3 -> C1; conv 5x1x1 channel-wise; BN; ReLU
///   res2..res5  X3D blocks; the first block of a stage strides 2 in H and W (on its 3x3x3 conv)
///          and projects the shortcut (branch1: 1x1x1 conv + BN). No temporal stride anywhere.
///          block: a 1x1x1 -> BN -> ReLU -> b 3x3x3 channel-wise -> BN -> [SE] -> Swish ->
///          c 1x1x1 -> BN, + shortcut, ReLU. SE on the blocks 0, 2, 4, ... of every stage.
///   res5   ends with conv_5 (1x1x1 to the res5 inner width, BN, ReLU); after the global average
///          pool, lin_5 (1x1x1 conv without bias to dim_c5 = 2048) and ReLU give the clip features
///   heads  dropout, one linear classifier per head (PySlowFast's `projection`)
///
/// Widths: C1 = round_width(dim_c1, gamma_w); stage widths round_width({12, 24, 48, 96}, gamma_w)
/// (24/48/96/192 for gamma_w = 2), inner widths int(bottleneck_factor x width) (54/108/216/432),
/// blocks ceil(gamma_d x {1, 2, 5, 3}) (3/5/11/7 for gamma_d = 2.2, 5/10/25/15 for 5.0).
///
/// With SGS (`sgs_after` = stem, res2, res3 or res4) the layer runs on that stage's output; the
/// later stages run on the B'max bins of the batch, and the valid bins of each clip are carried
/// to the SE blocks (their squeeze averages only valid bins) and to the final pool, so a clip's
/// output does not depend on the other clips of its batch (up to BatchNorm in training).
///
/// Parameter names (a PySlowFast checkpoint maps by renaming `s1.pathway0_stem.` -> `stem.`,
/// `sK.pathway0_resI.branch2.` and `sK.pathway0_resI.` -> `resK.I.`, `head.conv_5`/`lin_5` ->
/// `res5.conv_5`/`lin_5`, `head.projection` -> `heads.0`): stem.{conv_xy, conv, bn},
/// resK.I.{a, a_bn, b, b_bn, se.fc1, se.fc2, c, c_bn, branch1, branch1_bn},
/// res5.{conv_5, conv_5_bn, lin_5}, sgs.*, heads.I.

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>

#include <string>
#include <vector>

#include "models/batch_norm.h"
#include "models/network.h"
#include "models/sgs.h"

namespace holo::models {

/// PySlowFast's round_width: width x multiplier rounded to the nearest multiple of `divisor`
/// (halves up), at least `min_width`, and bumped by one divisor when rounding lost over 10%.
int64_t x3d_round_width(double width, double multiplier, int64_t min_width = 8,
                        int64_t divisor = 8);

struct X3dOptions {
  /// X3D-S: 13 frames (stride 6), 160 crop, 1.96 GFLOPs, 3.76M parameters (published).
  static X3dOptions s();
  /// X3D-M: the same network at 16 frames (stride 5), 224 crop: 4.73 GFLOPs.
  static X3dOptions m();
  /// X3D-L: gamma_d = 5.0, 16 x 312: 18.37 GFLOPs, 6.08M parameters.
  static X3dOptions l();
  /// X3D-XL: gamma_w = 2.9, gamma_d = 5.0, 16 x 312: 35.84 GFLOPs, 11.0M parameters.
  static X3dOptions xl();

  /// gamma_w, multiplies every width (X3D.WIDTH_FACTOR): 2.0 for X3D-XS..L, 2.9 for XL.
  TORCH_ARG(double, width_factor) = 2.0;
  /// gamma_d: res2..res5 have ceil(gamma_d x {1, 2, 5, 3}) blocks (X3D.DEPTH_FACTOR).
  TORCH_ARG(double, depth_factor) = 2.2;
  /// Inner (channel-wise conv) width = int(bottleneck_factor x stage width).
  TORCH_ARG(double, bottleneck_factor) = 2.25;
  /// Stem and res2 width before gamma_w (X3D.DIM_C1).
  TORCH_ARG(int64_t, dim_c1) = 12;
  /// Width of lin_5, the clip features (X3D.DIM_C5).
  TORCH_ARG(int64_t, dim_c5) = 2048;
  /// SE width = round_width(inner width, se_ratio); 0: no SE blocks.
  TORCH_ARG(double, se_ratio) = 0.0625;
  /// PySlowFast's RESNET.ZERO_INIT_FINAL_BN (true in every X3D config): the last BN of every
  /// residual branch starts at weight 0.
  TORCH_ARG(bool, zero_init_final_bn) = true;
  /// Clip length T the network is built for (T does not change inside X3D): SGS's B when
  /// sgs_bins is 0.
  TORCH_ARG(int64_t, frames) = 16;
  /// Stage after which SGS sits ("stem" = Table 6.6's "First Conv", "res2" the thesis'
  /// default, "res3", "res4"); empty: no SGS.
  TORCH_ARG(std::string, sgs_after) = "";
  /// SGS bins; 0: B = T.
  TORCH_ARG(int64_t, sgs_bins) = 0;
  TORCH_ARG(int64_t, sgs_dim) = 8;
  TORCH_ARG(SgsKernel, sgs_kernel) = SgsKernel::kLinear;
  TORCH_ARG(SgsMeasure, sgs_measure) = SgsMeasure::kMeanDistance;
  /// Dropout before the heads (MODEL.DROPOUT_RATE).
  TORCH_ARG(double, dropout) = 0.5;
  TORCH_ARG(std::vector<int64_t>, heads) = std::vector<int64_t>{400};
};

/// X3DStem: conv_xy 1x3x3 stride (1,2,2), conv kt x1x1 channel-wise, BN, ReLU.
class X3dStemImpl : public torch::nn::Module {
 public:
  X3dStemImpl(int64_t out, int64_t kt = 5);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv3d conv_xy_{nullptr}, conv_{nullptr};
  BatchNorm3d bn_{nullptr};
};
TORCH_MODULE(X3dStem);

/// Squeeze-and-excitation of an X3D block: mean over T, H, W (over the valid bins only when
/// `valid` is defined), fc1 (1x1x1 conv with bias), ReLU, fc2, sigmoid, channel scale.
class X3dSqueezeExciteImpl : public torch::nn::Module {
 public:
  X3dSqueezeExciteImpl(int64_t channels, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& valid);

 private:
  torch::nn::Conv3d fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(X3dSqueezeExcite);

/// One X3D residual block (X3DTransform inside PySlowFast's ResBlock).
class X3dBlockImpl : public torch::nn::Module {
 public:
  /// `se_hidden` 0: no SE. `stride` is spatial, on the channel-wise 3x3x3 conv.
  X3dBlockImpl(int64_t in, int64_t inner, int64_t out, int64_t stride, int64_t se_hidden);
  /// x: N x C x T x H x W; `valid` (int64 N, or undefined) the valid bins after SGS.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& valid);

 private:
  torch::nn::Conv3d a_{nullptr}, b_{nullptr}, c_{nullptr}, branch1_{nullptr};
  BatchNorm3d a_bn_{nullptr}, b_bn_{nullptr}, c_bn_{nullptr}, branch1_bn_{nullptr};
  X3dSqueezeExcite se_{nullptr};
};
TORCH_MODULE(X3dBlock);

/// A stage: blocks registered as "0", "1", ...; the last stage also holds conv_5, conv_5_bn
/// and lin_5 (X3DHead's layers before the classifier).
class X3dStageImpl : public torch::nn::Module {
 public:
  X3dStageImpl(std::vector<X3dBlock> blocks, int64_t conv5_in = 0, int64_t conv5_out = 0,
               int64_t lin5_out = 0);
  /// The blocks, then conv_5 + BN + ReLU when present.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& valid);
  /// lin_5 + ReLU on pooled features N x C -> N x dim_c5 (last stage only).
  torch::Tensor project(const torch::Tensor& pooled);

 private:
  std::vector<X3dBlock> blocks_;
  torch::nn::Conv3d conv_5_{nullptr}, lin_5_{nullptr};
  BatchNorm3d conv_5_bn_{nullptr};
};
TORCH_MODULE(X3dStage);

class X3dImpl : public NetworkImpl {
 public:
  explicit X3dImpl(const X3dOptions& options);
  NetworkOutput forward_all(const torch::Tensor& clips) override;
  int64_t feature_dim() const override { return options_.dim_c5(); }
  void reset_heads(const std::vector<int64_t>& head_sizes) override;
  std::vector<std::string> clip_cost_names() const override;
  const X3dOptions& options() const { return options_; }
  /// Output channels of the stem and of res2..res5 (before conv_5).
  const std::vector<int64_t>& widths() const { return widths_; }

 private:
  X3dOptions options_;
  X3dStem stem_{nullptr};
  std::vector<X3dStage> stages_;
  std::vector<int64_t> widths_;
  Sgs sgs_{nullptr};
  int sgs_index_ = -1;  // 0: after the stem, 1..3: after res2..res4
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::ModuleList heads_{nullptr};
};
TORCH_MODULE(X3d);

}  // namespace holo::models
