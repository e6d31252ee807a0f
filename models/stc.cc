#include "models/stc.h"

#include <torch/torch.h>

#include "core/error.h"
#include "models/flops.h"

namespace holo::models {

StcScbHidden parse_stc_scb_hidden(const std::string& s) {
  if (s == "table") return StcScbHidden::kTable;
  if (s == "text") return StcScbHidden::kText;
  throw RecipeError("[model]", 0, 0, "model.stc_scb_hidden", "must be table or text, got '" + s + "'");
}

StcBlockImpl::StcBlockImpl(const StcOptions& o) : options_(o) {
  TORCH_CHECK(o.tcb() || o.scb(), "STC needs at least one branch");
  TORCH_CHECK(o.channels() > 0 && o.frames() > 0 && o.reduction() > 0, "STC: bad sizes");
  const int64_t c = o.channels();
  if (o.tcb()) {
    const int64_t h = std::max<int64_t>(1, c / o.reduction());
    tcb_fc1_ = register_module("tcb_fc1", torch::nn::Linear(c, h));
    tcb_fc2_ = register_module("tcb_fc2", torch::nn::Linear(h, c));
  }
  if (o.scb()) {
    const int64_t tc = o.frames() * c;
    const int64_t h = std::max<int64_t>(1, (o.scb_hidden() == StcScbHidden::kText ? tc : c) / o.reduction());
    scb_fc1_ = register_module("scb_fc1", torch::nn::Linear(tc, h));
    scb_fc2_ = register_module("scb_fc2", torch::nn::Linear(h, c));
  }
}

torch::Tensor StcBlockImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 5 && x.size(1) == options_.channels(), "STC: expected N x ",
              options_.channels(), " x T x H x W, got ", x.sizes());
  const int64_t n = x.size(0), c = x.size(1);
  torch::Tensor tcb, scb;
  if (tcb_fc1_) {
    auto z = x.mean({2, 3, 4});  // N x C
    auto s = torch::sigmoid(counted(tcb_fc2_, torch::relu(counted(tcb_fc1_, z))));
    tcb = x * s.view({n, c, 1, 1, 1});
  }
  if (scb_fc1_) {
    auto z = x.mean({3, 4});  // N x C x T'
    if (z.size(2) != options_.frames()) {
      namespace F = torch::nn::functional;
      z = F::interpolate(z, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{options_.frames()})
                                .mode(torch::kLinear)
                                .align_corners(false));
    }
    z = z.transpose(1, 2).reshape({n, options_.frames() * c});  // T-major: t * C + c
    auto s = torch::sigmoid(counted(scb_fc2_, torch::relu(counted(scb_fc1_, z))));
    scb = x * s.view({n, c, 1, 1, 1});
  }
  if (tcb.defined() && scb.defined()) return 0.5 * (tcb + scb);
  return tcb.defined() ? tcb : scb;
}

}  // namespace holo::models
