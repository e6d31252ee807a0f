#include "models/resnet3d.h"

#include <torch/torch.h>

#include <cmath>

#include "models/flops.h"

namespace holo::models {
namespace {

namespace F = torch::nn::functional;
using torch::nn::Conv3d;
using torch::nn::Conv3dOptions;

Conv3d make_conv(int64_t in, int64_t out, std::vector<int64_t> k, std::vector<int64_t> s,
                 int64_t groups = 1) {
  std::vector<int64_t> pad = {k[0] / 2, k[1] / 2, k[2] / 2};
  return Conv3d(Conv3dOptions(in, out, k).stride(s).padding(pad).groups(groups).bias(false));
}

int64_t conv_out(int64_t t, int64_t k, int64_t s) { return (t + 2 * (k / 2) - k) / s + 1; }

/// Intermediate channels of a (2+1)D conv with `kt` x `k` x `k` kernel from `in` to `out`
/// channels (Tran et al. 2018: as many parameters as the 3D conv; MMAction2's Conv2plus1d).
int64_t mid_2plus1d(int64_t in, int64_t out, int64_t k) {
  return (3 * in * out * k * k) / (in * k * k + 3 * out);
}

}  // namespace

int64_t scale_channels(int64_t c, double width, int64_t multiple_of) {
  const double v = static_cast<double>(c) * width / static_cast<double>(multiple_of);
  return std::max<int64_t>(1, std::llround(v)) * multiple_of;
}

// ---- ResBlock ----------------------------------------------------------------------------

ResBlockImpl::ResBlockImpl(const BlockConfig& config) : c_(config) {
  TORCH_CHECK(c_.shortcut == 'A' || c_.shortcut == 'B', "shortcut must be A or B");
  TORCH_CHECK(c_.style == ConvStyle::k3d || c_.groups == 1, "(2+1)D convolutions are not grouped");
  const bool every = c_.style == ConvStyle::k2plus1d_every;
  const int64_t st = c_.stride_t, ss = c_.stride_s;
  int64_t mid2p1 = c_.mid2p1;
  if (c_.style == ConvStyle::k2plus1d && mid2p1 == 0) {
    mid2p1 = (c_.in * c_.mid * 27) / (c_.in * 9 + 3 * c_.mid);  // Tran et al., torchvision
  }
  // (in, out, temporal kernel, spatial kernel, stride_t, stride_s, groups) of each conv.
  struct Spec { int64_t in, out, kt, ks, st, ss, groups; };
  std::vector<Spec> specs;
  if (!c_.bottleneck) {
    specs.push_back({c_.in, c_.mid, c_.kt, 3, st, ss, 1});
    specs.push_back({c_.mid, c_.mid, c_.kt, 3, 1, 1, 1});
  } else {
    const int64_t kta = c_.temporal_on_first ? c_.kt : 1;
    const int64_t ktb = c_.temporal_on_first ? 1 : c_.kt;
    specs.push_back({c_.in, c_.mid, kta, 1, 1, 1, 1});
    specs.push_back({c_.mid, c_.mid, ktb, 3, st, ss, c_.groups});
    specs.push_back({c_.mid, c_.out, 1, 1, 1, 1, 1});
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const Spec& s = specs[i];
    const std::string n = std::to_string(i + 1);
    const bool factorise = c_.style != ConvStyle::k3d && s.ks == 3 && s.kt > 1;
    if (factorise) {
      const int64_t m = every ? mid_2plus1d(s.in, s.out, 3) : mid2p1;
      convs_.push_back(register_module("conv" + n + "_s", make_conv(s.in, m, {1, 3, 3}, {1, s.ss, s.ss})));
      mid_bns_.push_back(register_module("conv" + n + "_m", BatchNorm3d(m)));
      temporal_.push_back(register_module("conv" + n + "_t", make_conv(m, s.out, {s.kt, 1, 1}, {s.st, 1, 1})));
    } else {
      convs_.push_back(register_module(
          "conv" + n, make_conv(s.in, s.out, {s.kt, s.ks, s.ks}, {s.st, s.ss, s.ss}, s.groups)));
      mid_bns_.push_back(nullptr);
      temporal_.push_back(nullptr);
    }
    // Post-activation: BN over this conv's output; pre-activation: over its input.
    bns_.push_back(register_module("bn" + n, BatchNorm3d(c_.preact ? s.in : s.out)));
  }
  if (c_.stc) stc_ = register_module("stc", StcBlock(*c_.stc));
  const bool reshape = st != 1 || ss != 1 || c_.in != c_.out;
  if (reshape && c_.shortcut == 'B' && every) {
    // Conv2plus1d on a 1x1x1 kernel: 1x1x1 (spatial stride) -> BN -> ReLU -> 1x1x1 (temporal
    // stride), then the shortcut's BN; Sequential indices 0, 1, 3, 4 as MMAction2's.
    TORCH_CHECK(!c_.preact, "k2plus1d_every: post-activation blocks only");
    const int64_t m = mid_2plus1d(c_.in, c_.out, 1);
    down_conv_ = make_conv(c_.in, m, {1, 1, 1}, {1, ss, ss});
    down_mid_bn_ = BatchNorm3d(m);
    down_conv_t_ = make_conv(m, c_.out, {1, 1, 1}, {st, 1, 1});
    down_bn_ = BatchNorm3d(c_.out);
    register_module("downsample", torch::nn::Sequential(down_conv_, down_mid_bn_, torch::nn::ReLU(), down_conv_t_, down_bn_));
  } else if (reshape && c_.shortcut == 'B') {
    down_conv_ = make_conv(c_.in, c_.out, {1, 1, 1}, {st, ss, ss});
    torch::nn::Sequential down(down_conv_);
    if (!c_.preact) {
      down_bn_ = BatchNorm3d(c_.out);
      down->push_back(down_bn_);
    }
    register_module("downsample", down);
  } else if (reshape) {
    TORCH_CHECK(c_.out >= c_.in, "shortcut A needs out channels >= in channels");
  }
}

torch::Tensor ResBlockImpl::conv(size_t i, const torch::Tensor& x) {
  if (temporal_[i]) {
    auto h = torch::relu(mid_bns_[i]->forward(counted(convs_[i], x)));
    return counted(temporal_[i], h);
  }
  return counted(convs_[i], x);
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x) {
  const size_t n = convs_.size();
  torch::Tensor out, pre;
  if (!c_.preact) {
    out = x;
    for (size_t i = 0; i < n; ++i) {
      out = bns_[i]->forward(conv(i, out));
      if (i + 1 < n) out = torch::relu(out);
    }
  } else {
    pre = torch::relu(bns_[0]->forward(x));
    out = conv(0, pre);
    for (size_t i = 1; i < n; ++i) out = conv(i, torch::relu(bns_[i]->forward(out)));
  }
  if (stc_) out = stc_->forward(out);
  torch::Tensor shortcut = x;
  if (down_conv_) {
    shortcut = counted(down_conv_, c_.preact ? pre : x);
    if (down_conv_t_) shortcut = counted(down_conv_t_, torch::relu(down_mid_bn_->forward(shortcut)));
    if (down_bn_) shortcut = down_bn_->forward(shortcut);
  } else if (c_.stride_t != 1 || c_.stride_s != 1 || c_.in != c_.out) {
    // Type A (Hara et al.): strided identity, zero channels appended.
    shortcut = x;
    if (c_.stride_t != 1 || c_.stride_s != 1) {
      shortcut = F::avg_pool3d(x, F::AvgPool3dFuncOptions({1, 1, 1})
                                      .stride({c_.stride_t, c_.stride_s, c_.stride_s}));
    }
    if (c_.out > c_.in) {
      auto sizes = shortcut.sizes().vec();
      sizes[1] = c_.out - c_.in;
      shortcut = torch::cat({shortcut, torch::zeros(sizes, shortcut.options())}, 1);
    }
  }
  out = out + shortcut;
  return c_.preact ? out : torch::relu(out);
}

// ---- Stem --------------------------------------------------------------------------------

StemImpl::StemImpl(StemStyle style, int64_t out, int64_t kt, int64_t stride_t, bool pool,
                   std::vector<int64_t> pool_kernel, std::vector<int64_t> pool_stride, int64_t stem_mid)
    : style_(style), out_(out), kt_(kt), stride_t_(stride_t), pool_(pool),
      pool_kernel_(std::move(pool_kernel)), pool_stride_(std::move(pool_stride)) {
  if (style_ == StemStyle::kConv) {
    conv_ = register_module("conv", make_conv(3, out, {kt, 7, 7}, {stride_t, 2, 2}));
    bn_ = register_module("bn", BatchNorm3d(out));
  } else {
    // torchvision R2Plus1dStem: 45 intermediate channels (scaled with the width).
    const int64_t mid = stem_mid > 0 ? stem_mid : std::max<int64_t>(1, std::llround(45.0 * out / 64.0));
    conv_ = register_module("conv", make_conv(3, mid, {1, 7, 7}, {1, 2, 2}));
    bn_ = register_module("bn", BatchNorm3d(mid));
    conv_t_ = register_module("conv_t", make_conv(mid, out, {kt, 1, 1}, {stride_t, 1, 1}));
    bn_t_ = register_module("bn_t", BatchNorm3d(out));
  }
}

torch::Tensor StemImpl::forward(const torch::Tensor& x) {
  auto h = torch::relu(bn_->forward(counted(conv_, x)));
  if (conv_t_) h = torch::relu(bn_t_->forward(counted(conv_t_, h)));
  if (pool_) {
    std::vector<int64_t> pad = {pool_kernel_[0] / 2, pool_kernel_[1] / 2, pool_kernel_[2] / 2};
    h = F::max_pool3d(h, F::MaxPool3dFuncOptions(pool_kernel_).stride(pool_stride_).padding(pad));
  }
  return h;
}

int64_t StemImpl::out_frames(int64_t frames) const {
  int64_t t = conv_out(frames, kt_, stride_t_);
  if (pool_) t = conv_out(t, pool_kernel_[0], pool_stride_[0]);
  return t;
}

// ---- stages ------------------------------------------------------------------------------

StagePlan make_stages(const ResNet3dOptions& o, int64_t in, int64_t frames) {
  TORCH_CHECK(o.layers().size() == 4 && o.widths().size() == 4 &&
                  o.temporal_strides().size() == 4 && o.spatial_strides().size() == 4 &&
                  o.temporal_kernels().size() == 4,
              "ResNet3d: layers, widths, strides and temporal kernels need 4 values");
  StagePlan plan;
  int64_t t = frames;
  for (size_t s = 0; s < 4; ++s) {
    const int64_t base = scale_channels(o.widths()[s], o.width());
    const int64_t mid = o.cardinality() > 1 ? scale_channels(o.widths()[s], o.width(), o.cardinality()) : base;
    const int64_t out = o.bottleneck() ? base * o.expansion() : base;
    torch::nn::Sequential stage;
    for (int64_t b = 0; b < o.layers()[s]; ++b) {
      BlockConfig c;
      c.in = in;
      c.mid = o.bottleneck() ? mid : out;
      c.out = out;
      c.bottleneck = o.bottleneck();
      c.groups = o.cardinality();
      c.kt = o.temporal_kernels()[s];
      c.temporal_on_first = o.temporal_on_first();
      c.stride_t = b == 0 ? o.temporal_strides()[s] : 1;
      c.stride_s = b == 0 ? o.spatial_strides()[s] : 1;
      c.style = o.conv_style();
      c.shortcut = o.shortcut();
      c.preact = o.preact();
      if (b == 0) t = conv_out(t, 1, c.stride_t);
      if (o.stc()) {
        c.stc = StcOptions(out, t).reduction(o.stc_reduction()).tcb(o.stc_tcb()).scb(o.stc_scb())
                    .scb_hidden(o.stc_scb_hidden());
      }
      stage->push_back(ResBlock(c));
      in = out;
    }
    if (o.preact() && s == 3) {  // pre-activation nets end with BN-ReLU (He et al. 2016b)
      stage->push_back(BatchNorm3d(out));
      stage->push_back(torch::nn::ReLU());
    }
    plan.stages.push_back(stage);
    plan.channels.push_back(out);
    plan.frames.push_back(t);
  }
  return plan;
}

torch::Tensor masked_global_pool(const torch::Tensor& x, const torch::Tensor& valid) {
  if (!valid.defined()) return x.mean({2, 3, 4});
  auto m = x.mean({3, 4});  // N x C x T
  const int64_t t = m.size(2);
  auto keep = torch::arange(t, valid.options()).unsqueeze(0) < valid.unsqueeze(1);  // N x T
  auto w = keep.to(m.scalar_type()).unsqueeze(1);
  return (m * w).sum(2) / valid.clamp_min(1).to(m.scalar_type()).unsqueeze(1);
}

// ---- ResNet3d ----------------------------------------------------------------------------

ResNet3dImpl::ResNet3dImpl(const ResNet3dOptions& o) : options_(o) {
  TORCH_CHECK(!o.heads().empty(), "ResNet3d: at least one head");
  const int64_t stem_out = scale_channels(o.stem_channels(), o.width());
  // MMAction2's (2+1)D stem sizes its mid channels as every Conv2plus1d does (83 for 64).
  const int64_t stem_mid = o.conv_style() == ConvStyle::k2plus1d_every ? mid_2plus1d(3, stem_out, 7) : 0;
  stem_ = register_module("stem", Stem(o.stem_style(), stem_out, o.stem_temporal_kernel(),
                                       o.stem_temporal_stride(), o.stem_pool(), o.pool_kernel(),
                                       o.pool_stride(), stem_mid));
  const int64_t t0 = stem_->out_frames(o.frames());
  StagePlan plan = make_stages(o, stem_out, t0);
  static const char* kNames[] = {"res2", "res3", "res4", "res5"};
  for (size_t s = 0; s < 4; ++s) {
    stages_.push_back(register_module(kNames[s], plan.stages[s]));
    stage_strides_t_.push_back(o.temporal_strides()[s]);
  }
  if (!o.sgs_after().empty()) {
    static const std::vector<std::string> kAfter = {"stem", "res2", "res3", "res4"};
    auto it = std::find(kAfter.begin(), kAfter.end(), o.sgs_after());
    TORCH_CHECK(it != kAfter.end(), "SGS placement must be one of stem, res2, res3, res4");
    sgs_index_ = static_cast<int>(it - kAfter.begin());
    const int64_t c = sgs_index_ == 0 ? stem_out : plan.channels[sgs_index_ - 1];
    const int64_t t = sgs_index_ == 0 ? t0 : plan.frames[sgs_index_ - 1];
    const int64_t bins = o.sgs_bins() > 0 ? o.sgs_bins() : t;
    sgs_ = register_module("sgs", Sgs(SgsOptions(c, bins).dim(o.sgs_dim()).kernel(o.sgs_kernel())
                                          .measure(o.sgs_measure())));
  }
  feature_dim_ = plan.channels[3];
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout()));
  heads_ = register_module("heads", make_heads(feature_dim_, o.heads()));
  init_resnet_weights(*this);
}

