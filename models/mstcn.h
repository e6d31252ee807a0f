#pragma once
/// MS-TCN (Farha and Gall, CVPR 2019), the fully supervised reference of temporal action
/// segmentation on per-frame features (thesis ch. 8 and 9 compare against it). A stage is a 1x1
/// convolution to `channels` maps, `layers` dilated residual layers (a 3-tap convolution of
/// dilation 2^i, ReLU, a 1x1 convolution, dropout 0.5, the residual; each output masked to the
/// video's frames) and a 1x1 convolution to the classes. The first stage reads the features;
/// each next stage reads the previous stage's softmax. Submodules are named as MS-TCN's release
/// names them (stage1, stages.<i>, conv_1x1, layers.<i>.conv_dilated, ...), so that its state
/// dicts load by name.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace holo::models {

struct DilatedResidualLayerImpl : torch::nn::Module {
  DilatedResidualLayerImpl(int64_t dilation, int64_t channels);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  torch::nn::Conv1d conv_dilated{nullptr}, conv_1x1{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(DilatedResidualLayer);

struct SingleStageTcnImpl : torch::nn::Module {
  SingleStageTcnImpl(int64_t layers, int64_t channels, int64_t in_dim, int64_t classes);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  torch::nn::Conv1d conv_1x1{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList layers;
};
TORCH_MODULE(SingleStageTcn);

struct MultiStageTcnOptions {
  int64_t stages = 4;
  int64_t layers = 10;
  int64_t channels = 64;
  int64_t in_dim = 2048;  ///< feature dimension D
  int64_t classes = 0;
};

class MultiStageTcnImpl : public torch::nn::Module {
 public:
  explicit MultiStageTcnImpl(const MultiStageTcnOptions& options);
  /// `x`: N x D x T features (zero past each video's end), `mask`: N x T, 1 on real frames.
  /// Returns the logits of every stage, stages x N x C x T (zero past each video's end).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  const MultiStageTcnOptions& options() const { return options_; }

 private:
  MultiStageTcnOptions options_;
  SingleStageTcn stage1_{nullptr};
  torch::nn::ModuleList stages_;
};
TORCH_MODULE(MultiStageTcn);

/// Size and cost of each stage of an MS-TCN: its input channels, parameters and GFLOPs
/// (multiply-accumulates / 1e9) per 1,000 frames (`holo model info mstcn`).
struct TcnStageCost {
  std::string name;  ///< stage1, stages.0, ...
  int64_t input = 0;
  int64_t params = 0;
  double gflops_per_1000_frames = 0;
};
std::vector<TcnStageCost> mstcn_costs(const MultiStageTcnOptions& options);

}  // namespace holo::models
