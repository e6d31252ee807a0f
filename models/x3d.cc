#include "models/x3d.h"

#include <torch/torch.h>

#include <cmath>

#include "models/flops.h"
#include "models/resnet3d.h"

namespace holo::models {
namespace {

using torch::nn::Conv3d;
using torch::nn::Conv3dOptions;

Conv3d make_conv(int64_t in, int64_t out, std::vector<int64_t> k, std::vector<int64_t> s,
                 int64_t groups = 1, bool bias = false) {
  std::vector<int64_t> pad = {k[0] / 2, k[1] / 2, k[2] / 2};
  return Conv3d(Conv3dOptions(in, out, k).stride(s).padding(pad).groups(groups).bias(bias));
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int64_t x3d_round_width(double width, double multiplier, int64_t min_width, int64_t divisor) {
  const double w = width * multiplier;
  const auto d = static_cast<double>(divisor);
  int64_t out = std::max<int64_t>(min_width, static_cast<int64_t>(w + d / 2) / divisor * divisor);
  if (static_cast<double>(out) < 0.9 * w) out += divisor;
  return out;
}

X3dOptions X3dOptions::s() { return X3dOptions().frames(13); }
X3dOptions X3dOptions::m() { return X3dOptions().frames(16); }
X3dOptions X3dOptions::l() { return X3dOptions().depth_factor(5.0).frames(16); }
X3dOptions X3dOptions::xl() { return X3dOptions().width_factor(2.9).depth_factor(5.0).frames(16); }

// ---- stem, SE, block, stage ------------------------------------------------------------------

X3dStemImpl::X3dStemImpl(int64_t out, int64_t kt) {
  conv_xy_ = register_module("conv_xy", make_conv(3, out, {1, 3, 3}, {1, 2, 2}));
  conv_ = register_module("conv", make_conv(out, out, {kt, 1, 1}, {1, 1, 1}, out));
  bn_ = register_module("bn", BatchNorm3d(out));
}

torch::Tensor X3dStemImpl::forward(const torch::Tensor& x) {
  return torch::relu(bn_->forward(counted(conv_, counted(conv_xy_, x))));
}

X3dSqueezeExciteImpl::X3dSqueezeExciteImpl(int64_t channels, int64_t hidden) {
  fc1_ = register_module("fc1", make_conv(channels, hidden, {1, 1, 1}, {1, 1, 1}, 1, true));
  fc2_ = register_module("fc2", make_conv(hidden, channels, {1, 1, 1}, {1, 1, 1}, 1, true));
}

torch::Tensor X3dSqueezeExciteImpl::forward(const torch::Tensor& x, const torch::Tensor& valid) {
  // Masked so that the zero bins padding a batch after SGS do not dilute a clip's squeeze.
  auto s = masked_global_pool(x, valid).view({x.size(0), x.size(1), 1, 1, 1});
  s = torch::sigmoid(counted(fc2_, torch::relu(counted(fc1_, s))));
  return x * s;
}

X3dBlockImpl::X3dBlockImpl(int64_t in, int64_t inner, int64_t out, int64_t stride,
                           int64_t se_hidden) {
  TORCH_CHECK(in > 0 && inner > 0 && out > 0 && stride >= 1 && se_hidden >= 0,
              "X3D block: bad sizes");
  if (in != out || stride != 1) {
    branch1_ = register_module("branch1", make_conv(in, out, {1, 1, 1}, {1, stride, stride}));
    branch1_bn_ = register_module("branch1_bn", BatchNorm3d(out));
  }
  a_ = register_module("a", make_conv(in, inner, {1, 1, 1}, {1, 1, 1}));
  a_bn_ = register_module("a_bn", BatchNorm3d(inner));
  b_ = register_module("b", make_conv(inner, inner, {3, 3, 3}, {1, stride, stride}, inner));
  b_bn_ = register_module("b_bn", BatchNorm3d(inner));
  if (se_hidden > 0) se_ = register_module("se", X3dSqueezeExcite(inner, se_hidden));
  c_ = register_module("c", make_conv(inner, out, {1, 1, 1}, {1, 1, 1}));
  c_bn_ = register_module("c_bn", BatchNorm3d(out));
}

torch::Tensor X3dBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& valid) {
  auto h = torch::relu(a_bn_->forward(counted(a_, x)));
  h = b_bn_->forward(counted(b_, h));
  if (se_) h = se_->forward(h, valid);
  h = c_bn_->forward(counted(c_, torch::silu(h)));  // Swish
  auto shortcut = branch1_ ? branch1_bn_->forward(counted(branch1_, x)) : x;
  return torch::relu(shortcut + h);
}

X3dStageImpl::X3dStageImpl(std::vector<X3dBlock> blocks, int64_t conv5_in, int64_t conv5_out,
                           int64_t lin5_out)
    : blocks_(std::move(blocks)) {
  TORCH_CHECK(!blocks_.empty(), "X3D stage: at least one block");
  for (size_t i = 0; i < blocks_.size(); ++i) register_module(std::to_string(i), blocks_[i]);
  if (conv5_out > 0) {
    conv_5_ = register_module("conv_5", make_conv(conv5_in, conv5_out, {1, 1, 1}, {1, 1, 1}));
    conv_5_bn_ = register_module("conv_5_bn", BatchNorm3d(conv5_out));
  }
  if (lin5_out > 0) {
    TORCH_CHECK(conv5_out > 0, "X3D stage: lin_5 follows conv_5");
    lin_5_ = register_module("lin_5", make_conv(conv5_out, lin5_out, {1, 1, 1}, {1, 1, 1}));
  }
}

torch::Tensor X3dStageImpl::forward(const torch::Tensor& x, const torch::Tensor& valid) {
  auto h = x;
  for (auto& b : blocks_) h = b->forward(h, valid);
  if (conv_5_) h = torch::relu(conv_5_bn_->forward(counted(conv_5_, h)));
  return h;
}

torch::Tensor X3dStageImpl::project(const torch::Tensor& pooled) {
  TORCH_CHECK(lin_5_, "X3D stage: project() needs lin_5 (the last stage)");
  auto h = pooled.view({pooled.size(0), pooled.size(1), 1, 1, 1});
  return torch::relu(counted(lin_5_, h)).flatten(1);
}

// ---- X3d -------------------------------------------------------------------------------------

X3dImpl::X3dImpl(const X3dOptions& o) : options_(o) {
  TORCH_CHECK(!o.heads().empty(), "X3D: at least one head");
  TORCH_CHECK(o.width_factor() > 0 && o.depth_factor() > 0 && o.bottleneck_factor() > 0 &&
                  o.dim_c1() > 0 && o.dim_c5() > 0 && o.se_ratio() >= 0 && o.frames() > 0,
              "X3D: factors, widths and frames must be positive");
  const int64_t c1 = x3d_round_width(static_cast<double>(o.dim_c1()), o.width_factor());
  stem_ = register_module("stem", X3dStem(c1));
  widths_.push_back(c1);
  // PySlowFast's block_basis: res2 at dim_c1 (X3D.SCALE_RES2 is false), every later stage at
  // twice the width of the one before, each rounded, then all scaled by gamma_w.
  std::vector<int64_t> base = {o.dim_c1()};
  for (int i = 0; i < 3; ++i) {
    base.push_back(x3d_round_width(static_cast<double>(base.back()), 2.0));
  }
  static const int64_t kBlocks[] = {1, 2, 5, 3};
  static const char* kNames[] = {"res2", "res3", "res4", "res5"};
  int64_t in = c1;
  for (size_t s = 0; s < 4; ++s) {
    const int64_t out = x3d_round_width(static_cast<double>(base[s]), o.width_factor());
    const auto inner = static_cast<int64_t>(o.bottleneck_factor() * static_cast<double>(out));
    const auto n =
        static_cast<int64_t>(std::ceil(o.depth_factor() * static_cast<double>(kBlocks[s])));
    const int64_t se =
        o.se_ratio() > 0 ? x3d_round_width(static_cast<double>(inner), o.se_ratio()) : 0;
    std::vector<X3dBlock> blocks;
    for (int64_t i = 0; i < n; ++i) {
      // SE on every other block, the first of each pair (PySlowFast: (block_idx + 1) % 2).
      blocks.push_back(
          X3dBlock(i == 0 ? in : out, inner, out, i == 0 ? 2 : 1, i % 2 == 0 ? se : 0));
    }
    const bool last = s == 3;
    stages_.push_back(register_module(
        kNames[s],
        X3dStage(std::move(blocks), last ? out : 0, last ? inner : 0, last ? o.dim_c5() : 0)));
    widths_.push_back(out);
    in = out;
  }
  if (!o.sgs_after().empty()) {
    static const std::vector<std::string> kAfter = {"stem", "res2", "res3", "res4"};
    auto it = std::find(kAfter.begin(), kAfter.end(), o.sgs_after());
    TORCH_CHECK(it != kAfter.end(), "SGS placement must be one of stem, res2, res3, res4");
    sgs_index_ = static_cast<int>(it - kAfter.begin());
    const int64_t bins = o.sgs_bins() > 0 ? o.sgs_bins() : o.frames();  // T is constant in X3D
    sgs_ = register_module("sgs", Sgs(SgsOptions(widths_[sgs_index_], bins)
                                          .dim(o.sgs_dim())
                                          .kernel(o.sgs_kernel())
                                          .measure(o.sgs_measure())));
  }
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout()));
  heads_ = register_module("heads", make_heads(o.dim_c5(), o.heads()));

