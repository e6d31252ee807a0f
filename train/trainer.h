#pragma once
/// The training loop shared by every task, evaluation with multi-view testing, and feature
/// extraction. One call runs one rank; the world comes from dist::init_world().

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/recipe.h"

namespace holo::train {

struct TrainResult {
  int64_t step = 0;        ///< optimiser steps done in total (including before a resume)
  int64_t epoch = 0;
  bool preempted = false;  ///< stopped by SIGUSR1/SIGTERM after saving a checkpoint
  int64_t resumed_from = -1;  ///< step of the checkpoint resumed from; -1 for a fresh start
  std::map<std::string, double> last_val;  ///< last validation metrics (empty if none ran)
  std::string run_dir;
};

class Task;
/// Makes the task a recipe trains (train/task.h); called once per rank, after the runtime is up.
using TaskFactory = std::function<std::unique_ptr<Task>(const Recipe&)>;

/// Trains the task `make_task` gives to the recipe's end (train.epochs or train.max_steps),
/// resuming from the newest checkpoint in the run directory when checkpoint.resume = "auto".
/// Rank 0 writes the run directory: recipe.toml, train.log, metrics.jsonl, tb/ (TensorBoard
/// events of the same lines), checkpoints/, summary.json. The stages, in order: setup (the
/// task's model, the optimiser, the reducer, the loader), resume, the steps (with validations
/// at epoch ends and checkpoints every checkpoint.every_steps), and finish (last validation,
/// last checkpoint, summary); docs/layout.md follows one step through them.
TrainResult train(const Recipe& recipe, const TaskFactory& make_task);

/// train() of the recipe's video task (train/video_task.h, task.kind).
TrainResult train(const Recipe& recipe);

struct EvalResult {
  std::map<std::string, double> metrics;
  std::string table;     ///< printable summary
  std::string csv_path;  ///< per-class results ("" when eval.per_class is false)
  bool labeled = true;   ///< false: the split has no labels; predictions only, no metrics
  std::string predictions_csv, predictions_npy;  ///< with save_predictions (video tasks)
  std::string predictions_dir;  ///< with save_predictions (segmentation): a labels file per video
};

/// Evaluates the model in `checkpoint` (a checkpoint directory, or a run directory / checkpoints
/// folder whose newest checkpoint is used) on the eval.split split, as the recipe's task does it.
/// Video tasks: multi-view testing (sampling.test_clips x sampling.test_crops per video,
/// probabilities averaged per video) on the eval.split annotation file; rank 0 writes
/// eval-<split>.json and eval-<split>-per-class.csv into `out_dir`; with `save_predictions`, also
/// predictions-<split>.csv (video, label, the top 5 classes and their scores) and
/// predictions-<split>.npy (float32 videos x classes, the CSV's row order). A split without labels
/// (a test list without them) gives predictions and no metrics. Segmentation: see
/// evaluate_segmentation() (train/segmentation_task.h).
EvalResult evaluate(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                    bool save_predictions = false);

/// Writes clip features (averaged over the test views) of every video of `split` into the
/// HDF5 feature store at `out`, keyed by video id, with labels. Returns the number of videos.
int64_t extract(const Recipe& recipe, const std::string& checkpoint, const std::string& split,
                const std::string& out);

/// Per-frame features (`holo extract --per-frame`): for every frame t of every video of `split`,
/// the network's pooled features of the clip centred on t (sampling.num_frames frames
/// sampling.stride apart, clamped to the video; the test transform's centre crop), written to
/// the HDF5 feature store at `out` as one frames x D dataset per video id, the features a
/// segmentation recipe reads with data.features. Returns the number of videos.
int64_t extract_frames(const Recipe& recipe, const std::string& checkpoint, const std::string& split,
                       const std::string& out);

}  // namespace holo::train
