#pragma once
/// Temporal action segmentation as a task of the shared trainer (task.kind = "segmentation"):
/// per-frame features in MS-TCN's layout (pipeline/segmentation_data.h, data.dataset = "mstcn"),
/// MS-TCN (models/mstcn.h, model.name = "mstcn") trained with full per-frame supervision: cross
/// entropy of every stage plus MS-TCN's smoothing loss, validated by MoF, Edit and F1@{10,25,50}
/// (train/segmentation_metrics.h). docs/segmentation.md.

#include <memory>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "models/mstcn.h"
#include "pipeline/segmentation_data.h"
#include "train/task.h"
#include "train/trainer.h"

namespace holo::train {

class SegmentationTraining : public Task {
 public:
  /// Throws a RecipeError naming the key unless data.dataset = "mstcn" and model.name = "mstcn".
  explicit SegmentationTraining(const Recipe& recipe);
  std::string describe() const override;
  void setup(const Runtime& rt) override;
  torch::nn::Module& model() override { return *net_; }
  std::unique_ptr<StepLoader> train_loader(const Runtime& rt) override;
  std::string data_hash() const override { return hash_; }
  torch::Tensor train_loss(const StepBatch& batch, const Runtime& rt, Stats& stats) override;
  bool validates() const override { return !recipe_.data.val.empty() && recipe_.train.val_every > 0; }
  Validation validate(const Runtime& rt) override;
  std::string count_key() const override { return "videos"; }
  std::string rate_key() const override { return "frames_per_s"; }
  std::string score_key() const override { return "mof"; }
  std::vector<std::string> mean_keys() const override { return {"loss", "frame_acc"}; }

 private:
  Recipe recipe_;
  std::unique_ptr<pipeline::SegmentationDataset> train_, val_;
  models::MultiStageTcn net_{nullptr};
  std::string hash_;
};

/// evaluate() (train/trainer.h) of a segmentation recipe: the model of the newest valid checkpoint
/// in `checkpoint` on the eval.split bundle (data.val or data.test), every rank scoring its share
/// of the videos. Writes eval-<split>.json (MoF, Edit, F1@{10,25,50}, IoD, matching) into
/// `out_dir`; with `save_predictions`, also predictions-<split>/<video>.txt in the groundTruth
/// format (one label per frame, after data.sample_rate), which `holo metrics segmentation` reads.
EvalResult evaluate_segmentation(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                                 bool save_predictions);

/// The MS-TCN training loss of stage logits (stages x N x C x T) against labels (N x T, -100
/// past a video's end) with mask (N x T): every stage's cross entropy over the real frames, plus
/// `smoothing` x MS-TCN's truncated MSE of neighbouring frames' log-probabilities (clamped at 16,
/// the previous frame detached, averaged over all N x C x (T - 1) entries as MS-TCN does).
torch::Tensor mstcn_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& mask,
                         double smoothing);

}  // namespace holo::train
