#include "models/transformer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "models/flops.h"

namespace holo::models {

using torch::Tensor;

// ---- modules -----------------------------------------------------------------------------

/// Multi-head self-attention's projections: qkv (D -> 3D) and proj (D -> D), as timm names them.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads) : heads_(heads) {
    qkv = register_module("qkv", torch::nn::Linear(dim, 3 * dim));
    proj = register_module("proj", torch::nn::Linear(dim, dim));
  }
  /// x: b x n x D -> q, k, v, each b x H x n x D/H.
  std::vector<Tensor> qkv_heads(const Tensor& x) {
    const int64_t b = x.size(0), n = x.size(1), d = x.size(2);
    const Tensor y = counted(qkv, x).reshape({b, n, 3, heads_, d / heads_}).permute({2, 0, 3, 1, 4});
    return {y[0], y[1], y[2]};
  }
  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t dim, int64_t hidden) {
    fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
  }
  Tensor forward(const Tensor& x) { return counted(fc2, torch::gelu(counted(fc1, x))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6));
}

/// A pre-norm block; TimeSformer's also has the temporal attention of divided space-time
/// attention (temporal_norm1, temporal_attn, temporal_fc).
class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int64_t dim, int64_t heads, bool temporal) {
    norm1 = register_module("norm1", layer_norm(dim));
    attn = register_module("attn", Attention(dim, heads));
    if (temporal) {
      temporal_norm1 = register_module("temporal_norm1", layer_norm(dim));
      temporal_attn = register_module("temporal_attn", Attention(dim, heads));
      temporal_fc = register_module("temporal_fc", torch::nn::Linear(dim, dim));
    }
    norm2 = register_module("norm2", layer_norm(dim));
    mlp = register_module("mlp", Mlp(dim, 4 * dim));
  }
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, temporal_norm1{nullptr};
  Attention attn{nullptr}, temporal_attn{nullptr};
  torch::nn::Linear temporal_fc{nullptr};
  Mlp mlp{nullptr};
};

/// XViT's temporal attention over the frames' class tokens: a class token of its own, position
/// embeddings for it and the T frames, one block, a norm.
class TemporalHeadImpl : public torch::nn::Module {
 public:
  TemporalHeadImpl(int64_t dim, int64_t heads, int64_t frames) {
    cls_token = register_parameter("cls_token", torch::zeros({1, 1, dim}));
    pos_embed = register_parameter("pos_embed", torch::zeros({1, frames + 1, dim}));
    block = register_module("block", std::make_shared<TransformerBlockImpl>(dim, heads, false));
    norm = register_module("norm", layer_norm(dim));
  }
  Tensor cls_token, pos_embed;
  std::shared_ptr<TransformerBlockImpl> block;
  torch::nn::LayerNorm norm{nullptr};
};

namespace {

// ---- the tokens of a forward pass ------------------------------------------------------------

/// The tokens of S samples, each of F frames (DeiT: one image per sample; XViT: x holds S*F
/// per-frame sequences; TimeSformer: x holds S sequences of 1 + P*F tokens, position-major).
/// Reduction acts on positions: sizes holds one size per position, CLS (index 0) included.
struct Tokens {
  Tensor x;
  Tensor sizes;   ///< S x (1 + P), float; undefined until a reducer runs (every size 1)
  Tensor count;   ///< float64 S: positions kept, CLS included
  Tensor macs;    ///< float64 S: each sample's multiply-accumulates so far
  int64_t frames = 1;
};

/// log(size) per key of the S*F sequences (-inf for padding), or undefined.
Tensor key_bias(const Tokens& t) {
  if (!t.sizes.defined()) return {};
  const Tensor b = t.sizes.log();
  return t.frames == 1 ? b : b.repeat_interleave(t.frames, 0);
}

/// softmax(q k^T / sqrt(d_h) + bias) v. q: b x H x nq x d_h, k, v: b x H x nk x d_h, bias:
/// b x nk or undefined. `weights` receives the attention matrix when given.
Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, Tensor* weights = nullptr) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  Tensor logits = q.matmul(k.transpose(-2, -1)) * scale;
  const double macs = static_cast<double>(q.size(0) * q.size(1) * q.size(2) * k.size(2) * q.size(3));
  flops_add(macs);
  if (bias.defined()) logits = logits + bias.unsqueeze(1).unsqueeze(1).to(logits.scalar_type());
  const Tensor a = logits.softmax(-1);
  if (weights != nullptr) *weights = a;
  flops_add(macs);
  return a.matmul(v);
}

