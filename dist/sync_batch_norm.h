#pragma once
/// Synchronised batch normalisation (as torch.nn.SyncBatchNorm): in training, every rank
/// normalises its share of the batch with the mean and variance of the whole batch over all
/// ranks, and backward gives the gradients of one process normalising the concatenated batch.
///
/// Forward: each rank sums, per channel, x and x^2 of its local batch and counts its values; one
/// all-reduce (sum, float64) of [sum, sum of squares, count] gives the global mean and biased
/// variance. The running mean is updated with the global mean and the running variance with the
/// global unbiased variance (count / (count - 1)), identically on every rank.
/// Backward: one all-reduce (sum, float64) of [sum(dy), sum(dy * xhat)] per channel; the input
/// gradient is w * invstd * (dy - sum(dy) / count - xhat * sum(dy * xhat) / count) with the global
/// sums, and the weight and bias gradients are the local sums (the gradient reducer then averages
/// them like every other parameter's).
///
/// Every rank must run every synchronised layer in the same order in forward and in backward (two
/// collectives per layer per step). Ranks may hold different numbers of samples. The collectives
/// run on the communicator given, which should be one of its own: backward's all-reduces happen
/// on the autograd thread while the gradient reducer's communication thread starts bucket
/// all-reduces on its communicator, and the two orders need not agree across ranks.

#include <memory>

#include "dist/communicator.h"

namespace holo::dist {

/// Batch normalisation of `input` (N, C, ...) in training with the statistics of every rank's
/// input. `weight`, `bias` may be undefined (no affine); `running_mean`, `running_var` may be
/// undefined (no running statistics), else they are updated in place with `factor`
/// (new = (1 - factor) * old + factor * batch). Collective over `comm`. Throws holo::UsageError
/// when the whole batch has at most one value per channel (no variance), as torch does.
/// Differentiable with respect to input, weight and bias (first order).
torch::Tensor sync_batch_norm(const torch::Tensor& input, const torch::Tensor& weight,
                              const torch::Tensor& bias, const torch::Tensor& running_mean,
                              const torch::Tensor& running_var, double factor, double eps,
                              const std::shared_ptr<Communicator>& comm);

}  // namespace holo::dist
