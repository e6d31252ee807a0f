#include "train/gather.h"

#include <torch/torch.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "dist/communicator.h"

namespace holo::train {

Stats all_reduce_stats(const Stats& stats, dist::Communicator& comm, const torch::Device& device) {
  std::vector<double> values;
  for (const auto& [k, v] : stats) values.push_back(v);
  if (values.empty()) return stats;
  torch::Tensor t = torch::tensor(values, torch::kFloat64).to(device);
  comm.all_reduce(t, dist::ReduceOp::kSum);
  t = t.cpu();
  Stats out;
  size_t i = 0;
  for (const auto& [k, v] : stats) out[k] = t[static_cast<int64_t>(i++)].item<double>();
  return out;
}

CostStats::CostStats(const std::vector<std::string>& names) {
  for (const auto& n : names) stats_[n];
}

void CostStats::add(const SampleCosts& costs) {
  for (const auto& [name, values] : costs) {
    auto& s = stats_[name];
    const auto v = values.to(torch::kFloat64);
    s.sum += v.sum().item<double>();
    s.count += static_cast<double>(v.numel());
    s.min = std::min(s.min, v.min().item<double>());
    s.max = std::max(s.max, v.max().item<double>());
  }
}

void CostStats::reduce(dist::Communicator& comm, const torch::Device& device) {
  if (stats_.empty()) return;
  std::vector<double> sums, maxes;
  for (const auto& [name, s] : stats_) {
    sums.insert(sums.end(), {s.sum, s.count});
    maxes.insert(maxes.end(), {s.max, -s.min});
  }
  torch::Tensor a = torch::tensor(sums, torch::kFloat64).to(device);
  torch::Tensor b = torch::tensor(maxes, torch::kFloat64).to(device);
  comm.all_reduce(a, dist::ReduceOp::kSum);
  comm.all_reduce(b, dist::ReduceOp::kMax);
  a = a.cpu();
  b = b.cpu();
  int64_t i = 0;
  for (auto& [name, s] : stats_) {
    s.sum = a[2 * i].item<double>();
    s.count = a[2 * i + 1].item<double>();
    s.max = b[2 * i].item<double>();
    s.min = -b[2 * i + 1].item<double>();
    ++i;
  }
}

void CostStats::write(nlohmann::json& line) const {
  for (const auto& [name, s] : stats_) {
    if (s.count <= 0) continue;
    line[name + "_mean"] = s.sum / s.count;
    line[name + "_min"] = s.min;
    line[name + "_max"] = s.max;
  }
}

nlohmann::json CostStats::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, s] : stats_) {
    if (s.count > 0) j[name] = {{"mean", s.sum / s.count}, {"min", s.min}, {"max", s.max}, {"clips", s.count}};
  }
  return j;
}

RecordMeans gather_record_means(const RecordSums& sums, int64_t width, dist::Communicator& comm,
                                const torch::Device& device) {
  // Rows: [record, count, sums...], padded to the largest rank's row count with record -1. A
  // rank without rows contributes none; the width is agreed with the others.
  if (!sums.empty()) width = sums.begin()->second.first.size(0);
  torch::Tensor dims =
      torch::tensor({static_cast<double>(sums.size()), static_cast<double>(width)}, torch::kFloat64).to(device);
  comm.all_reduce(dims, dist::ReduceOp::kMax);
  const auto rows = static_cast<int64_t>(dims[0].item<double>());
  width = static_cast<int64_t>(dims[1].item<double>());
  torch::Tensor local = torch::full({rows, 2 + width}, -1.0, torch::kFloat64);
  int64_t i = 0;
  for (const auto& [record, part] : sums) {
    local[i][0] = static_cast<double>(record);
    local[i][1] = static_cast<double>(part.second);
    local[i].slice(0, 2).copy_(part.first.to(torch::kFloat64));
    ++i;
  }
  torch::Tensor all = torch::cat(comm.all_gather(local.to(device))).cpu();
  all = all.index_select(0, torch::nonzero(all.select(1, 0) >= 0).squeeze(1));
  // Merge the rows of one record, in record order.
  const auto [unique, inverse] = torch::_unique(all.select(1, 0), /*sorted=*/true, /*return_inverse=*/true);
  torch::Tensor merged = torch::zeros({unique.size(0), all.size(1) - 1}, torch::kFloat64);
  merged.index_add_(0, inverse, all.slice(1, 1));
  RecordMeans out;
  for (int64_t r = 0; r < unique.size(0); ++r) out.records.push_back(static_cast<int64_t>(unique[r].item<double>()));
  out.means = (merged.slice(1, 1) / merged.select(1, 0).unsqueeze(1)).to(torch::kFloat32);
  return out;
}

}  // namespace holo::train