  // PySlowFast's init_weights: convolutions c2_msra_fill (Kaiming-normal, fan out, bias 0),
  // BN weight 1 and bias 0 (0 weight for each residual branch's last BN with
  // ZERO_INIT_FINAL_BN), heads normal with std FC_INIT_STD = 0.01 and bias 0.
  init_resnet_weights(*this);
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    const std::string& k = p.key();
    if (ends_with(k, ".se.fc1.bias") || ends_with(k, ".se.fc2.bias")) p.value().zero_();
    if (o.zero_init_final_bn() && ends_with(k, ".c_bn.weight")) p.value().zero_();
  }
  for (auto& p : heads_->named_parameters()) {
    if (ends_with(p.key(), "weight")) p.value().normal_(0, 0.01);
    if (ends_with(p.key(), "bias")) p.value().zero_();
  }
}

NetworkOutput X3dImpl::forward_all(const torch::Tensor& clips) {
  TORCH_CHECK(clips.dim() == 5 && clips.size(1) == 3, "clips must be N x 3 x T x H x W, got ",
              clips.sizes());
  static const char* kNames[] = {"res2", "res3", "res4", "res5"};
  NetworkOutput out;
  torch::Tensor valid;  // bins per clip that are not padding, after SGS
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
    x = stages_[s]->forward(x, valid);  // no temporal stride: `valid` keeps its value
    flops_stage(kNames[s], x.sizes().vec());
    if (sgs_index_ == static_cast<int>(s) + 1) run_sgs();
  }
  // lin_5 runs on the pooled features (X3DHead), so its few MACs fall in the "heads" stage.
  out.features = stages_.back()->project(masked_global_pool(x, valid));
  out.logits = apply_heads(heads_, dropout_->forward(out.features));
  flops_stage("heads", out.logits.at(0).sizes().vec());
  return out;
}

std::vector<std::string> X3dImpl::clip_cost_names() const {
  if (!sgs_) return {};
  return {"active_bins", "gflops"};
}

void X3dImpl::reset_heads(const std::vector<int64_t>& head_sizes) {
  heads_ = replace_module("heads", make_heads(options_.dim_c5(), head_sizes));
}

}  // namespace holo::models
