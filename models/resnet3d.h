#pragma once
/// 3D ResNet / ResNeXt / STC-ResNet / R(2+1)D / the modified 3DResNet of Table 6.12, one
/// configurable class. Stages are registered as stem, res2..res5 (Sequentials of ResBlock),
/// the optional SGS layer as sgs, the classifiers as heads.

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>

#include <optional>
#include <string>
#include <vector>

#include "models/batch_norm.h"
#include "models/network.h"
#include "models/sgs.h"
#include "models/stc.h"

namespace holo::models {

/// How the 3x3x3 convolutions of a block are factorised.
enum class ConvStyle {
  k3d,       ///< kt x 3 x 3
  k2plus1d,  ///< 1 x 3 x 3 -> BN -> ReLU -> kt x 1 x 1, mid channels as Tran et al. (2018)
  /// MMAction2's Conv2plus1d everywhere: each (2+1)D conv sizes its own mid channels from its
  /// own in and out (torchvision: one mid per block), and the shortcut conv is factorised too.
  k2plus1d_every,
};

/// Stem variants.
enum class StemStyle {
  kConv,      ///< kt x 7 x 7 conv (+ BN, ReLU, optional max pool)
  k2plus1d,   ///< torchvision's R(2+1)D stem: 1x7x7 3 -> 45, BN, ReLU, 3x1x1 45 -> C, BN, ReLU
};

/// One residual block's shape.
struct BlockConfig {
  int64_t in = 64;        ///< input channels
  int64_t mid = 64;       ///< inner width (basic: both convs' width)
  int64_t out = 64;       ///< output channels (basic: mid; bottleneck: mid x expansion)
  bool bottleneck = false;
  int64_t groups = 1;     ///< cardinality of the 3x3 conv
  int64_t kt = 3;         ///< temporal kernel of the 3x3 convs (bottleneck: unless on the first)
  bool temporal_on_first = false;  ///< bottleneck: kt on the first 1x1 conv, 3x3 becomes 1x3x3
  int64_t stride_t = 1;
  int64_t stride_s = 1;
  ConvStyle style = ConvStyle::k3d;
  char shortcut = 'B';    ///< 'A': zero-padded identity; 'B': 1x1x1 conv + BN where needed
  bool preact = false;    ///< BN-ReLU-Conv
  std::optional<StcOptions> stc;  ///< STC on the residual branch
  int64_t mid2p1 = 0;     ///< (2+1)D: intermediate channels (0: computed from in/mid)
};

/// A residual block: basic (two 3x3 convs) or bottleneck (1x1, 3x3 grouped, 1x1), post- or
/// pre-activation, 3D or (2+1)D, with STC on the residual branch before the addition.
/// Parameter names: conv1, bn1, conv2, bn2, [conv3, bn3], [stc], [downsample.0, downsample.1].
class ResBlockImpl : public torch::nn::Module {
 public:
  explicit ResBlockImpl(const BlockConfig& config);
  torch::Tensor forward(const torch::Tensor& x);
  const BlockConfig& config() const { return c_; }

 private:
  torch::Tensor conv(size_t i, const torch::Tensor& x);
  BlockConfig c_;
  std::vector<torch::nn::Conv3d> convs_;      // 3D, or the spatial part of (2+1)D
  std::vector<torch::nn::Conv3d> temporal_;   // (2+1)D temporal parts
  std::vector<BatchNorm3d> mid_bns_;  // (2+1)D BN between the parts
  std::vector<BatchNorm3d> bns_;
  torch::nn::Conv3d down_conv_{nullptr};
  BatchNorm3d down_bn_{nullptr};
  torch::nn::Conv3d down_conv_t_{nullptr};  // k2plus1d_every: the shortcut's temporal part
  BatchNorm3d down_mid_bn_{nullptr};
  StcBlock stc_{nullptr};
};
TORCH_MODULE(ResBlock);

/// Stem: conv (or (2+1)D pair), BN, ReLU, optional max pool. Names conv, bn, [conv_t, bn_t].
class StemImpl : public torch::nn::Module {
 public:
  /// `mid`: the (2+1)D stem's intermediate channels; 0: torchvision's 45, scaled with `out`.
  StemImpl(StemStyle style, int64_t out, int64_t kt, int64_t stride_t, bool pool,
           std::vector<int64_t> pool_kernel, std::vector<int64_t> pool_stride, int64_t mid = 0);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t out_channels() const { return out_; }
  /// T after the stem for T frames in.
  int64_t out_frames(int64_t frames) const;

