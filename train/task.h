#pragma once
/// The seam between the trainer (train/trainer.h) and what it trains. A Task owns its model, its
/// training loader, its forward pass and loss, and its evaluation; the trainer owns everything
/// that is the same for every task: the run directory, the optimiser and its schedule, gradient
/// reduction, mixed precision, checkpoints and exact resume, preemption, metrics and progress.
///
/// Video tasks (classification, multi-label HVU, 2D->3D transfer) are one implementation,
/// train/video_task.h. A task over other samples (per-frame feature sequences for action
/// segmentation, tests/train/sequence_task_test.cc) implements this interface in its own files
/// and is trained with train(recipe, factory).

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "train/gather.h"

namespace holo {
struct Recipe;
}

namespace holo::dist {
class Communicator;
struct World;
}  // namespace holo::dist

namespace holo::train {

/// The rank's place in the run, as the trainer set it up.
struct Runtime {
  const dist::World* world = nullptr;
  int rank = 0;
  int world_size = 1;
  torch::Device device = torch::kCPU;
  std::shared_ptr<dist::Communicator> comm;
  std::string precision = "fp32";  ///< train.precision: the forward pass runs under AutocastGuard
};

/// Sets up this rank for `recipe`: the world (dist::init_world), deterministic kernels
/// (run.deterministic), the device (a GPU of the node's share when CUDA has one, else the CPU),
/// LibTorch's thread count, and the communicator of dist.backend. Throws a RecipeError for what
/// the device cannot run (train.precision = "fp16" on a CPU).
Runtime start_runtime(const Recipe& recipe);

/// Copies the tensors of a checkpoint's `state` named `prefix` + a name of `module` ("model.",
/// "task.") into it; every one must be there with its shape (an IoError naming `from` and the
/// tensor otherwise).
void load_module_state(const std::string& prefix, torch::nn::Module& module,
                       const std::map<std::string, torch::Tensor>& state, const std::string& from);

/// One batch of a task's training loader. The trainer reads these fields only; the task's
/// loader returns its own subclass and the task's train_loss() reads it back.
struct StepBatch {
  virtual ~StepBatch() = default;
  /// Sample indices of the batch (HOLO_SAMPLE_LOG writes them, one line per sample).
  std::vector<int64_t> samples;
  /// The factor of this rank's mean loss that makes the ranks' average the mean over every
  /// sample of the step: 1 for whole steps, less in an uneven last step, 0 for a batch that
  /// only keeps the rank in the step's collectives (not trained on, not counted).
  double weight = 1.0;
};

/// A task's training loader: sharded over the ranks, in a fixed order per epoch, resumable at
/// any step from its state, also on another number of ranks.
class StepLoader {
 public:
  virtual ~StepLoader() = default;
  virtual void set_epoch(int64_t epoch) = 0;
  /// The next batch of this rank; nullptr when its share of the epoch has ended.
  virtual std::unique_ptr<StepBatch> next() = 0;
  virtual int64_t batches_per_epoch() const = 0;
  /// Batches this rank has left in the epoch.
  virtual int64_t batches_left() const = 0;
  /// Called after a resume on another number of ranks: the rest of the epoch is split anew so
  /// that its last step takes every sample left.
  virtual void complete_epoch() = 0;
  /// The state a checkpoint keeps ("loader" in its metadata); holds at least "epoch".
  virtual nlohmann::json state() const = 0;
  virtual void load_state(const nlohmann::json& state) = 0;

  /// Bad samples (quarantined videos). With several ranks the trainer sums the ranks' counts at
  /// every step (set_world_quarantined) so that every rank stops at the same step when too many
  /// are bad. Loaders without bad samples keep these defaults.
  virtual void defer_bad_fraction_check(bool) {}
  virtual int64_t epoch_quarantined() const { return 0; }
  virtual void set_world_quarantined(int64_t) {}
};

/// A validation's result.
struct Validation {
  Stats metrics;    ///< the task's metrics, score_key() among them
  CostStats costs;  ///< per-sample costs over the validation samples (may be empty)
};

class Task {
 public:
  virtual ~Task() = default;
  /// What is trained, for the log's first line ("r3d18 on classification").
  virtual std::string describe() const = 0;
  /// Builds the model on `rt.device`. The trainer has seeded LibTorch's generator with run.seed
  /// on every rank, so every rank builds the same initial weights.
  virtual void setup(const Runtime& rt) = 0;
  /// The network trained: optimised, all-reduced, checkpointed under "model.".
  virtual torch::nn::Module& model() = 0;
  /// After the run directory and its log exist, before the model is broadcast from rank 0:
  /// initial weights from elsewhere, frozen parts, validation data.
  virtual void initialise(const Runtime& rt) {}
  /// A trainable module besides the model (the 2D->3D transfer head), or nullptr; checkpointed
  /// under "task.". Valid after prepare().
  virtual std::shared_ptr<torch::nn::Module> module() { return nullptr; }
  /// Called once on every rank after the model is broadcast from rank 0, before training. May
  /// use collectives.
  virtual void prepare(const Runtime& rt) {}
  /// The training loader of this rank.
  virtual std::unique_ptr<StepLoader> train_loader(const Runtime& rt) = 0;
  /// A hash of the training data: a checkpoint saved on other data is not resumed.
  virtual std::string data_hash() const = 0;
  /// Whether a checkpoint's saved hash is this data's (older checkpoints may hold another form).
  virtual bool same_data(const std::string& saved_hash) const { return saved_hash == data_hash(); }
  /// The epoch about to be trained.
  virtual void set_epoch(int64_t epoch) {}
  /// Forward pass and training loss of `batch` (model in training mode, under autocast).
  /// Adds statistics that are sums over the batch's samples to `stats` ("count", "loss", ...;
  /// mean_keys() are divided by "count" when logged).
  virtual torch::Tensor train_loss(const StepBatch& batch, const Runtime& rt, Stats& stats) = 0;
  /// After the backward pass of a trained batch: the model's per-sample costs of the forward
  /// pass of train_loss() (models whose cost varies per sample; default none).
  virtual void add_costs(const StepBatch& batch, CostStats& costs) {}
  /// The names add_costs() and validate() give costs under, the same on every rank.
  virtual std::vector<std::string> cost_names() const { return {}; }
  /// Whether the run validates (a validation split is set and the task has a protocol).
  virtual bool validates() const = 0;
  /// Scores the validation split, all ranks together; the model is back in training mode after.
  virtual Validation validate(const Runtime& rt) = 0;
  /// The key of validate()'s metrics that counts what was evaluated, and the log's word for it.
  virtual std::string count_key() const { return "samples"; }
  /// The training log's throughput key: "count" per second under this name (clips_per_s for
  /// clips; segmentation counts frames).
  virtual std::string rate_key() const { return "clips_per_s"; }
  /// Name of the main metric of validate() (higher is better; keep-best checkpoints use it).
  virtual std::string score_key() const = 0;
  /// Statistic keys that are sums to be turned into means by dividing by "count".
  virtual std::vector<std::string> mean_keys() const = 0;
};

}  // namespace holo::train