/// b x H x n x d_h -> b x n x D.
Tensor merge_heads(const Tensor& o) { return o.transpose(1, 2).reshape({o.size(0), o.size(2), -1}); }

/// XViT's space-time mixing of keys or values (S*F x H x n x d_h): in every head, channels
/// [0, f) come from the next frame and [f, 2f) from the previous one (zero beyond the clip),
/// f = d_h / shift_div.
Tensor mix_frames(const Tensor& k, int64_t frames, int64_t shift_div) {
  const int64_t dh = k.size(3), f = dh / shift_div;
  if (f == 0) return k;
  const int64_t s = k.size(0) / frames, h = k.size(1), n = k.size(2);
  const Tensor kv = k.reshape({s, frames, h, n, dh});
  const Tensor zeros = torch::zeros({s, 1, h, n, f}, k.options());
  const Tensor next = torch::cat({kv.slice(1, 1).slice(4, 0, f), zeros}, 1);
  const Tensor prev = torch::cat({zeros, kv.slice(1, 0, frames - 1).slice(4, f, 2 * f)}, 1);
  return torch::cat({next, prev, kv.slice(4, 2 * f)}, 4).reshape({s * frames, h, n, dh});
}

/// 1 for the tokens of kept positions, 0 for padding: S*F x n x 1 (per-frame sequences) or
/// undefined when nothing is padded.
Tensor frame_mask(const Tokens& t) {
  if (!t.sizes.defined()) return {};
  const Tensor m = (t.sizes > 0).to(t.x.scalar_type());
  return (t.frames == 1 ? m : m.repeat_interleave(t.frames, 0)).unsqueeze(-1);
}

/// ATS in one attention: the CLS row, the scores of the positions (the mean over the frames),
/// the sample, and the rows of the sampled tokens. Returns the rows (S x m, CLS first),
/// their validity and A^s V (S*F x m x D, before proj).
struct AtsStep {
  Tensor rows, valid, out, kept;
};
AtsStep ats_attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, const Tokens& t,
                   const TokenReducer& red) {
  const int64_t sf = q.size(0), h = q.size(1), dh = q.size(3), s = sf / t.frames;
  Tensor cls_weights;
  const Tensor o_cls = attend(q.slice(2, 0, 1), k, v, bias, &cls_weights);
  const Tensor scores = ats_scores(cls_weights.squeeze(2), v, red.variant).reshape({s, t.frames, -1}).mean(1);
  Tensor budget;
  if (red.rho > 0) {
    budget = (t.count * red.rho).round().clamp_min(8).to(torch::kLong);
  } else if (red.tokens > 0) {
    budget = torch::full({s}, red.tokens, torch::kLong);
  } else {
    budget = t.count.to(torch::kLong);
  }
  const AtsSample sample = ats_sample(scores, budget, red.variant);
  AtsStep step;
  const auto long_opts = q.options().dtype(torch::kLong);
  step.rows = torch::cat({torch::zeros({s, 1}, long_opts), sample.index.to(q.device()) + 1}, 1);
  step.valid = torch::cat({torch::ones({s, 1}, long_opts.dtype(torch::kBool)), sample.valid.to(q.device())}, 1);
  step.kept = sample.kept;
  const int64_t m = step.rows.size(1);
  const Tensor rows_f = t.frames == 1 ? step.rows : step.rows.repeat_interleave(t.frames, 0);
  Tensor o = o_cls;
  if (m > 1) {
    const Tensor q_rest = q.gather(2, rows_f.slice(1, 1).view({sf, 1, m - 1, 1}).expand({sf, h, m - 1, dh}));
    o = torch::cat({o_cls, attend(q_rest, k, v, bias)}, 2);
  }
  step.out = merge_heads(o);
  return step;
}

