#include "models/flops.h"

#include <torch/torch.h>

#include "core/error.h"

namespace holo::models {
namespace {
thread_local FlopRecorder* t_recorder = nullptr;
}

FlopRecorder::FlopRecorder() : outer_(t_recorder) { t_recorder = this; }

FlopRecorder::~FlopRecorder() { t_recorder = outer_; }

double FlopRecorder::total_macs() const {
  double s = pending_;
  for (const auto& st : stages_) s += st.macs;
  return s;
}

void FlopRecorder::finish(const std::string& name) {
  if (pending_ == 0) return;
  stages_.push_back({name, {}, pending_});
  pending_ = 0;
}

bool flops_active() { return t_recorder != nullptr; }

void flops_add(double macs) {
  if (t_recorder != nullptr) t_recorder->pending_ += macs;
}

void flops_stage(const std::string& name, const std::vector<int64_t>& shape) {
  if (t_recorder == nullptr) return;
  t_recorder->stages_.push_back({name, shape, t_recorder->pending_});
  t_recorder->pending_ = 0;
}

namespace {
template <class ConvHolder>
torch::Tensor counted_conv(ConvHolder& conv, const torch::Tensor& x) {
  auto y = conv->forward(x);
  if (t_recorder != nullptr) {
    const auto& w = conv->weight;  // out x in/groups x k...
    const double per_output = static_cast<double>(w.numel() / w.size(0));
    flops_add(static_cast<double>(y.numel()) * per_output);
  }
  return y;
}
}  // namespace

torch::Tensor counted(torch::nn::Conv3d& conv, const torch::Tensor& x) { return counted_conv(conv, x); }
torch::Tensor counted(torch::nn::Conv2d& conv, const torch::Tensor& x) { return counted_conv(conv, x); }

torch::Tensor counted(torch::nn::Linear& linear, const torch::Tensor& x) {
  auto y = linear->forward(x);
  if (t_recorder != nullptr) flops_add(static_cast<double>(y.numel()) * linear->weight.size(1));
  return y;
}

}  // namespace holo::models
