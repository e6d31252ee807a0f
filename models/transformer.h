#pragma once
/// Vision and video transformers (chapter 7 of the thesis): DeiT (Touvron et al. 2021),
/// TimeSformer with divided space-time attention (Bertasius et al. 2021) and XViT with
/// space-time mixing attention (Bulat et al. 2021), each with a token reducer placeable in any
/// block: the Adaptive Token Sampler (§7.2) or token merging (ToMe). docs/models.md,
/// "Transformers and token reduction"; the PyTorch twins are in bench/transformer_baseline.py.
///
/// Parameter names follow timm's VisionTransformer (patch_embed.proj, cls_token, pos_embed,
/// blocks.<i>.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm) and the official
/// TimeSformer (time_embed, blocks.<i>.{temporal_norm1, temporal_attn.*, temporal_fc}) and XViT
/// (temp_embed) code; the classifier is heads.<i> as in every Holo network (timm's head.* is
/// mapped on import, models/weights.h). LayerNorm eps 1e-6, exact GELU, qkv with bias.
///
/// Token reduction in video transformers works on spatial positions shared by every frame: a
/// block keeps the same positions in all frames, so that TimeSformer's temporal attention (the
/// same position across frames) and XViT's mixing (keys and values of the same position in the
/// neighbouring frames) stay defined. ATS scores a position by the mean over the frames of its
/// per-frame scores; ToMe matches positions by their keys averaged over heads and frames.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <string>
#include <vector>

#include "models/network.h"
#include "models/token_reduction.h"

namespace holo::models {

enum class TransformerKind { kDeit, kTimesformer, kXvit };

/// What one block does with its tokens besides attending.
struct TokenReducer {
  enum class Kind { kNone, kAts, kTome };
  Kind kind = Kind::kNone;
  int64_t tokens = 0;   ///< ATS: K, the sampling points; 0: the block's input tokens (CLS included)
  double rho = 0;       ///< ATS: > 0 sets K_n = max(round(rho * N_n), 8) (§7.3.4.1)
  AtsVariant variant = AtsVariant::kThesis;
  int64_t merge = 8;    ///< ToMe: r, tokens (positions) merged in the block
};

struct TransformerOptions {
  TransformerKind kind = TransformerKind::kDeit;
  int64_t embed_dim = 384;
  int64_t num_heads = 6;
  int64_t depth = 12;
  int64_t patch_size = 16;
  int64_t image_size = 224;
  int64_t frames = 8;      ///< T of TimeSformer's time_embed and XViT's temp_embed
  int64_t shift_div = 4;   ///< XViT: d_h / shift_div channels of each head from t - 1 and from t + 1
  double dropout = 0;
  /// Standard deviation of the query and key weights at initialisation (timm and the official
  /// code: 0.02, like every Linear). Larger values start the attention away from uniform.
  double qk_init_std = 0.02;
  std::vector<int64_t> heads = {1000};
  std::vector<TokenReducer> reducers;  ///< one per block, or empty (none anywhere)
};

class TransformerBlockImpl;
class TemporalHeadImpl;

class TransformerNetworkImpl : public NetworkImpl {
 public:
  explicit TransformerNetworkImpl(const TransformerOptions& options);
  /// clips N x 3 x T x H x W; H = W = image_size. DeiT treats every frame as an image and
  /// averages the frames' features; TimeSformer and XViT need T = frames.
  /// per_clip: "gflops" (float64 N: each clip's own cost, counting only its kept tokens) and,
  /// for every block with a reducer, "tokens_<block>" (float64 N: tokens per frame after the
  /// block, CLS included, the mean over the clip's frames for DeiT).
  NetworkOutput forward_all(const torch::Tensor& clips) override;
  int64_t feature_dim() const override { return options_.embed_dim; }
  void reset_heads(const std::vector<int64_t>& head_sizes) override;
  std::vector<std::string> clip_cost_names() const override;
  const TransformerOptions& options() const { return options_; }
  /// Spatial positions S of a frame (image_size / patch_size)^2.
  int64_t positions() const;

 private:
  TransformerOptions options_;
  torch::nn::Conv2d patch_proj_{nullptr};
  torch::Tensor cls_token_, pos_embed_, time_embed_;
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
  std::shared_ptr<TemporalHeadImpl> temporal_head_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::ModuleList heads_{nullptr};
};
TORCH_MODULE(TransformerNetwork);

/// Builds a transformer family's network from resolved model options (models/network.cc).
std::shared_ptr<NetworkImpl> build_transformer(TransformerKind kind, const holo::ModelOptions& options,
                                               const std::vector<int64_t>& heads);

}  // namespace holo::models
