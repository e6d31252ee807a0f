#pragma once
/// Video tasks: clips from the video loader through a models::NetworkImpl. What differs between
/// kinds (heads, loss, scores, metrics) is a VideoTask, selected by task.kind: classification
/// (and finetune, which is classification initialised from a checkpoint with optional frozen
/// stages), multilabel (HVU: one head per category with masked BCE, or one standard head) and
/// transfer (2D->3D, train/transfer.cc). VideoTraining is the trainer's Task (train/task.h) for
/// all of them: the dataset, the network, the clip loader, and validation by video-level scores.

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "models/network.h"
#include "pipeline/dataset.h"
#include "pipeline/loader.h"
#include "train/task.h"
#include "train/trainer.h"

namespace holo::dist {
class Communicator;
}

namespace holo::train {

class VideoTask {
 public:
  virtual ~VideoTask() = default;
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
  /// True when targets are tags (float N x C 0/1), not one label per clip.
  virtual bool multilabel() const { return false; }
  /// False for tasks without a validation protocol of their own (2D->3D transfer).
  virtual bool validates() const { return true; }
};

/// The task for `recipe` over `dataset` (class count or categories come from the dataset unless
/// model.num_classes / data.num_classes set them). Throws holo::Error naming the key when the
/// dataset and task do not fit (e.g. multilabel on a dataset without tags).
std::unique_ptr<VideoTask> make_video_task(const Recipe& recipe, const pipeline::Dataset& dataset);
/// The video tasks task.kind registers (train/registry.h): one head over the classes, tags
/// (multi-label, standard or multitask heads), and 2D->3D transfer (train/transfer.cc).
std::unique_ptr<VideoTask> make_classification_task(const Recipe& recipe, const pipeline::Dataset& dataset);
std::unique_ptr<VideoTask> make_multilabel_task(const Recipe& recipe, const pipeline::Dataset& dataset);
std::unique_ptr<VideoTask> make_transfer_task(const Recipe& recipe, const pipeline::Dataset& dataset);

/// Video-level results of a network over every video of a test-mode loader: the views averaged
/// per video, gathered from all ranks (every rank holds all of them), and the network's
/// per-clip costs over every view, summed over the ranks.
struct VideoScores {
  std::vector<int64_t> records;  ///< record indices, ascending
  torch::Tensor scores;          ///< V x C probabilities
  torch::Tensor features;        ///< V x D pooled features
  CostStats costs;
};

/// Runs `net` (left in training mode after) over every batch of `loader`, all ranks together.
VideoScores score_videos(models::NetworkImpl& net, const VideoTask& task, pipeline::ClipLoader& loader,
                         const Runtime& rt, const std::string& label);

/// Targets of records, as VideoTask::evaluate() expects them: int64 labels, or 0/1 tags of
/// `num_tags` columns when `multilabel`.
torch::Tensor record_targets(const pipeline::Dataset& ds, const std::vector<int64_t>& records, bool multilabel,
                             int64_t num_tags);

/// task.freeze: the parameters of the named stages (the network's top-level submodules: stem,
/// res2, ...) stop learning. A name that is not a stage of `net` is a RecipeError listing its
/// stages.
void freeze_stages(models::NetworkImpl& net, const std::vector<std::string>& stages);

/// The trainer's Task for video recipes: dataset from data.train (and data.val for validation),
/// network from [model] with model.init and task.freeze applied, clip loader, video-level
/// validation with one centre view per video.
class VideoTraining : public Task {
 public:
  explicit VideoTraining(const Recipe& recipe);
  std::string describe() const override;
  void setup(const Runtime& rt) override;
  torch::nn::Module& model() override { return *net_; }
  std::shared_ptr<torch::nn::Module> module() override { return task_->module(); }
  void prepare(const Runtime& rt) override;
  std::unique_ptr<StepLoader> train_loader(const Runtime& rt) override;
  std::string data_hash() const override;
  bool same_data(const std::string& saved_hash) const override;
  void set_epoch(int64_t epoch) override { task_->set_epoch(epoch); }
  void initialise(const Runtime& rt) override;
  torch::Tensor train_loss(const StepBatch& batch, const Runtime& rt, Stats& stats) override;
  void add_costs(const StepBatch& batch, CostStats& costs) override;
  std::vector<std::string> cost_names() const override { return net_->clip_cost_names(); }
  bool validates() const override;
  Validation validate(const Runtime& rt) override;
  std::string count_key() const override { return "videos"; }
  std::string score_key() const override { return task_->score_key(); }
  std::vector<std::string> mean_keys() const override { return task_->mean_keys(); }

 private:
  Recipe recipe_;
  std::shared_ptr<pipeline::Dataset> dataset_, val_dataset_;
  std::unique_ptr<VideoTask> task_;
  std::shared_ptr<models::NetworkImpl> net_;
  models::NetworkOutput last_output_;  ///< of the last train_loss(), for add_costs()
};

/// A trained network on one split for evaluation and feature extraction (train/trainer.h
/// evaluate() and extract()): the runtime, the split's dataset, its task and the network with
/// the newest valid checkpoint of `checkpoint` loaded.
struct VideoModel {
  Runtime rt;
  std::shared_ptr<pipeline::Dataset> dataset;
  std::unique_ptr<VideoTask> task;
  std::shared_ptr<models::NetworkImpl> net;
  std::string path;  ///< the checkpoint directory used
  int64_t step = 0;  ///< its step
};
VideoModel load_video_model(const Recipe& recipe, const std::string& checkpoint, const std::string& split);

/// evaluate() (train/trainer.h) of a video task: multi-view testing (train/evaluate.cc).
EvalResult evaluate_videos(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                           bool save_predictions);

}  // namespace holo::train
