#pragma once
/// MuCon (thesis ch. 9, §9.3.1-9.3.3): weakly supervised action segmentation from transcripts
/// with two branches on one temporal backbone.
///
/// - Backbone f_t (§9.3.1): a 1x1 convolution from D to `hidden`, ReLU; `layers` residual layers
///   (a 3-tap convolution of dilation 2^i, ReLU, a 1x1 convolution, dropout, the residual), with
///   a max pooling of 2 after the layers listed in `pool_after`; ReLU, a 1x1 convolution, group
///   norm (32 groups, §9.4.2), ReLU, dropout. Z has T' = T / 2^|pool_after| steps.
/// - Frame classification f_c (§9.3.2): Z upsampled to T by nearest neighbour, a 1x1 convolution
///   to the N classes: Y, the frame logits.
/// - Segment generation f_s (§9.3.3): a bidirectional LSTM encodes Z; an LSTM decoder with MLP
///   attention emits per step the log-probabilities a_m of N + 1 symbols (the classes and the
///   end symbol N) and a relative log length l_m. The start symbol is N + 1. In training the
///   decoder reads the ground-truth transcript (teacher forcing); in inference it reads its own
///   argmax until it emits the end symbol.
///
/// Submodules carry the names of the released code (ft.first_conv, ft.l_<i>.dilated_conv,
/// fs_encoder_lstm, fs_decoder_attention_W1, ...), so that its state dicts load by name; its
/// fs_decoder_attention_l3, which its forward never uses, is left out (docs/segmentation.md).

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/rnn.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "core/recipe.h"

namespace holo::models {

struct MuConOptions {
  int64_t in_dim = 2048;                     ///< feature dimension D
  int64_t classes = 0;                       ///< N
  int64_t hidden = 128;                      ///< D' of Z, the LSTMs' hidden size (§9.4.2)
  int64_t layers = 11;                       ///< dilated layers of f_t (§9.3.1)
  std::vector<int64_t> pool_after = {1, 2, 4, 8};  ///< 0-based layer indices followed by a max pool of 2
  double dropout = 0.25;
  int64_t groups = 32;                       ///< group norm after f_t
};

/// One residual layer of f_t.
struct WaveNetLayerImpl : torch::nn::Module {
  WaveNetLayerImpl(int64_t channels, int64_t dilation, double dropout);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv1d dilated_conv{nullptr}, conv_1x1{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(WaveNetLayer);

/// f_t without its group norm: 1 x D x T -> 1 x hidden x T' (SCT's f_e and f_r share it, models/sct.h).
struct WaveNetBlockImpl : torch::nn::Module {
  WaveNetBlockImpl(int64_t in_dim, int64_t hidden, int64_t layers, std::vector<int64_t> pool_after, double dropout);
  torch::Tensor forward(torch::Tensor x);
  /// forward(), and in `*level` the output of layer `level_after` after its pooling.
  torch::Tensor forward_with_level(torch::Tensor x, int64_t level_after, torch::Tensor* level);
  torch::nn::Conv1d first_conv{nullptr}, last_conv{nullptr};
  std::vector<WaveNetLayer> layers;
  std::vector<int64_t> pool_after;
};
TORCH_MODULE(WaveNetBlock);

/// The decoder's output for one video.
struct MuConSegments {
  torch::Tensor log_probs;    ///< steps x (N + 1): log-probabilities of the symbols, end symbol included
  torch::Tensor log_lengths;  ///< segments: l_m of each step but the last (the end symbol's)
  std::vector<int64_t> transcript;  ///< inference: the argmax symbols before the end symbol
};

class MuConNetImpl : public torch::nn::Module {
 public:
  explicit MuConNetImpl(const MuConOptions& options);
  /// f_t: features 1 x D x T -> Z, 1 x T' x hidden. Throws holo::Error when T is too short
  /// for the pooling (T' would be 0).
  torch::Tensor encode(const torch::Tensor& features);
  /// f_c: Z -> Y, frames x N logits.
  torch::Tensor classify(const torch::Tensor& z, int64_t frames);
  /// f_s with teacher forcing: the decoder reads the start symbol and `transcript` (M class ids)
  /// and emits M + 1 steps (the last one should be the end symbol).
  MuConSegments decode_teacher(const torch::Tensor& z, const std::vector<int64_t>& transcript);
  /// f_s greedy: the decoder reads its own argmax until it emits the end symbol or `max_steps`
  /// steps; `transcript` holds the symbols before the end symbol (class ids only).
  MuConSegments decode_greedy(const torch::Tensor& z, int64_t max_steps);
  const MuConOptions& options() const { return options_; }

 private:
  struct Decoder;
  MuConSegments decode(const torch::Tensor& z, const std::vector<int64_t>* teacher, int64_t max_steps);
  MuConOptions options_;
  WaveNetBlock ft{nullptr};
  torch::nn::GroupNorm ft_last_gn{nullptr};
  torch::nn::Dropout ft_last_dropout{nullptr};
  torch::nn::LSTM fs_encoder_lstm{nullptr};
  torch::nn::Linear fs_encoder_hidden_out{nullptr}, fs_encoder_cn_out{nullptr};
  torch::Tensor fs_decoder_attention_W1, fs_decoder_attention_V;
  torch::nn::Linear fs_decoder_attention_l2{nullptr};
  torch::nn::Embedding fs_decoder_embedding{nullptr};
  torch::nn::Dropout fs_decoder_embedding_drop{nullptr};
  torch::nn::Linear fs_decoder_attn_combine{nullptr};
  torch::nn::LSTM fs_decoder_lstm{nullptr};
  torch::nn::Sequential fs_decoder_transcript{nullptr}, fs_decoder_length{nullptr};
  torch::nn::Conv1d conv_classifier{nullptr};
};
TORCH_MODULE(MuConNet);

/// MuCon's options from a recipe's [model] (model.mucon_*) for features of `in_dim` and `classes`.
MuConOptions mucon_options(const ModelOptions& model, int64_t in_dim, int64_t classes);

/// Parameters of each part of MuCon (`holo model info mucon`): f_t, f_c, f_s.
struct MuConPartSize {
  std::string name;
  int64_t params = 0;
};
std::vector<MuConPartSize> mucon_sizes(const MuConOptions& options);

}  // namespace holo::models