/// x (S*F x n x D) at the rows of `rows` (S x m), per frame.
Tensor gather_rows(const Tensor& x, const Tensor& rows, int64_t frames) {
  const Tensor r = frames == 1 ? rows : rows.repeat_interleave(frames, 0);
  return x.gather(1, r.unsqueeze(-1).expand({x.size(0), r.size(1), x.size(2)}));
}

double sq(double v) { return v * v; }

/// ToMe's matching cost of c tokens (c / 2 rounded up against c / 2 rounded down, d channels).
Tensor match_macs(const Tensor& c, int64_t d) { return (c / 2).ceil() * (c / 2).floor() * static_cast<double>(d); }

/// ToMe on positions: the positions of `x_pos` (S x P x C) merged by the metric (S x P x d),
/// sizes and counts updated. protect_first keeps position 0 (DeiT's CLS, which it includes).
Tensor merge_positions(Tokens& t, const Tensor& metric, const Tensor& x_pos, int64_t r, bool cls_included) {
  const Tensor sizes = t.sizes.defined() ? (cls_included ? t.sizes : t.sizes.slice(1, 1)) : Tensor();
  const TomeMatch match = tome_match(metric, r, sizes, cls_included);
  const Tensor considered = cls_included ? t.count : t.count - 1;
  t.macs = t.macs + match_macs(considered, metric.size(2));
  auto [merged, new_sizes] = tome_merge_weighted(match, x_pos, sizes);
  if (!cls_included) new_sizes = torch::cat({torch::ones({new_sizes.size(0), 1}, new_sizes.options()), new_sizes}, 1);
  t.sizes = new_sizes;
  t.count = (t.sizes > 0).sum(1).to(torch::kFloat64);
  return merged;
}

/// One DeiT or XViT block (per-frame sequences S*F x n x D) with its reducer.
void frame_block(TransformerBlockImpl& blk, Tokens& t, const TokenReducer& red, int64_t shift_div) {
  const int64_t dim = t.x.size(2), f = t.frames, s = t.x.size(0) / f;
  const double d = static_cast<double>(dim), frames = static_cast<double>(f);
  Tensor x = t.x;
  auto qkv = blk.attn->qkv_heads(blk.norm1(x));
  t.macs = t.macs + frames * t.count * 3 * sq(d);
  Tensor k = qkv[1], v = qkv[2];
  if (shift_div > 0) {
    k = mix_frames(k, f, shift_div);
    v = mix_frames(v, f, shift_div);
  }
  const Tensor bias = key_bias(t);
  if (red.kind == TokenReducer::Kind::kAts) {
    const AtsStep step = ats_attend(qkv[0], k, v, bias, t, red);
    const Tensor out_count = (step.kept.to(torch::kFloat64) + 1).to(t.count.device());
    t.macs = t.macs + frames * (2 * out_count * t.count * d + out_count * sq(d));
    x = gather_rows(x, step.rows, f) + counted(blk.attn->proj, step.out);
    const Tensor sizes = t.sizes.defined() ? t.sizes : torch::ones({s, t.x.size(1)}, x.options());
    t.sizes = sizes.gather(1, step.rows) * step.valid.to(x.scalar_type());
    t.count = out_count;
  } else {
    const Tensor o = merge_heads(attend(qkv[0], k, v, bias));
    t.macs = t.macs + frames * (2 * t.count * t.count * d + t.count * sq(d));
    x = x + counted(blk.attn->proj, o);
    if (red.kind == TokenReducer::Kind::kTome) {
      const int64_t n = x.size(1);
      if (f == 1) {
        x = merge_positions(t, qkv[1].mean(1), x, red.merge, /*cls_included=*/true);
      } else {
        // Positions of every frame together: a position's tokens are its F frames' tokens.
        const Tensor metric = qkv[1].mean(1).reshape({s, f, n, -1}).mean(1).slice(1, 1);
        const Tensor frames_x = x.reshape({s, f, n, dim});
        const Tensor pos = frames_x.slice(2, 1).permute({0, 2, 1, 3}).reshape({s, n - 1, f * dim});
        const Tensor merged = merge_positions(t, metric, pos, red.merge, /*cls_included=*/false);
        const int64_t p = merged.size(1);
        x = torch::cat({frames_x.slice(2, 0, 1), merged.reshape({s, p, f, dim}).permute({0, 2, 1, 3})}, 2)
                .reshape({s * f, p + 1, dim});
      }
    }
  }
  x = x + blk.mlp(blk.norm2(x));
  t.macs = t.macs + frames * t.count * 8 * sq(d);
  const Tensor mask = frame_mask(t);
  t.x = mask.defined() ? x * mask : x;
}

