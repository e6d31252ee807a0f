#include "models/token_reduction.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "models/flops.h"

namespace holo::models {
namespace {

/// The first `width` columns of the rows of `key` sorted ascending: where `selected` is true
/// the key is the column's own order value, else it is pushed past every selected one.
torch::Tensor selected_in_order(const torch::Tensor& selected, const torch::Tensor& order, int64_t width) {
  const int64_t n = selected.size(1);
  const torch::Tensor key = torch::where(selected, order, order + n);
  return std::get<1>(key.sort(/*stable=*/true, /*dim=*/1, /*descending=*/false)).slice(1, 0, width);
}

/// Index of the entry of each row of `cdf` (B x N) nearest to each point of `points`
/// (B x K): B x K, the first such entry on ties.
torch::Tensor nearest(const torch::Tensor& cdf, const torch::Tensor& points) {
  return (cdf.unsqueeze(1) - points.unsqueeze(2)).abs().argmin(2);
}

AtsSample lay_out(const torch::Tensor& selected, const torch::Tensor& order, const torch::Tensor& token_of) {
  AtsSample s;
  s.kept = selected.sum(1).to(torch::kLong);
  const int64_t width = std::max<int64_t>(1, s.kept.max().item<int64_t>());
  const torch::Tensor slots = selected_in_order(selected, order, width);  // positions in `order`'s space
  s.valid = torch::arange(width, selected.options().dtype(torch::kLong)).unsqueeze(0) < s.kept.unsqueeze(1);
  s.index = torch::where(s.valid, token_of.gather(1, slots), torch::zeros_like(slots));
  return s;
}

}  // namespace

AtsVariant parse_ats_variant(const std::string& s) {
  if (s == "thesis") return AtsVariant::kThesis;
  if (s == "release") return AtsVariant::kRelease;
  throw RecipeError("[model]", 0, 0, "model.ats_variant", "must be thesis or release, got \"" + s + "\"");
}

torch::Tensor ats_scores(const torch::Tensor& cls_attention, const torch::Tensor& v, AtsVariant variant) {
  const int64_t heads = cls_attention.size(1);
  if (variant == AtsVariant::kThesis) {
    // (7.3) per head, then summed over the heads (divided by their number: rows sum to 1).
    const torch::Tensor s = cls_attention.slice(2, 1) * v.slice(2, 1).norm(2, -1);
    return (s / s.sum(-1, true).clamp_min(1e-30)).sum(1) / static_cast<double>(heads);
  }
  // The release: the CLS row summed over the heads times ||V_j|| of all heads together.
  const int64_t b = v.size(0), n = v.size(2);
  const torch::Tensor norm = v.permute({0, 2, 1, 3}).reshape({b, n, -1}).norm(2, -1).slice(1, 1);
  const torch::Tensor s = cls_attention.sum(1).slice(1, 1) * norm;
  return s / s.sum(-1, true).clamp_min(1e-30);
}

AtsSample ats_sample(const torch::Tensor& scores, int64_t k, AtsVariant variant) {
  if (k < 1) throw std::invalid_argument("ats_sample: k must be at least 1, got " + std::to_string(k));
  return ats_sample(scores, torch::full({scores.size(0)}, k, scores.options().dtype(torch::kLong)), variant);
}

AtsSample ats_sample(const torch::Tensor& scores, const torch::Tensor& k, AtsVariant variant) {
  torch::NoGradGuard no_grad;
  const torch::Tensor s = scores.detach().to(torch::kFloat64);
  const int64_t b = s.size(0), n = s.size(1);
  const auto opts = s.options();
  const torch::Tensor kk = k.to(s.device(), torch::kLong).view({b, 1});
  if ((kk < 1).any().item<bool>()) throw std::invalid_argument("ats_sample: every k must be at least 1");
  const int64_t width = kk.max().item<int64_t>();
  // Point i of a row exists for i < k of the row; the others repeat its first point, which
  // changes nothing once duplicates are dropped.
  const torch::Tensor i = torch::arange(width, opts).unsqueeze(0);
  const torch::Tensor real = i < kk;
  const torch::Tensor kd = kk.to(torch::kFloat64);
  const torch::Tensor order = torch::arange(n, opts.dtype(torch::kLong)).unsqueeze(0).expand({b, n}).contiguous();
  if (variant == AtsVariant::kThesis) {
    // (7.4) in token order; points (2i - 1) / 2K, i = 1..K.
    const torch::Tensor cdf = s.cumsum(1);
    const torch::Tensor points = torch::where(real, (2 * i + 1) / (2 * kd), 1 / (2 * kd));
    torch::Tensor selected = torch::zeros({b, n}, opts.dtype(torch::kBool));
    selected.scatter_(1, nearest(cdf, points), true);
    return lay_out(selected, order, order);
  }
  // The release: ascending scores, min-max normalised CDF, K points from its smallest non-zero
  // value to 1, tokens kept in score order.
  auto [sorted, perm] = s.sort(/*stable=*/true, /*dim=*/1, /*descending=*/false);
  const torch::Tensor cdf = sorted.cumsum(1);
  const torch::Tensor lo = cdf.select(1, 0).unsqueeze(1), hi = cdf.select(1, n - 1).unsqueeze(1);
  const torch::Tensor ncdf = (cdf - lo) / (hi - lo).clamp_min(1e-30);
  const torch::Tensor start = (ncdf + (ncdf == 0).to(torch::kFloat64) * 1e8).amin(1, true).clamp_max(1.0);
  const torch::Tensor step = (1 - start) / (kd - 1).clamp_min(1);
  const torch::Tensor points = torch::where(real, start + i * step, start);
  torch::Tensor selected = torch::zeros({b, n}, opts.dtype(torch::kBool));
  selected.scatter_(1, nearest(ncdf, points), true);  // in sorted positions
  return lay_out(selected, order, perm);
}

int64_t ats_budget(int64_t tokens, double rho, int64_t n) {
  if (rho > 0) return std::max<int64_t>(std::llround(rho * static_cast<double>(n)), 8);
  return std::max<int64_t>(tokens > 0 ? tokens : n, 1);
}

TomeMatch tome_match(const torch::Tensor& metric, int64_t r, const torch::Tensor& sizes, bool protect_first) {
  TomeMatch m;
  const int64_t n = metric.size(1);
  m.r = std::min<int64_t>(r, (n - (protect_first ? 1 : 0)) / 2);
  if (m.r <= 0) {
    m.r = 0;
    return m;
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor unit = metric / metric.norm(2, -1, true).clamp_min(1e-30);
  const torch::Tensor a = unit.slice(1, 0, n, 2), b = unit.slice(1, 1, n, 2);
  torch::Tensor scores = a.matmul(b.transpose(-1, -2));
  flops_add(static_cast<double>(scores.numel()) * metric.size(2));
  const double inf = std::numeric_limits<double>::infinity();
  if (protect_first) scores.select(1, 0).fill_(-inf);
  if (sizes.defined()) {
    scores.masked_fill_((sizes.slice(1, 0, n, 2) <= 0).unsqueeze(2), -inf);
    scores.masked_fill_((sizes.slice(1, 1, n, 2) <= 0).unsqueeze(1), -inf);
  }
  auto [best, best_index] = scores.max(-1);
  const torch::Tensor edges = std::get<1>(best.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true)).unsqueeze(-1);
  m.unmerged = std::get<0>(edges.slice(1, m.r).sort(1));
  m.source = edges.slice(1, 0, m.r);
  m.target = best_index.unsqueeze(-1).gather(1, m.source);
  return m;
}

torch::Tensor tome_merge_sum(const TomeMatch& m, const torch::Tensor& x) {
  if (m.r == 0) return x;
  const int64_t n = x.size(1), c = x.size(2), batch = x.size(0);
  const torch::Tensor src = x.slice(1, 0, n, 2), dst = x.slice(1, 1, n, 2);
  const torch::Tensor kept = src.gather(1, m.unmerged.expand({batch, m.unmerged.size(1), c}));
  const torch::Tensor moved = src.gather(1, m.source.expand({batch, m.r, c}));
  return torch::cat({kept, dst.scatter_add(1, m.target.expand({batch, m.r, c}), moved)}, 1);
}

std::pair<torch::Tensor, torch::Tensor> tome_merge_weighted(const TomeMatch& m, const torch::Tensor& x,
                                                            const torch::Tensor& sizes) {
  const torch::Tensor s = sizes.defined() ? sizes : torch::ones({x.size(0), x.size(1)}, x.options());
  if (m.r == 0) return {x, s};
  const torch::Tensor total = tome_merge_sum(m, s.unsqueeze(-1));
  const torch::Tensor merged = tome_merge_sum(m, x * s.unsqueeze(-1)) / total.clamp_min(1e-6);
  return {merged, total.squeeze(-1)};
}

}  // namespace holo::models
