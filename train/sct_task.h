#pragma once
/// SCT training and inference (thesis ch. 8) as a task of the shared trainer: task.kind =
/// "segmentation", model.name = "sct", task.supervision = "set", on per-frame features in
/// MS-TCN's layout. Each training video gives only its set of actions. The loss (§8.4, with the
/// released code's reductions and weights): L_S + L_T + region_weight L_R + consistency_weight L_C
/// + sparsity_weight R_I + length_weight R_L. Inference: the argmax of Y per frame. Validation and
/// holo eval add set_iou: the mean Jaccard index (percent) of the action set the regions predict
/// (a class whose probability reaches 0.5 in some region) and the video's, background left out.
/// docs/segmentation.md, "SCT".

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "models/sct.h"
#include "pipeline/segmentation_data.h"
#include "train/task.h"
#include "train/trainer.h"

namespace holo::train {

namespace sct {

struct Losses {
  torch::Tensor set;          ///< L_S (8.5): -(1/M) sum_m c_m log max_k A[a_m, k]
  torch::Tensor region;       ///< L_R (8.6): -(1/K) sum_k log max_m A[a_m, k]
  torch::Tensor sparsity;     ///< R_I (8.7): (1/M) sum_m c_m |1 - mean_k A[a_m, k]|
  torch::Tensor consistency;  ///< L_C (8.8): sum_m sum_k |A[a_m, k] - A[a_m, k - 1]|
  torch::Tensor transformer;  ///< L_T (8.12): cross entropy of V = W S^T / T, weighted by c
  torch::Tensor length;       ///< R_L (8.14): sum_k relu(l_k - delta) + relu(-delta - l_k)
};

/// The losses of one video from the network's output and its action set (class ids, ascending).
/// `release`: the released code's reductions, listed above, with `class_weight[c]` as c_m (its
/// 0.001 for background, 1 otherwise). Otherwise the text's: L_S over all C classes, the absent
/// ones pushed down (8.5); L_C and R_L means, not sums (8.8, 8.14); no class weights.
Losses losses(const models::SctOutput& out, const std::vector<int64_t>& action_set,
              const std::vector<double>& class_weight, double delta, bool release);

}  // namespace sct

class SctTraining : public Task {
 public:
  /// Throws a RecipeError naming the key unless data.dataset = "mstcn", model.name = "sct" and
  /// task.supervision = "set".
  explicit SctTraining(const Recipe& recipe);
  std::string describe() const override { return "sct on segmentation (set)"; }
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
  std::vector<std::string> mean_keys() const override {
    return {"loss", "frame_acc", "loss_set", "loss_sct", "loss_region", "loss_consistency"};
  }

 private:
  Recipe recipe_;
  std::unique_ptr<pipeline::SegmentationDataset> train_, val_;
  std::vector<double> class_weight_;
  models::SctNet net_{nullptr};
  std::string hash_;
};

/// holo eval of an SCT recipe (see evaluate_segmentation).
EvalResult evaluate_sct(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                        bool save_predictions);

}  // namespace holo::train