/// One TimeSformer block (divided space-time attention; S x (1 + P*F) x D, position-major).
void timesformer_block(TransformerBlockImpl& blk, Tokens& t, const TokenReducer& red) {
  const int64_t dim = t.x.size(2), f = t.frames, s = t.x.size(0), p = (t.x.size(1) - 1) / f;
  const double d = static_cast<double>(dim), frames = static_cast<double>(f);
  const Tensor x = t.x;
  // Temporal: each position's F tokens attend to each other.
  Tensor xt = x.slice(1, 1);
  {
    auto qkv = blk.temporal_attn->qkv_heads(blk.temporal_norm1(xt.reshape({s * p, f, dim})));
    const Tensor o = merge_heads(attend(qkv[0], qkv[1], qkv[2], Tensor()));
    const Tensor r = counted(blk.temporal_fc, counted(blk.temporal_attn->proj, o).reshape({s, p * f, dim}));
    xt = xt + r;
    t.macs = t.macs + (t.count - 1) * (frames * 3 * sq(d) + 2 * sq(frames) * d + frames * sq(d) + frames * sq(d));
  }
  // Spatial: each frame's positions with the class token.
  const Tensor init_cls = x.slice(1, 0, 1);
  const Tensor xs = torch::cat({init_cls.repeat_interleave(f, 0),
                                xt.reshape({s, p, f, dim}).permute({0, 2, 1, 3}).reshape({s * f, p, dim})},
                               1);
  auto qkv = blk.attn->qkv_heads(blk.norm1(xs));
  t.macs = t.macs + frames * t.count * 3 * sq(d);
  const Tensor bias = key_bias(t);
  Tensor rs, xt_kept = xt.reshape({s, p, f, dim});
  if (red.kind == TokenReducer::Kind::kAts) {
    const AtsStep step = ats_attend(qkv[0], qkv[1], qkv[2], bias, t, red);
    const Tensor out_count = (step.kept.to(torch::kFloat64) + 1).to(t.count.device());
    t.macs = t.macs + frames * (2 * out_count * t.count * d + out_count * sq(d));
    rs = counted(blk.attn->proj, step.out);
    const int64_t m = step.rows.size(1);
    const Tensor pos = (step.rows.slice(1, 1) - 1).clamp_min(0);
    xt_kept = xt_kept.gather(1, pos.view({s, m - 1, 1, 1}).expand({s, m - 1, f, dim}));
    const Tensor sizes = t.sizes.defined() ? t.sizes : torch::ones({s, p + 1}, x.options());
    t.sizes = sizes.gather(1, step.rows) * step.valid.to(x.scalar_type());
    t.count = out_count;
  } else {
    rs = counted(blk.attn->proj, merge_heads(attend(qkv[0], qkv[1], qkv[2], bias)));
    t.macs = t.macs + frames * (2 * t.count * t.count * d + t.count * sq(d));
  }
  const int64_t kept = rs.size(1) - 1;
  const Tensor cls_out = rs.slice(1, 0, 1).reshape({s, f, dim}).mean(1, true);
  Tensor positions = xt_kept + rs.slice(1, 1).reshape({s, f, kept, dim}).permute({0, 2, 1, 3});
  if (red.kind == TokenReducer::Kind::kTome) {
    const Tensor metric = qkv[1].mean(1).reshape({s, f, p + 1, -1}).mean(1).slice(1, 1);
    const Tensor merged = merge_positions(t, metric, positions.reshape({s, kept, f * dim}), red.merge, false);
    positions = merged.reshape({s, merged.size(1), f, dim});
  }
  Tensor y = torch::cat({init_cls + cls_out, positions.reshape({s, -1, dim})}, 1);
  y = y + blk.mlp(blk.norm2(y));
  t.macs = t.macs + (1 + (t.count - 1) * frames) * 8 * sq(d);
  if (t.sizes.defined()) {
    const Tensor m = (t.sizes.slice(1, 1) > 0).to(y.scalar_type()).repeat_interleave(f, 1);
    y = y * torch::cat({torch::ones({s, 1}, m.options()), m}, 1).unsqueeze(-1);
  }
  t.x = y;
}