NetworkOutput ResNet3dImpl::forward_all(const torch::Tensor& clips) {
  TORCH_CHECK(clips.dim() == 5, "clips must be N x C x T x H x W, got ", clips.sizes());
  static const char* kNames[] = {"res2", "res3", "res4", "res5"};
  NetworkOutput out;
  torch::Tensor valid;  // frames per clip that are not padding, after SGS
  auto x = stem_->forward(clips);
  flops_stage("stem", x.sizes().vec());
  auto run_sgs = [&] {
    SgsOutput s = sgs_->forward(x);
    x = s.features;
    valid = s.active_bins;
    out.per_clip["active_bins"] = s.active_bins;
    flops_stage("sgs", x.sizes().vec());
  };
  if (sgs_index_ == 0) run_sgs();
  for (size_t s = 0; s < stages_.size(); ++s) {
    x = stages_[s]->forward(x);
    if (valid.defined() && stage_strides_t_[s] > 1) {
      valid = torch::div(valid - 1, stage_strides_t_[s], "floor") + 1;
    }
    flops_stage(kNames[s], x.sizes().vec());
    if (sgs_index_ == static_cast<int>(s) + 1) run_sgs();
  }
  out.features = masked_global_pool(x, valid);
  out.logits = apply_heads(heads_, dropout_->forward(out.features));
  flops_stage("heads", out.logits.at(0).sizes().vec());
  return out;
}

std::vector<std::string> ResNet3dImpl::clip_cost_names() const {
  if (!sgs_) return {};
  return {"active_bins", "gflops"};
}

void ResNet3dImpl::reset_heads(const std::vector<int64_t>& head_sizes) {
  heads_ = replace_module("heads", make_heads(feature_dim_, head_sizes));
}

}  // namespace holo::models
