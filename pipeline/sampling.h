#pragma once
/// Which frames make a clip and where it is cropped: pure functions of the recipe and a key
/// (seed, epoch, record index, view), so a resumed or re-sharded run draws the same clips.
/// No torch: clip.h applies a ClipRequest to a video.
///
/// Training: a clip of `num_frames` frames `stride` apart starts at a uniform frame in
/// [0, frames - span] (span = (num_frames - 1) * stride + 1; shorter videos repeat their last
/// frame); the short side is uniform in [train_scale_min, train_scale_max]; the crop position
/// is uniform; the clip is flipped horizontally with probability 1/2 when transform.flip.
/// Testing: view v = clip * test_crops + crop; clip k of K starts at round(k (frames - span) /
/// (K - 1)) (the middle when K = 1); the short side is test_scale; crops are centre (1) or
/// start, centre, end along the long side (3), centred on the short side.

#include <cstdint>
#include <vector>

#include "core/recipe.h"

namespace holo::pipeline {

/// What clip sampling reads of a recipe: its [sampling] and [transform] tables and run.seed.
struct ClipSampling {
  SamplingOptions sampling;
  TransformOptions transform;
  uint64_t seed = 0;
};
/// The clip sampling of `recipe`.
ClipSampling clip_sampling(const Recipe& recipe);

/// One clip to read from a video.
struct ClipRequest {
  std::vector<int64_t> frames;  ///< frame indices (in [0, frames) of the video)
  int64_t short_side = 0;       ///< decode so that the short side is this; 0: unscaled
  int64_t crop_size = 0;        ///< square crop side; 0: no crop
  double crop_x = 0.5;          ///< crop position in [0, 1] of the free width (0 left, 1 right)
  double crop_y = 0.5;          ///< same for the height
  /// Test crops: `crop_x` is the position along the long side (whichever it is) and the short
  /// side is centred; `crop_y` is unused.
  bool crop_along_long_side = false;
  bool flip = false;            ///< mirror horizontally after cropping
  bool normalize = true;        ///< float (x / 255 - mean) / std; false: float x / 255
  std::vector<double> mean = {0.43216, 0.394666, 0.37645};
  std::vector<double> std = {0.22803, 0.22145, 0.216989};
};

/// `count` frame indices from `start`, `stride` apart, clamped to [0, frames - 1].
std::vector<int64_t> clip_frames(int64_t frames, int64_t start, int64_t count, int64_t stride);

/// The training clip of `record` in `epoch` for `view` (0 for the regular draw; a replacement
/// for a quarantined sample uses 1, 2, ...), for a video of `frames` frames.
ClipRequest train_clip(const ClipSampling& options, int64_t frames, int64_t epoch, int64_t record, int64_t view);
inline ClipRequest train_clip(const Recipe& recipe, int64_t frames, int64_t epoch, int64_t record, int64_t view) {
  return train_clip(clip_sampling(recipe), frames, epoch, record, view);
}

/// The test clip `view` (= clip * test_crops + crop) of a video of `frames` frames.
ClipRequest test_clip(const ClipSampling& options, int64_t frames, int64_t view);
inline ClipRequest test_clip(const Recipe& recipe, int64_t frames, int64_t view) {
  return test_clip(clip_sampling(recipe), frames, view);
}

/// The permutation of [0, n) for `epoch` (Fisher-Yates with the Rng of random.h).
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace holo::pipeline