void init_transformer(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* l = m->as<torch::nn::Linear>()) {
      l->weight.normal_(0, 0.02).clamp_(-2, 2);  // timm's trunc_normal_(std=.02): bounds +-2
      if (l->bias.defined()) l->bias.zero_();
    } else if (auto* n = m->as<torch::nn::LayerNorm>()) {
      n->weight.fill_(1);
      n->bias.zero_();
    }
  }
}

[[noreturn]] void fail(const std::string& key, const std::string& msg) {
  throw RecipeError("[model]", 0, 0, key, msg);
}

}  // namespace

// ---- the network ----------------------------------------------------------------------------

TransformerNetworkImpl::TransformerNetworkImpl(const TransformerOptions& o) : options_(o) {
  const int64_t dim = o.embed_dim;
  if (o.num_heads < 1 || dim % o.num_heads != 0) {
    fail("model.num_heads", "must divide model.embed_dim (" + std::to_string(dim) + "), got " + std::to_string(o.num_heads));
  }
  if (o.patch_size < 1 || o.image_size % o.patch_size != 0) {
    fail("model.image_size", "must be a multiple of model.patch_size (" + std::to_string(o.patch_size) + "), got " +
                                 std::to_string(o.image_size));
  }
  if (!o.reducers.empty() && static_cast<int64_t>(o.reducers.size()) != o.depth) {
    throw std::invalid_argument("TransformerOptions: reducers must have one entry per block");
  }
  const bool temporal = o.kind == TransformerKind::kTimesformer;
  auto patch = register_module("patch_embed", std::make_shared<torch::nn::Module>());
  patch_proj_ = patch->register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, dim, o.patch_size).stride(o.patch_size)));
  cls_token_ = register_parameter("cls_token", torch::zeros({1, 1, dim}));
  pos_embed_ = register_parameter("pos_embed", torch::zeros({1, positions() + 1, dim}));
  if (o.kind == TransformerKind::kTimesformer) time_embed_ = register_parameter("time_embed", torch::zeros({1, o.frames, dim}));
  if (o.kind == TransformerKind::kXvit) time_embed_ = register_parameter("temp_embed", torch::zeros({1, o.frames, 1, dim}));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.depth; ++i) blocks_->push_back(std::make_shared<TransformerBlockImpl>(dim, o.num_heads, temporal));
  norm_ = register_module("norm", layer_norm(dim));
  if (o.kind == TransformerKind::kXvit) {
    temporal_head_ = register_module("temporal_head", std::make_shared<TemporalHeadImpl>(dim, o.num_heads, o.frames));
  }
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout));
  heads_ = register_module("heads", make_heads(dim, o.heads));
  init_transformer(*this);
  torch::NoGradGuard no_grad;
  cls_token_.normal_(0, 0.02);
  pos_embed_.normal_(0, 0.02);
  if (temporal_head_) {
    temporal_head_->cls_token.normal_(0, 0.02);
    temporal_head_->pos_embed.normal_(0, 0.02);
  }
  if (o.qk_init_std != 0.02) {
    for (const auto& item : named_parameters()) {
      if (item.key().find("attn.qkv.weight") == std::string::npos) continue;
      item.value().slice(0, 0, 2 * dim).normal_(0, o.qk_init_std).clamp_(-2, 2);  // rows: q, k, then v
    }
  }
  if (temporal) {
    // The official TimeSformer starts every block's temporal_fc but the first at zero.
    for (int64_t i = 1; i < o.depth; ++i) {
      auto& b = blocks_[i]->as<TransformerBlockImpl>()->temporal_fc;
      b->weight.zero_();
      b->bias.zero_();
    }
  }
}

