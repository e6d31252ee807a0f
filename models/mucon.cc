#include "models/mucon.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace holo::models {

namespace F = torch::nn::functional;

WaveNetLayerImpl::WaveNetLayerImpl(int64_t channels, int64_t dilation, double dropout)
    : dilated_conv(register_module(
          "dilated_conv",
          torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, channels, 3).dilation(dilation).padding(dilation)))),
      conv_1x1(register_module("conv_1x1", torch::nn::Conv1d(channels, channels, 1))),
      drop(register_module("drop", torch::nn::Dropout(dropout))) {}

torch::Tensor WaveNetLayerImpl::forward(const torch::Tensor& x) {
  return drop(conv_1x1(torch::relu(dilated_conv(x)))) + x;
}

WaveNetBlockImpl::WaveNetBlockImpl(int64_t in_dim, int64_t hidden, int64_t n_layers, std::vector<int64_t> pools,
                                   double dropout)
    : first_conv(register_module("first_conv", torch::nn::Conv1d(in_dim, hidden, 1))),
      last_conv(register_module("last_conv", torch::nn::Conv1d(hidden, hidden, 1))),
      pool_after(std::move(pools)) {
  for (int64_t i = 0; i < n_layers; ++i) {
    layers.push_back(register_module("l_" + std::to_string(i), WaveNetLayer(hidden, int64_t{1} << i, dropout)));
  }
}

torch::Tensor WaveNetBlockImpl::forward(torch::Tensor x) { return forward_with_level(std::move(x), -1, nullptr); }

torch::Tensor WaveNetBlockImpl::forward_with_level(torch::Tensor x, int64_t level_after, torch::Tensor* level) {
  x = torch::relu(first_conv(x));
  for (size_t i = 0; i < layers.size(); ++i) {
    x = layers[i]->forward(x);
    if (std::find(pool_after.begin(), pool_after.end(), static_cast<int64_t>(i)) != pool_after.end()) {
      x = torch::max_pool1d(x, 2);
    }
    if (level && static_cast<int64_t>(i) == level_after) *level = x;
  }
  return last_conv(torch::relu(x));
}

namespace {

/// randn / sqrt(rows), the released code's initialisation of the attention's W1 and V.
torch::Tensor scaled_randn(std::vector<int64_t> sizes) {
  return torch::randn(sizes) / std::sqrt(static_cast<double>(sizes[0]));
}

}  // namespace

MuConNetImpl::MuConNetImpl(const MuConOptions& o) : options_(o) {
  if (o.classes < 1 || o.in_dim < 1 || o.hidden < 1 || o.layers < 1) {
    throw Error("MuCon needs at least one class, input dimension, hidden unit and layer");
  }
  if (o.hidden % o.groups != 0) {
    throw Error("MuCon's hidden size " + std::to_string(o.hidden) + " is not a multiple of its " +
                std::to_string(o.groups) + " group-norm groups");
  }
  for (int64_t p : o.pool_after) {
    if (p < 0 || p >= o.layers) {
      throw Error("MuCon pools after layer " + std::to_string(p) + ", but its layers are 0.." +
                  std::to_string(o.layers - 1));
    }
  }
  const int64_t h = o.hidden, n = o.classes;
  ft = register_module("ft", WaveNetBlock(o.in_dim, h, o.layers, o.pool_after, o.dropout));
  ft_last_gn = register_module("ft_last_gn", torch::nn::GroupNorm(o.groups, h));
  ft_last_dropout = register_module("ft_last_dropout", torch::nn::Dropout(o.dropout));
  fs_encoder_lstm = register_module(
      "fs_encoder_lstm", torch::nn::LSTM(torch::nn::LSTMOptions(h, h).batch_first(true).bidirectional(true)));
  fs_encoder_hidden_out = register_module("fs_encoder_hidden_out", torch::nn::Linear(2 * h, h));
  fs_encoder_cn_out = register_module("fs_encoder_cn_out", torch::nn::Linear(2 * h, h));
  fs_decoder_attention_W1 = register_parameter("fs_decoder_attention_W1", scaled_randn({2 * h, h}));
  fs_decoder_attention_l2 = register_module("fs_decoder_attention_l2", torch::nn::Linear(h, h));
  fs_decoder_attention_V = register_parameter("fs_decoder_attention_V", scaled_randn({h}));
  fs_decoder_embedding = register_module("fs_decoder_embedding", torch::nn::Embedding(n + 2, h));
  fs_decoder_embedding_drop = register_module("fs_decoder_embedding_drop", torch::nn::Dropout(o.dropout));
  fs_decoder_attn_combine = register_module("fs_decoder_attn_combine", torch::nn::Linear(2 * h + h, h));
  fs_decoder_lstm = register_module("fs_decoder_lstm", torch::nn::LSTM(torch::nn::LSTMOptions(h, h)));
  fs_decoder_transcript = register_module(
      "fs_decoder_transcript",
      torch::nn::Sequential(torch::nn::Linear(h, h), torch::nn::ReLU(), torch::nn::Linear(h, n + 1)));
  fs_decoder_length = register_module(
      "fs_decoder_length",
      torch::nn::Sequential(torch::nn::Linear(h + n + 1, h / 2), torch::nn::ReLU(), torch::nn::Linear(h / 2, 1)));
  conv_classifier = register_module("conv_classifier", torch::nn::Conv1d(h, n, 1));
}

