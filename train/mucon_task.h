#pragma once
/// MuCon training and inference (thesis ch. 9) as a task of the shared trainer: task.kind =
/// "segmentation", model.name = "mucon", on per-frame features in MS-TCN's layout.
///
/// - Weak supervision (task.supervision = "transcript", §9.3.4-9.3.6): L = L_mu + L_t +
///   alpha L_l + beta L_s, the decoder teacher-forced by the ground-truth transcript.
/// - Full and mixed supervision (§9.3.7): videos with frame labels add the frames' cross entropy
///   and the supervised length loss; with "mixed", task.full_fraction of the training videos keep
///   their frame labels.
/// - Inference (§9.3.8): MuCon-Y (the frame classifier), MuCon-S (the decoded segments), MuCon-full
///   (the decoded transcript aligned to Y by Viterbi with a Poisson length model from the decoded
///   lengths), and action alignment (the given transcript aligned the same way).
///
/// model.mucon_variant picks the thesis's text or the released code where they differ
/// (docs/segmentation.md, "MuCon").

#include <memory>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "models/mucon.h"
#include "pipeline/segmentation_data.h"
#include "train/task.h"
#include "train/trainer.h"

namespace holo::train {

namespace mucon {

/// The mask template U of J = 100 values (§9.3.5.2): box (ones), bell (a Gaussian of standard
/// deviation J / 5, as the released code's), trapezoid (ramps from 0.5 over the first and last
/// quarter, as the released code's).
torch::Tensor mask_template(const std::string& shape);

/// The masks w_m (M x frames) of segments of absolute lengths `lengths` (M, summing to frames),
/// the template scaled and shifted by an affine map and sampled with a linear kernel (eq. 9.6-9.9),
/// differentiable in `lengths` (eq. 9.10). With `overlap`, each segment grows by overlap x its
/// length on both sides. `release`: the released code's sampling (grid_sample with the old
/// align_corners = True over frames 0..T-1 and template points 0..J-1) instead of the text's (frames
/// 1..T, template points 1..J, theta = (J / l', -J p' / l')). `mask_lengths` receives the lengths
/// after the overlap, by which (9.1) divides.
torch::Tensor masks(const torch::Tensor& lengths, int64_t frames, const torch::Tensor& templ, double overlap,
                    bool release, torch::Tensor* mask_lengths = nullptr);

struct LossOptions {
  std::string shape = "box";
  double overlap = 0.0;
  bool release = false;       ///< model.mucon_variant = "release"
  double length_width = 2.0;  ///< w of (9.11)
};

struct Losses {
  torch::Tensor transcript;         ///< L_t: the decoder's cross entropy, summed over M + 1 steps
  torch::Tensor consistency;        ///< L_mu (9.3): text summed over segments, release averaged
  torch::Tensor length;             ///< L_l (9.11)
  torch::Tensor smoothing;          ///< L_s (9.12)
  torch::Tensor classification;     ///< full supervision: frames' cross entropy (undefined without labels)
  torch::Tensor supervised_length;  ///< full supervision: MSE of the lengths (undefined without labels)
};

/// The losses of one video from the frame logits `y` (T x N), the teacher-forced decoder's
/// `segments` for `transcript` (M class ids) and, for a fully supervised video, its frame labels
/// (`labels`, T; empty for a weakly supervised one).
Losses losses(const torch::Tensor& y, const models::MuConSegments& segments, const std::vector<int64_t>& transcript,
              const std::vector<int64_t>& labels, const LossOptions& options);

}  // namespace mucon

class MuConTraining : public Task {
 public:
  /// Throws a RecipeError naming the key unless data.dataset = "mstcn" and model.name = "mucon".
  explicit MuConTraining(const Recipe& recipe);
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
  std::vector<std::string> mean_keys() const override {
    return {"loss", "frame_acc", "loss_t", "loss_mu", "loss_l", "loss_s"};
  }

 private:
  Recipe recipe_;
  std::unique_ptr<pipeline::SegmentationDataset> train_, val_;
  std::vector<bool> full_;  ///< per training video: frame labels used (full or mixed supervision)
  models::MuConNet net_{nullptr};
  std::string hash_;
};

/// holo eval of a MuCon recipe (see evaluate_segmentation): every inference variant is scored;
/// task.inference's metrics carry the plain names (mof, edit, ...), the others' are prefixed
/// (y_mof, s_mof, full_mof, ...). With `save_predictions`, task.inference's frame labels are
/// written.
EvalResult evaluate_mucon(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                          bool save_predictions);

}  // namespace holo::train