int64_t TransformerNetworkImpl::positions() const {
  const int64_t side = options_.image_size / options_.patch_size;
  return side * side;
}

void TransformerNetworkImpl::reset_heads(const std::vector<int64_t>& head_sizes) {
  heads_ = replace_module("heads", make_heads(options_.embed_dim, head_sizes));
}

std::vector<std::string> TransformerNetworkImpl::clip_cost_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < options_.reducers.size(); ++i) {
    if (options_.reducers[i].kind != TokenReducer::Kind::kNone) names.push_back("tokens_" + std::to_string(i));
  }
  if (!names.empty()) names.insert(names.begin(), "gflops");
  return names;
}

NetworkOutput TransformerNetworkImpl::forward_all(const torch::Tensor& clips) {
  const TransformerOptions& o = options_;
  if (clips.dim() != 5 || clips.size(1) != 3) {
    throw std::invalid_argument("transformer: expected clips N x 3 x T x H x W, got " + std::to_string(clips.dim()) + " dimensions");
  }
  const int64_t b = clips.size(0), frames = clips.size(2), dim = o.embed_dim, p = positions();
  if (clips.size(3) != o.image_size || clips.size(4) != o.image_size) {
    throw std::invalid_argument("transformer: the network is built for " + std::to_string(o.image_size) + "x" +
                                std::to_string(o.image_size) + " frames (model.image_size), got " +
                                std::to_string(clips.size(3)) + "x" + std::to_string(clips.size(4)));
  }
  if (o.kind != TransformerKind::kDeit && frames != o.frames) {
    throw std::invalid_argument("transformer: the network is built for clips of " + std::to_string(o.frames) +
                                " frames (model.frames), got " + std::to_string(frames));
  }
  const double d = static_cast<double>(dim);
  const Tensor images = clips.permute({0, 2, 1, 3, 4}).reshape({b * frames, 3, o.image_size, o.image_size});
  const Tensor patches = counted(patch_proj_, images).flatten(2).transpose(1, 2);  // b*T x P x D
  flops_stage("patch_embed", patches.sizes().vec());
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(clips.device());
  Tokens t;
  t.frames = o.kind == TransformerKind::kDeit ? 1 : frames;
  const int64_t samples = o.kind == TransformerKind::kDeit ? b * frames : b;
  const double patch_macs = static_cast<double>(p) * d * 3 * static_cast<double>(o.patch_size * o.patch_size);
  t.count = torch::full({samples}, static_cast<double>(p + 1), f64);
  t.macs = torch::full({samples}, patch_macs * static_cast<double>(t.frames), f64);
  Tensor x = torch::cat({cls_token_.expand({b * frames, 1, dim}), patches}, 1) + pos_embed_;
  if (o.kind == TransformerKind::kXvit) {
    x = (x.reshape({b, frames, p + 1, dim}) + time_embed_).reshape({b * frames, p + 1, dim});
  } else if (o.kind == TransformerKind::kTimesformer) {
    const Tensor cls = x.slice(0, 0, b).slice(1, 0, 1);
    const Tensor rest = x.slice(1, 1).reshape({b, frames, p, dim}).permute({0, 2, 1, 3}) + time_embed_.unsqueeze(1);
    x = torch::cat({cls, rest.reshape({b, p * frames, dim})}, 1);
  }
  t.x = x;
  NetworkOutput out;
  for (int64_t i = 0; i < o.depth; ++i) {
    const TokenReducer red = o.reducers.empty() ? TokenReducer() : o.reducers[static_cast<size_t>(i)];
    auto& blk = *blocks_[i]->as<TransformerBlockImpl>();
    if (o.kind == TransformerKind::kTimesformer) {
      timesformer_block(blk, t, red);
    } else {
      frame_block(blk, t, red, o.kind == TransformerKind::kXvit ? o.shift_div : 0);
    }
    flops_stage("blocks." + std::to_string(i), t.x.sizes().vec());
    if (red.kind != TokenReducer::Kind::kNone) {
      const Tensor c = o.kind == TransformerKind::kDeit ? t.count.reshape({b, frames}).mean(1) : t.count;
      out.per_clip["tokens_" + std::to_string(i)] = c;
    }
  }
  const Tensor cls = norm_(t.x).select(1, 0);
  Tensor clip_macs = o.kind == TransformerKind::kDeit ? t.macs.reshape({b, frames}).sum(1) : t.macs;
  Tensor features;
  if (o.kind == TransformerKind::kDeit) {
    features = cls.reshape({b, frames, dim}).mean(1);
  } else if (o.kind == TransformerKind::kTimesformer) {
    features = cls;
  } else {
    auto& th = *temporal_head_;
    Tokens z;
    z.x = torch::cat({th.cls_token.expand({b, 1, dim}), cls.reshape({b, frames, dim})}, 1) + th.pos_embed;
    z.count = torch::full({b}, static_cast<double>(frames + 1), f64);
    z.macs = torch::zeros({b}, f64);
    frame_block(*th.block, z, TokenReducer(), 0);
    features = th.norm(z.x).select(1, 0);
    clip_macs = clip_macs + z.macs;
    flops_stage("temporal_head", features.sizes().vec());
  }
  out.features = features;
  out.logits = apply_heads(heads_, dropout_(features));
  int64_t outputs = 0;
  for (auto h : o.heads) outputs += h;
  clip_macs = clip_macs + d * static_cast<double>(outputs);
  if (!clip_cost_names().empty()) out.per_clip["gflops"] = clip_macs / 1e9;
  return out;
}