 private:
  StemStyle style_;
  int64_t out_, kt_, stride_t_;
  bool pool_;
  std::vector<int64_t> pool_kernel_, pool_stride_;
  torch::nn::Conv3d conv_{nullptr}, conv_t_{nullptr};
  BatchNorm3d bn_{nullptr}, bn_t_{nullptr};
};
TORCH_MODULE(Stem);

struct ResNet3dOptions {
  /// Blocks per stage res2..res5.
  TORCH_ARG(std::vector<int64_t>, layers) = std::vector<int64_t>{2, 2, 2, 2};
  TORCH_ARG(bool, bottleneck) = false;
  /// Bottleneck output = inner width x expansion (ResNet 4, ResNeXt 2).
  TORCH_ARG(int64_t, expansion) = 4;
  TORCH_ARG(int64_t, cardinality) = 1;
  /// Inner width of each stage before the multiplier.
  TORCH_ARG(std::vector<int64_t>, widths) = std::vector<int64_t>{64, 128, 256, 512};
  /// Width multiplier (stem and stages); channels rounded, and to multiples of the cardinality.
  TORCH_ARG(double, width) = 1.0;
  TORCH_ARG(StemStyle, stem_style) = StemStyle::kConv;
  TORCH_ARG(int64_t, stem_channels) = 64;
  TORCH_ARG(int64_t, stem_temporal_kernel) = 7;
  TORCH_ARG(int64_t, stem_temporal_stride) = 1;
  TORCH_ARG(bool, stem_pool) = true;
  TORCH_ARG(std::vector<int64_t>, pool_kernel) = std::vector<int64_t>{3, 3, 3};
  TORCH_ARG(std::vector<int64_t>, pool_stride) = std::vector<int64_t>{2, 2, 2};
  TORCH_ARG(std::vector<int64_t>, temporal_strides) = std::vector<int64_t>{1, 2, 2, 2};
  TORCH_ARG(std::vector<int64_t>, spatial_strides) = std::vector<int64_t>{1, 2, 2, 2};
  /// Temporal kernel of each stage's convs.
  TORCH_ARG(std::vector<int64_t>, temporal_kernels) = std::vector<int64_t>{3, 3, 3, 3};
  TORCH_ARG(bool, temporal_on_first) = false;
  TORCH_ARG(ConvStyle, conv_style) = ConvStyle::k3d;
  TORCH_ARG(char, shortcut) = 'A';
  TORCH_ARG(bool, preact) = false;
  TORCH_ARG(bool, stc) = false;
  TORCH_ARG(bool, stc_tcb) = true;
  TORCH_ARG(bool, stc_scb) = true;
  TORCH_ARG(int64_t, stc_reduction) = 4;
  TORCH_ARG(StcScbHidden, stc_scb_hidden) = StcScbHidden::kTable;
  /// Clip length the network is built for.
  TORCH_ARG(int64_t, frames) = 16;
  /// Stage after which SGS sits ("stem", "res2", "res3", "res4"); empty: no SGS.
  TORCH_ARG(std::string, sgs_after) = "";
  /// SGS bins; 0: the T at the SGS layer.
  TORCH_ARG(int64_t, sgs_bins) = 0;
  TORCH_ARG(int64_t, sgs_dim) = 8;
  TORCH_ARG(SgsKernel, sgs_kernel) = SgsKernel::kLinear;
  TORCH_ARG(SgsMeasure, sgs_measure) = SgsMeasure::kMeanDistance;
  TORCH_ARG(double, dropout) = 0.5;
  TORCH_ARG(std::vector<int64_t>, heads) = std::vector<int64_t>{400};
};

/// Scales `c` by `width`: at least `multiple_of`, rounded to a multiple of it.
int64_t scale_channels(int64_t c, double width, int64_t multiple_of = 1);

/// Builds the blocks of res2..res5 for `o` starting from `in` channels and `frames` frames at
/// the stage input; returns the stages and reports output channels and frames of each.
struct StagePlan {
  std::vector<torch::nn::Sequential> stages;
  std::vector<int64_t> channels;  ///< output channels per stage
  std::vector<int64_t> frames;    ///< output T per stage (for the clip length built for)
};
StagePlan make_stages(const ResNet3dOptions& o, int64_t in, int64_t frames);

class ResNet3dImpl : public NetworkImpl {
 public:
  explicit ResNet3dImpl(const ResNet3dOptions& options);
  NetworkOutput forward_all(const torch::Tensor& clips) override;
  int64_t feature_dim() const override { return feature_dim_; }
  void reset_heads(const std::vector<int64_t>& head_sizes) override;
  std::vector<std::string> clip_cost_names() const override;
  const ResNet3dOptions& options() const { return options_; }

 private:
  ResNet3dOptions options_;
  Stem stem_{nullptr};
  std::vector<torch::nn::Sequential> stages_;
  std::vector<int64_t> stage_strides_t_;
  Sgs sgs_{nullptr};
  int sgs_index_ = -1;  // stage index after which SGS runs: 0 stem, 1..3 res2..res4
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::ModuleList heads_{nullptr};
  int64_t feature_dim_ = 0;
};
TORCH_MODULE(ResNet3d);

/// Average over T, H, W of x (N x C x T x H x W), over the first `valid` frames of each clip
/// when `valid` (int64 N) is defined.
torch::Tensor masked_global_pool(const torch::Tensor& x, const torch::Tensor& valid);

}  // namespace holo::models
