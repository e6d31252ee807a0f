#include "models/hatnet.h"

#include <torch/torch.h>

#include "models/flops.h"

namespace holo::models {
namespace {

// N*T x C x H x W (2D) <-> N x C x T x H x W (3D).
torch::Tensor to_clip(const torch::Tensor& frames, int64_t n) {
  const int64_t t = frames.size(0) / n;
  return frames.view({n, t, frames.size(1), frames.size(2), frames.size(3)}).transpose(1, 2);
}
torch::Tensor to_frames(const torch::Tensor& clip) {
  const int64_t n = clip.size(0), t = clip.size(2);
  return clip.transpose(1, 2).reshape({n * t, clip.size(1), clip.size(3), clip.size(4)});
}

}  // namespace

MergeReduceImpl::MergeReduceImpl(int64_t c) {
  conv_ = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(2 * c, c, 1).bias(false)));
  bn_ = register_module("bn", BatchNorm3d(c));
}

torch::Tensor MergeReduceImpl::forward(const torch::Tensor& own, const torch::Tensor& other) {
  return torch::relu(bn_->forward(counted(conv_, torch::cat({own, other}, 1))));
}

HatNetImpl::HatNetImpl(const HatNetOptions& o) : options_(o) {
  const ResNet2dLayout layout = resnet2d_layout(o.depth());
  const int64_t stem = scale_channels(64, o.width());
  // 3D branch: torchvision video-ResNet layout (3x7x7 stem without pool, strides 2 in all
  // dimensions from res3 on, projection shortcuts), with the 2D branch's widths.
  auto o3 = ResNet3dOptions()
                .layers(layout.layers)
                .bottleneck(layout.bottleneck)
                .width(o.width())
                .stem_temporal_kernel(3)
                .stem_pool(false)
                .temporal_strides({1, 2, 2, 2})
                .spatial_strides({1, 2, 2, 2})
                .shortcut('B')
                .stc(o.stc())
                .stc_tcb(o.stc_tcb())
                .stc_scb(o.stc_scb())
                .stc_reduction(o.stc_reduction())
                .stc_scb_hidden(o.stc_scb_hidden())
                .frames(o.frames());
  stem3d_ = Stem(StemStyle::kConv, stem, int64_t{3}, int64_t{1}, false, std::vector<int64_t>{3, 3, 3},
                 std::vector<int64_t>{2, 2, 2});
  stem2d_ = Stem2d(stem, /*max_pool=*/false);
  {
    auto s = std::make_shared<torch::nn::Module>();
    s->register_module("b3d", stem3d_);
    s->register_module("b2d", stem2d_);
    register_module("stem", s);
  }
  StagePlan p3 = make_stages(o3, stem, stem3d_->out_frames(o.frames()));
  Stages2d p2 = make_stages2d(o.depth(), stem, o.width());
  for (size_t s = 0; s < 4; ++s) {
    TORCH_CHECK(p3.channels[s] == p2.channels[s], "HATNet: branch widths differ");
    auto stage = std::make_shared<torch::nn::Module>();
    b3d_.push_back(stage->register_module("b3d", p3.stages[s]));
    b2d_.push_back(stage->register_module("b2d", p2.stages[s]));
    register_module("res" + std::to_string(s + 2), stage);
    if (s < 3) {
      auto merge = std::make_shared<torch::nn::Module>();
      to3d_.push_back(merge->register_module("to3d", MergeReduce(p3.channels[s])));
      to2d_.push_back(merge->register_module("to2d", MergeReduce(p3.channels[s])));
      register_module("merge" + std::to_string(s + 2), merge);
    }
  }
  feature_dim_ = p3.channels[3];
  final_ = register_module("merge5", MergeReduce(feature_dim_));
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout()));
  heads_ = register_module("heads", make_heads(feature_dim_, o.heads()));
  init_resnet_weights(*this);
}

NetworkOutput HatNetImpl::forward_all(const torch::Tensor& clips) {
  TORCH_CHECK(clips.dim() == 5, "clips must be N x C x T x H x W, got ", clips.sizes());
  const int64_t n = clips.size(0);
  auto x3 = stem3d_->forward(clips);
  auto x2 = to_clip(stem2d_->forward(to_frames(clips)), n);
  flops_stage("stem", x3.sizes().vec());
  auto align = [](const torch::Tensor& x2d, int64_t t) {
    if (x2d.size(2) == t) return x2d;
    return torch::adaptive_avg_pool3d(x2d, {t, x2d.size(3), x2d.size(4)});
  };
  for (size_t s = 0; s < 4; ++s) {
    x3 = b3d_[s]->forward(x3);
    x2 = to_clip(b2d_[s]->forward(to_frames(x2)), n);
    flops_stage("res" + std::to_string(s + 2), x3.sizes().vec());
    x2 = align(x2, x3.size(2));
    if (s < 3) {
      auto m3 = to3d_[s]->forward(x3, x2);
      auto m2 = to2d_[s]->forward(x2, x3);
      x3 = m3;
      x2 = m2;
      flops_stage("merge" + std::to_string(s + 2), x3.sizes().vec());
    }
  }
  auto merged = final_->forward(x3, x2);
  flops_stage("merge5", merged.sizes().vec());
  NetworkOutput out;
  out.features = merged.mean({2, 3, 4});
  out.logits = apply_heads(heads_, dropout_->forward(out.features));
  flops_stage("heads", out.logits.at(0).sizes().vec());
  return out;
}

void HatNetImpl::reset_heads(const std::vector<int64_t>& head_sizes) {
  heads_ = replace_module("heads", make_heads(feature_dim_, head_sizes));
}

}  // namespace holo::models
