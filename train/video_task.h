#pragma once
/// Tasks own what differs between kinds of training: heads, loss, scores, metrics. The trainer
/// loop is shared. Selected by task.kind: classification (and finetune, which is
/// classification initialised from a checkpoint with optional frozen stages) and multilabel
/// (HVU: one head per category with masked BCE, or one standard head).

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "pipeline/dataset.h"
#include "pipeline/loader.h"
#include "models/network.h"

namespace holo::dist {
class Communicator;
}

namespace holo::train {

/// Named scalar statistics of a batch or an evaluation.
using Stats = std::map<std::string, double>;

class Task {
 public:
  virtual ~Task() = default;
  /// Sizes of the network's heads.
  virtual std::vector<int64_t> head_sizes() const = 0;
  /// Training loss of a batch; adds batch statistics (sums, so they can be added across ranks
  /// and batches) to `stats`.
  virtual torch::Tensor loss(const models::NetworkOutput& out, const pipeline::Batch& batch,
                             Stats& stats) const = 0;
  /// Per-clip probabilities over all classes or tags (N x C): softmax or sigmoid, heads placed
  /// at their global tag positions.
  virtual torch::Tensor scores(const models::NetworkOutput& out) const = 0;
  /// Metrics of video-level scores (V x C) against their targets (int64 V or float V x C).
  /// Higher-is-better `score_key()` drives keep-best checkpoints.
  virtual Stats evaluate(const torch::Tensor& scores, const torch::Tensor& targets) const = 0;
  /// Name of the main metric in evaluate()'s result.
  virtual std::string score_key() const = 0;
  /// Per-class (or per-tag) rows for the CSV: header and one row per class.
  virtual std::vector<std::vector<std::string>> per_class(const torch::Tensor& scores,
                                                          const torch::Tensor& targets) const = 0;
  /// Statistic keys that are sums to be turned into means by dividing by "count".
  virtual std::vector<std::string> mean_keys() const = 0;

  /// A trainable module the task owns besides the network (e.g. the 2D->3D transfer head), or
  /// nullptr. The trainer optimises, all-reduces and checkpoints it with the prefix "task.".
  virtual std::shared_ptr<torch::nn::Module> module() { return nullptr; }
  /// Called once on every rank before training, after the network is built and on its device
  /// (e.g. to compute and cache a frozen teacher's features). May use collectives.
  virtual void prepare(const Recipe& recipe, const pipeline::Dataset& dataset,
                       models::NetworkImpl& network, const torch::Device& device,
                       dist::Communicator& comm) {}
  /// The epoch about to be trained (tasks that recompute what the loader drew need it).
  virtual void set_epoch(int64_t epoch) {}
  /// False for tasks without a validation protocol of their own (2D->3D transfer).
  virtual bool validates() const { return true; }
};

/// The task for `recipe` over `dataset` (class count or categories come from the dataset unless
/// model.num_classes / data.num_classes set them). Throws holo::RecipeError-style holo::Error
/// naming the key when the dataset and task do not fit (e.g. multilabel on a dataset without
/// tags).
std::unique_ptr<Task> make_task(const Recipe& recipe, const pipeline::Dataset& dataset);

}  // namespace holo::train
