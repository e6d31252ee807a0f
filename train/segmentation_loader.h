#pragma once
/// What the segmentation tasks (MS-TCN, MuCon: train/segmentation_task.h, train/mucon_task.h)
/// share: the dataset options of a recipe, whole videos as a step's batch, the resumable video
/// loader and the hash of a split's content that a checkpoint is tied to.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "pipeline/segmentation_data.h"
#include "train/segmentation_metrics.h"
#include "train/task.h"
#include "train/trainer.h"

namespace holo::train {

/// The SegmentationDataset options of `r` for `bundle` (data.root, data.sample_rate,
/// data.background; data.features: the per-frame features come from that HDF5 store).
pipeline::SegmentationDataOptions segmentation_data_options(const Recipe& r, const std::string& bundle);

/// Videos padded to the longest of the batch; labels -100 and mask 0 past each video's end.
struct VideoSequences {
  torch::Tensor features;  ///< N x D x T
  torch::Tensor labels;    ///< N x T
  torch::Tensor mask;      ///< N x T
};

VideoSequences pad_videos(const std::vector<pipeline::SegmentationVideo>& videos, const std::vector<int64_t>& which);

/// Whole videos, `batch` per rank per step (a StepBatch of video indices: a task reads or pads
/// the videos itself), in an order drawn per epoch from
/// `seed`; the epoch's last incomplete global batch is dropped, except after complete_epoch() (a
/// resume on another number of ranks), when it becomes one uneven last step. Its state resumes on
/// any number of ranks.
std::unique_ptr<StepLoader> make_video_loader(const std::vector<pipeline::SegmentationVideo>& videos, int64_t batch,
                                              int rank, int ranks, uint64_t seed);

/// `v`'s features as 1 x D x T on `device`.
torch::Tensor video_features(const pipeline::SegmentationVideo& v, const torch::Device& device);

/// An IoError naming `bundle` and the first video of `data` shorter than `frames` frames, the
/// fewest a network's temporal poolings allow (`what` names the network and its recipe key).
void check_min_frames(const pipeline::SegmentationDataset& data, const std::string& bundle, int64_t frames,
                      const std::string& what);

/// FNV-1a over the videos' names, labels and features (a checkpoint of other data is refused).
std::string content_hash(const pipeline::SegmentationDataset& d);

/// The bundle holo eval scores: data.test or data.val, as eval.split says; a RecipeError naming
/// the key when it is not set.
std::string segmentation_eval_bundle(const Recipe& recipe);

/// One video's predicted class ids scored against its ground truth into `meter`; with a
/// non-empty `predictions` folder also written to <predictions>/<video>.txt, a class name per
/// frame (the groundTruth format that `holo metrics segmentation` reads).
void add_prediction(seg::SegmentationMeter& meter, const pipeline::SegmentationVideo& video,
                    const std::vector<std::string>& class_names, const std::vector<int64_t>& predicted,
                    const std::string& predictions);

/// The predictions-<split> folder of holo eval --save-predictions under `out_dir`, emptied by
/// rank 0 while the others wait; "" when `save` is false.
std::string prepare_predictions(const std::string& out_dir, const std::string& split, bool save, const Runtime& rt);

/// holo eval's result of a segmentation model: `all` (every rank's videos) and `extra` metrics
/// as result.metrics and a table; rank 0 writes eval-<split>.json into `out_dir`.
void report_segmentation_eval(const seg::SegmentationMeter& all, const Stats& extra, const std::string& checkpoint,
                              int64_t step, const std::string& split, const std::string& bundle,
                              const std::string& out_dir, const Runtime& rt, EvalResult& result);

}  // namespace holo::train
