#include "train/metrics_torch.h"

#include <torch/torch.h>

#include "core/error.h"

namespace holo {
namespace {

torch::Tensor cpu_float(const torch::Tensor& t) {
  return t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
}

torch::Tensor index_tensor(const TagGroup& group, const torch::Device& device) {
  return torch::tensor(group.tags, torch::dtype(torch::kInt64)).to(device);
}

}  // namespace

void add_batch(ClassificationMeter& meter, const torch::Tensor& logits,
               const torch::Tensor& labels) {
  HOLO_CHECK(logits.dim() == 2 && logits.size(1) == meter.num_classes(),
             "classification metrics: logits must be N x " + std::to_string(meter.num_classes()));
  HOLO_CHECK(labels.dim() == 1 && labels.size(0) == logits.size(0),
             "classification metrics: labels must be a vector of N = " +
                 std::to_string(logits.size(0)) + " class indices");
  const torch::Tensor s = cpu_float(logits);
  const torch::Tensor y = labels.detach().to(torch::kCPU, torch::kInt64).contiguous();
  meter.add(s.data_ptr<float>(), y.data_ptr<int64_t>(), s.size(0));
}

void add_batch(MultiLabelMeter& meter, const torch::Tensor& scores, const torch::Tensor& targets) {
  HOLO_CHECK(scores.dim() == 2 && scores.size(1) == meter.num_tags() &&
                 targets.sizes() == scores.sizes(),
             "multi-label metrics: scores and targets must both be N x " +
                 std::to_string(meter.num_tags()));
  const torch::Tensor s = cpu_float(scores);
  const torch::Tensor y = cpu_float(targets);
  meter.add(s.data_ptr<float>(), y.data_ptr<float>(), s.size(0));
}

torch::Tensor sums_view(ClassificationMeter& meter) {
  auto& sums = meter.mutable_sums();
  return torch::from_blob(sums.data(), {static_cast<int64_t>(sums.size())}, torch::kInt64);
}

torch::Tensor group_targets(const torch::Tensor& targets, const TagGroup& group) {
  check_tag_groups({group}, targets.size(1));
  return targets.index_select(1, index_tensor(group, targets.device()));
}

std::vector<torch::Tensor> category_masks(const torch::Tensor& targets,
                                          const std::vector<TagGroup>& groups) {
  HOLO_CHECK(targets.dim() == 2, "category masks: targets must be N x num_tags");
  std::vector<torch::Tensor> masks;
  for (const auto& g : groups) {
    masks.push_back((group_targets(targets, g) > 0.5).any(1).to(torch::kFloat32));
  }
  return masks;
}

torch::Tensor masked_bce_with_logits(const torch::Tensor& logits, const torch::Tensor& targets,
                                     const torch::Tensor& mask) {
  HOLO_CHECK(logits.dim() == 2 && targets.sizes() == logits.sizes() && mask.dim() == 1 &&
                 mask.size(0) == logits.size(0),
             "masked BCE: logits and targets must be N x K and the mask N");
  const torch::Tensor y = targets.to(logits.scalar_type());
  const torch::Tensor m = mask.to(logits.scalar_type()).unsqueeze(1);
  const torch::Tensor bce = torch::binary_cross_entropy_with_logits(
      logits, y, /*weight=*/{}, /*pos_weight=*/{}, at::Reduction::None);
  // clamp_min keeps an all-masked batch at 0 / 1 = 0 with zero gradients, not 0 / 0.
  const torch::Tensor denominator = (m.sum() * logits.size(1)).clamp_min(1.0);
  return (bce * m).sum() / denominator;
}

torch::Tensor multitask_bce_loss(const std::vector<torch::Tensor>& head_logits,
                                 const torch::Tensor& targets,
                                 const std::vector<TagGroup>& groups) {
  HOLO_CHECK(head_logits.size() == groups.size() && !groups.empty(),
             "multi-task loss: " + std::to_string(head_logits.size()) + " heads for " +
                 std::to_string(groups.size()) + " categories");
  const auto masks = category_masks(targets, groups);
  torch::Tensor loss;
  for (size_t g = 0; g < groups.size(); ++g) {
    HOLO_CHECK(head_logits[g].dim() == 2 &&
                   head_logits[g].size(1) == static_cast<int64_t>(groups[g].tags.size()),
               "multi-task loss: head '" + groups[g].name + "' has " +
                   std::to_string(head_logits[g].size(-1)) + " outputs for " +
                   std::to_string(groups[g].tags.size()) + " tags");
    const torch::Tensor l =
        masked_bce_with_logits(head_logits[g], group_targets(targets, groups[g]), masks[g]);
    loss = loss.defined() ? loss + l : l;
  }
  return loss;
}

torch::Tensor merge_head_scores(const std::vector<torch::Tensor>& head_logits,
                                const std::vector<TagGroup>& groups, int64_t num_tags) {
  HOLO_CHECK(head_logits.size() == groups.size() && !groups.empty(),
             "merging head scores: as many heads as groups needed");
  check_tag_groups(groups, num_tags);
  const int64_t n = head_logits[0].size(0);
  torch::Tensor out = torch::zeros({n, num_tags}, torch::kFloat32);
  for (size_t g = 0; g < groups.size(); ++g) {
    out.index_copy_(1, index_tensor(groups[g], torch::kCPU),
                    cpu_float(head_logits[g]).sigmoid());
  }
  return out;
}

}  // namespace holo