torch::Tensor MuConNetImpl::encode(const torch::Tensor& features) {
  const int64_t frames = features.size(2);
  const int64_t shrink = int64_t{1} << options_.pool_after.size();
  if (frames < shrink) {
    throw Error("a video of " + std::to_string(frames) + " frames is too short for MuCon's " +
                std::to_string(options_.pool_after.size()) + " temporal poolings (at least " + std::to_string(shrink) +
                " frames)");
  }
  torch::Tensor z = ft->forward(features);
  z = ft_last_dropout(torch::relu(ft_last_gn(z)));
  return z.permute({0, 2, 1});  // 1 x T' x hidden
}

torch::Tensor MuConNetImpl::classify(const torch::Tensor& z, int64_t frames) {
  const torch::Tensor up = F::interpolate(
      z.permute({0, 2, 1}), F::InterpolateFuncOptions().size(std::vector<int64_t>{frames}).mode(torch::kNearest));
  return conv_classifier(up).squeeze(0).t();  // T x N
}

MuConSegments MuConNetImpl::decode_teacher(const torch::Tensor& z, const std::vector<int64_t>& transcript) {
  return decode(z, &transcript, static_cast<int64_t>(transcript.size()) + 1);
}

MuConSegments MuConNetImpl::decode_greedy(const torch::Tensor& z, int64_t max_steps) {
  return decode(z, nullptr, max_steps);
}

MuConSegments MuConNetImpl::decode(const torch::Tensor& z, const std::vector<int64_t>* teacher, int64_t max_steps) {
  const int64_t h = options_.hidden, end = options_.classes, start = options_.classes + 1;
  auto encoded = fs_encoder_lstm->forward(z);
  const torch::Tensor out = std::get<0>(encoded)[0];  // T' x 2h
  const auto& state = std::get<1>(encoded);
  torch::Tensor hidden = fs_encoder_hidden_out(std::get<0>(state).reshape({1, -1})).unsqueeze(0);  // 1 x 1 x h
  torch::Tensor cell = fs_encoder_cn_out(std::get<1>(state).reshape({1, -1})).unsqueeze(0);
  const torch::Tensor keys = out.matmul(fs_decoder_attention_W1);  // T' x h
  const auto device_long = torch::TensorOptions().dtype(torch::kInt64).device(z.device());
  std::vector<torch::Tensor> log_probs, lengths;
  MuConSegments result;
  int64_t symbol = start;
  for (int64_t step = 0; step < max_steps; ++step) {
    const torch::Tensor input = torch::full({1}, symbol, device_long);
    const torch::Tensor embedded = fs_decoder_embedding_drop(torch::relu(fs_decoder_embedding(input)));  // 1 x h
    // MLP attention over the encoder's steps.
    const torch::Tensor u = torch::tanh(keys + fs_decoder_attention_l2(hidden.reshape({1, h})));
    const torch::Tensor weights = torch::softmax(u.matmul(fs_decoder_attention_V), 0);        // T'
    const torch::Tensor applied = (weights.unsqueeze(1) * out).sum(0, /*keepdim=*/true);     // 1 x 2h
    const torch::Tensor combined =
        torch::relu(fs_decoder_attn_combine(torch::cat({embedded, applied}, 1))).unsqueeze(0);  // 1 x 1 x h
    auto decoded = fs_decoder_lstm->forward(combined, std::make_tuple(hidden, cell));
    hidden = std::get<0>(std::get<1>(decoded));
    cell = std::get<1>(std::get<1>(decoded));
    const torch::Tensor scores = fs_decoder_transcript->forward(std::get<0>(decoded));  // 1 x 1 x (N + 1)
    const torch::Tensor length =
        fs_decoder_length->forward(torch::relu(torch::cat({combined, scores}, 2))).reshape({});
    log_probs.push_back(torch::log_softmax(scores.reshape({1, -1}), 1));
    lengths.push_back(length);
    if (teacher) {
      symbol = step < static_cast<int64_t>(teacher->size()) ? (*teacher)[static_cast<size_t>(step)] : end;
    } else {
      symbol = log_probs.back().argmax(1).item<int64_t>();
      if (symbol == end) break;
      result.transcript.push_back(symbol);
    }
  }
  result.log_probs = torch::cat(log_probs, 0);
  // The end symbol's step has no segment: its length is dropped (teacher forcing: M of M + 1;
  // greedy: one per symbol before the end symbol, all of them when it never came).
  const size_t segments = teacher ? teacher->size() : result.transcript.size();
  lengths.resize(segments);
  result.log_lengths = segments > 0 ? torch::stack(lengths) : torch::zeros({0}, z.options());
  return result;
}

MuConOptions mucon_options(const ModelOptions& model, int64_t in_dim, int64_t classes) {
  MuConOptions o;
  o.in_dim = in_dim;
  o.classes = classes;
  o.hidden = model.mucon_hidden;
  o.layers = model.mucon_layers;
  o.pool_after = model.mucon_pool_after;
  return o;
}

std::vector<MuConPartSize> mucon_sizes(const MuConOptions& o) {
  const MuConNet net(o);
  MuConPartSize ft{"f_t (backbone, group norm)", 0}, fc{"f_c (frame classifier)", 0}, fs{"f_s (segment generator)", 0};
  for (const auto& p : net->named_parameters()) {
    const std::string& k = p.key();
    MuConPartSize& part = k.rfind("ft", 0) == 0 ? ft : k.rfind("conv_classifier", 0) == 0 ? fc : fs;
    part.params += p.value().numel();
  }
  return {ft, fc, fs};
}

}  // namespace holo::models
