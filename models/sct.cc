#include "models/sct.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"

namespace holo::models {

namespace F = torch::nn::functional;

SctEncoderImpl::SctEncoderImpl(const SctOptions& o)
    : WaveNet(register_module("WaveNet", models::WaveNetBlock(o.in_dim, o.hidden, o.layers, o.pool_after, o.dropout))),
      group_norm(register_module("group_norm", torch::nn::GroupNorm(o.groups, o.hidden))) {}

SctNetImpl::SctNetImpl(const SctOptions& o) : options_(o) {
  if (o.classes < 2 || o.in_dim < 1 || o.hidden < 2 || o.layers < 1) {
    throw Error("SCT needs at least two classes, one input dimension, two hidden units and one layer");
  }
  if (o.hidden % o.groups != 0) {
    throw Error("SCT's hidden size " + std::to_string(o.hidden) + " is not a multiple of its " +
                std::to_string(o.groups) + " group-norm groups");
  }
  for (int64_t p : o.pool_after) {
    if (p < 0 || p >= o.layers) throw Error("SCT pools after layer " + std::to_string(p) + ", outside 0.." + std::to_string(o.layers - 1));
  }
  if (o.z_after < 0 || o.z_after >= o.layers) throw Error("SCT's Z comes after layer " + std::to_string(o.z_after) + ", outside the layers");
  drop_on_frames = register_module("drop_on_frames", torch::nn::Dropout(o.input_dropout));
  fer = register_module("fer", SctEncoder(o));
  fs_classifier = torch::nn::Conv1d(o.hidden, o.classes, 1);
  fc_classifier = torch::nn::Conv1d(o.hidden, o.classes, 1);
  fl_conv1 = torch::nn::Conv1d(o.hidden, o.hidden / 2, 1);
  fl_conv2 = torch::nn::Conv1d(o.hidden / 2, 1, 1);
  // The release's heads are modules fs, fc and fl holding these convolutions.
  auto fs = std::make_shared<torch::nn::Module>();
  fs->register_module("classifier", fs_classifier);
  auto fc = std::make_shared<torch::nn::Module>();
  fc->register_module("classifier", fc_classifier);
  auto fl = std::make_shared<torch::nn::Module>();
  fl->register_module("conv1", fl_conv1);
  fl->register_module("conv2", fl_conv2);
  register_module("fs", fs);
  register_module("fc", fc);
  register_module("fl", fl);
}

int64_t SctNetImpl::min_frames() const { return int64_t{2} << options_.pool_after.size(); }

SctOutput SctNetImpl::forward(const torch::Tensor& features) {
  const int64_t frames = features.size(2);
  if (frames < min_frames()) {
    throw Error("a video of " + std::to_string(frames) + " frames is too short for SCT's " +
                std::to_string(options_.pool_after.size()) + " temporal poolings (at least " +
                std::to_string(min_frames()) + " frames, 2 regions)");
  }
  torch::Tensor z;
  const torch::Tensor last = fer->WaveNet->forward_with_level(drop_on_frames(features), options_.z_after, &z);
  const torch::Tensor regions = fer->group_norm(last);  // 1 x hidden x K
  SctOutput out;
  out.s = F::interpolate(fs_classifier(z), F::InterpolateFuncOptions()
                                               .size(std::vector<int64_t>{frames})
                                               .mode(torch::kNearest))[0];
  out.a = torch::softmax(fc_classifier(regions)[0] / options_.temperature, 0);
  out.l = fl_conv2(fl_conv1(regions)).reshape({-1});
  out.y = region_upsample(out.a, out.l, frames);
  return out;
}

SctOptions sct_options(const ModelOptions& model, int64_t in_dim, int64_t classes) {
  SctOptions o;
  o.in_dim = in_dim;
  o.classes = classes;
  o.hidden = model.sct_hidden;
  o.layers = model.sct_layers;
  o.pool_after = model.sct_pool_after;
  o.z_after = model.sct_z_after;
  return o;
}

torch::Tensor region_upsample(const torch::Tensor& a, const torch::Tensor& l, int64_t frames) {
  constexpr double kTemplate = 100;  // J
  const torch::Tensor lengths = static_cast<double>(frames) * torch::softmax(l, 0);
  const auto host = lengths.detach().to(torch::kFloat64).cpu().contiguous();
  std::vector<torch::Tensor> crops;
  for (int64_t k = 0; k < a.size(1); ++k) {
    const auto columns = static_cast<int64_t>(std::nearbyint(host.data_ptr<double>()[k]));  // ties to even
    if (columns <= 0) continue;
    const torch::Tensor w = torch::arange(columns, l.options());
    const torch::Tensor x = (2 * w + 1) / lengths[k] - 1;  // sampling points, [-1, 1] inside the region
    const torch::Tensor p = ((x + 1) * kTemplate - 1) / 2;  // in template pixels
    const torch::Tensor g = torch::clamp(torch::minimum(1 + p, kTemplate - p), 0, 1);
    crops.push_back(a.select(1, k).unsqueeze(1) * g.unsqueeze(0));
  }
  if (crops.empty()) throw Error("SCT's region lengths are not finite numbers (the training diverged)");
  const torch::Tensor y = torch::cat(crops, 1).unsqueeze(0);  // 1 x C x ~frames
  return F::interpolate(y, F::InterpolateFuncOptions().size(std::vector<int64_t>{frames}).mode(torch::kNearest))[0];
}

}  // namespace holo::models
