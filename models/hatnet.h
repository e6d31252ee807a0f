#pragma once
/// HATNet (chapter 5): a 3D branch (3D ResNet-18/50, optionally with STC) and a 2D branch
/// (2D ResNet-18/50 on every frame, without the max pool after its first convolution so that
/// map sizes match the 3D branch, whose stem has no pool either). After res2, res3 and res4 a
/// merge-and-reduction (M&R) block in each branch concatenates both branches' maps and
/// reduces them back to the stage width with a 1x1x1 convolution (+ BN + ReLU); each branch
/// continues from its own M&R output. When the 3D branch has fewer frames than the 2D branch
/// the 2D maps are averaged over time to the 3D length first, and the 2D branch continues on
/// that many frames. After res5 one final M&R merges the two branches; its pooled output is
/// the clip feature (D = res5 width).
///
/// Names: stem.{b3d,b2d}, resK.{b3d,b2d}, mergeK.{to3d,to2d} (K = 2..4), merge5, heads.

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>

#include "models/batch_norm.h"
#include "models/network.h"
#include "models/resnet2d.h"
#include "models/resnet3d.h"

namespace holo::models {

struct HatNetOptions {
  explicit HatNetOptions(int64_t depth) : depth_(depth) {}
  /// 18 or 50 (also 34, 101): both branches.
  TORCH_ARG(int64_t, depth);
  TORCH_ARG(double, width) = 1.0;
  /// STC in the 3D branch.
  TORCH_ARG(bool, stc) = false;
  TORCH_ARG(bool, stc_tcb) = true;
  TORCH_ARG(bool, stc_scb) = true;
  TORCH_ARG(int64_t, stc_reduction) = 4;
  TORCH_ARG(StcScbHidden, stc_scb_hidden) = StcScbHidden::kTable;
  TORCH_ARG(int64_t, frames) = 16;
  TORCH_ARG(double, dropout) = 0.5;
  /// One size (standard) or one per category (multitask).
  TORCH_ARG(std::vector<int64_t>, heads) = std::vector<int64_t>{3142};
};

/// concat -> 1x1x1 conv (2C -> C) -> BN -> ReLU. Names conv, bn.
class MergeReduceImpl : public torch::nn::Module {
 public:
  explicit MergeReduceImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& own, const torch::Tensor& other);

 private:
  torch::nn::Conv3d conv_{nullptr};
  BatchNorm3d bn_{nullptr};
};
TORCH_MODULE(MergeReduce);

class HatNetImpl : public NetworkImpl {
 public:
  explicit HatNetImpl(const HatNetOptions& options);
  NetworkOutput forward_all(const torch::Tensor& clips) override;
  int64_t feature_dim() const override { return feature_dim_; }
  void reset_heads(const std::vector<int64_t>& head_sizes) override;

 private:
  HatNetOptions options_;
  Stem stem3d_{nullptr};
  Stem2d stem2d_{nullptr};
  std::vector<torch::nn::Sequential> b3d_, b2d_;
  std::vector<MergeReduce> to3d_, to2d_;
  MergeReduce final_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::ModuleList heads_{nullptr};
  int64_t feature_dim_ = 0;
};
TORCH_MODULE(HatNet);

}  // namespace holo::models
