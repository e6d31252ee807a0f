#pragma once
/// Tensor front of train/metrics.h, and the multi-task loss with HVU's masking rule: a video
/// lacking every tag of a category contributes no loss to that category's head.

#include <torch/types.h>

#include <vector>

#include "train/metrics.h"

namespace holo {

/// Adds a batch: `logits` N x C (any floating dtype, any device), `labels` int64 N.
void add_batch(ClassificationMeter& meter, const torch::Tensor& logits,
               const torch::Tensor& labels);
/// Adds a batch: `scores` and `targets` N x num_tags (targets 0/1, any floating dtype).
void add_batch(MultiLabelMeter& meter, const torch::Tensor& scores, const torch::Tensor& targets);

/// An int64 CPU tensor sharing memory with `meter.mutable_sums()`: all-reduce it in place with
/// kSum to combine the ranks (copy to the device first for a GPU-only communicator).
torch::Tensor sums_view(ClassificationMeter& meter);

/// The columns of `targets` (N x num_tags) holding `group`'s tags, in the group's order: the
/// targets of that group's head.
torch::Tensor group_targets(const torch::Tensor& targets, const TagGroup& group);

/// Float N mask per group: 1 where the video has at least one tag of the group.
std::vector<torch::Tensor> category_masks(const torch::Tensor& targets,
                                          const std::vector<TagGroup>& groups);

/// Binary cross entropy with logits of one head, averaged over the masked-in videos and the
/// head's outputs: sum(bce * mask) / (sum(mask) * outputs). Zero, still attached to the graph
/// (zero gradients), when no video of the batch is masked in.
torch::Tensor masked_bce_with_logits(const torch::Tensor& logits, const torch::Tensor& targets,
                                     const torch::Tensor& mask);

/// The multi-task loss: sum over heads of masked_bce_with_logits(head logits, the group's
/// targets, the group's mask). `head_logits[g]` is N x groups[g].tags.size().
torch::Tensor multitask_bce_loss(const std::vector<torch::Tensor>& head_logits,
                                 const torch::Tensor& targets,
                                 const std::vector<TagGroup>& groups);

/// Sigmoid of each head written back to global tag order: float CPU N x num_tags (0 for tags
/// that no group holds), ready for MultiLabelMeter.
torch::Tensor merge_head_scores(const std::vector<torch::Tensor>& head_logits,
                                const std::vector<TagGroup>& groups, int64_t num_tags);

}  // namespace holo
