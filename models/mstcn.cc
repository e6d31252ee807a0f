#include "models/mstcn.h"

#include <torch/torch.h>

namespace holo::models {

DilatedResidualLayerImpl::DilatedResidualLayerImpl(int64_t dilation, int64_t channels)
    : conv_dilated(register_module(
          "conv_dilated",
          torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, channels, 3).padding(dilation).dilation(dilation)))),
      conv_1x1(register_module("conv_1x1", torch::nn::Conv1d(channels, channels, 1))),
      dropout(register_module("dropout", torch::nn::Dropout(0.5))) {}

torch::Tensor DilatedResidualLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  torch::Tensor out = dropout(conv_1x1(torch::relu(conv_dilated(x))));
  return (x + out) * mask.unsqueeze(1);
}

SingleStageTcnImpl::SingleStageTcnImpl(int64_t n_layers, int64_t channels, int64_t in_dim, int64_t classes)
    : conv_1x1(register_module("conv_1x1", torch::nn::Conv1d(in_dim, channels, 1))),
      conv_out(register_module("conv_out", torch::nn::Conv1d(channels, classes, 1))) {
  for (int64_t i = 0; i < n_layers; ++i) layers->push_back(DilatedResidualLayer(int64_t{1} << i, channels));
  register_module("layers", layers);
}

torch::Tensor SingleStageTcnImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  torch::Tensor out = conv_1x1(x);
  for (auto& layer : *layers) out = layer->as<DilatedResidualLayer>()->forward(out, mask);
  return conv_out(out) * mask.unsqueeze(1);
}

MultiStageTcnImpl::MultiStageTcnImpl(const MultiStageTcnOptions& o) : options_(o) {
  TORCH_CHECK(o.stages >= 1 && o.layers >= 1 && o.channels >= 1 && o.in_dim >= 1 && o.classes >= 1,
              "MS-TCN needs at least one stage, layer, channel, input dimension and class");
  stage1_ = register_module("stage1", SingleStageTcn(o.layers, o.channels, o.in_dim, o.classes));
  for (int64_t s = 1; s < o.stages; ++s) stages_->push_back(SingleStageTcn(o.layers, o.channels, o.classes, o.classes));
  register_module("stages", stages_);
}

torch::Tensor MultiStageTcnImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  torch::Tensor out = stage1_->forward(x, mask);
  std::vector<torch::Tensor> outputs = {out};
  for (auto& stage : *stages_) {
    out = stage->as<SingleStageTcn>()->forward(torch::softmax(out, 1) * mask.unsqueeze(1), mask);
    outputs.push_back(out);
  }
  return torch::stack(outputs);
}

std::vector<TcnStageCost> mstcn_costs(const MultiStageTcnOptions& o) {
  const MultiStageTcn net(o);
  std::vector<TcnStageCost> out;
  const auto add = [&](const std::string& name, const torch::nn::Module& stage, int64_t in) {
    TcnStageCost c{name, in, 0, 0.0};
    for (const auto& p : stage.parameters()) c.params += p.numel();
    // Per frame: the 1x1 in, every layer's 3-tap and 1x1 convolutions, the 1x1 out.
    const double macs =
        static_cast<double>(in * o.channels + o.layers * 4 * o.channels * o.channels + o.channels * o.classes);
    c.gflops_per_1000_frames = macs * 1000 / 1e9;
    out.push_back(c);
  };
  for (const auto& child : net->named_children()) {
    if (child.key() == "stage1") {
      add("stage1", *child.value(), o.in_dim);
    } else {
      for (const auto& s : child.value()->named_children()) add("stages." + s.key(), *s.value(), o.classes);
    }
  }
  return out;
}

}  // namespace holo::models