std::shared_ptr<NetworkImpl> build_transformer(TransformerKind kind, const holo::ModelOptions& m,
                                               const std::vector<int64_t>& heads) {
  TransformerOptions o;
  o.kind = kind;
  o.embed_dim = m.embed_dim > 0 ? m.embed_dim : 384;
  o.num_heads = m.num_heads > 0 ? m.num_heads : 6;
  o.depth = m.depth;
  o.patch_size = m.patch_size;
  o.image_size = m.image_size;
  o.frames = m.frames;
  o.shift_div = m.xvit_shift_div;
  o.qk_init_std = m.qk_init_std;
  o.dropout = m.dropout;
  o.heads = heads;
  if (m.token_reducer != "none") {
    std::vector<int64_t> blocks = m.reducer_blocks;
    if (blocks.empty()) {
      // The thesis's placements: DeiT-S and XViT blocks 3-11 (§7.3.2, §7.3.4.4), TimeSformer 3-5 (§7.3.4.5).
      const int64_t last = kind == TransformerKind::kTimesformer ? std::min<int64_t>(5, o.depth - 1) : o.depth - 1;
      for (int64_t i = std::min<int64_t>(3, o.depth - 1); i <= last; ++i) blocks.push_back(i);
    }
    TokenReducer red;
    red.kind = m.token_reducer == "ats" ? TokenReducer::Kind::kAts : TokenReducer::Kind::kTome;
    red.tokens = m.ats_tokens;
    red.rho = m.ats_rho;
    red.variant = parse_ats_variant(m.ats_variant);
    red.merge = m.tome_r;
    o.reducers.assign(static_cast<size_t>(o.depth), TokenReducer());
    for (auto i : blocks) {
      if (i < 0 || i >= o.depth) {
        fail("model.reducer_blocks", "block " + std::to_string(i) + " does not exist: the network has blocks 0.." +
                                         std::to_string(o.depth - 1));
      }
      o.reducers[static_cast<size_t>(i)] = red;
    }
  }
  return std::make_shared<TransformerNetworkImpl>(o);
}

}  // namespace holo::models
