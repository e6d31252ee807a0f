#pragma once
/// `holo data synth --kind segmentation`: per-frame features in MS-TCN's layout
/// (pipeline/segmentation_data.h) with known structure, for training and testing temporal
/// action segmentation without downloads. Videos follow a small grammar: three activities, each
/// an order of actions, with actions sometimes skipped or two neighbours swapped, so that
/// transcripts have typical orders but not one; each action's duration is drawn around its own
/// mean, scaled by a per-video pace; background opens and closes every video and sometimes sits
/// between actions. A frame's features are its class's prototype, weak against unit Gaussian
/// noise (one frame alone is often misread), plus a per-video offset and slowly drifting
/// distractor dimensions that carry no label: learnable from temporal context, not from one
/// frame. `grammar = "subsets"` draws each video's actions instead (below). No torch here.

#include <cstdint>
#include <string>
#include <vector>

namespace holo::pipeline {

struct SegmentationSynthOptions {
  std::string out;                ///< output folder (created)
  uint64_t seed = 0;
  int64_t videos = 64;            ///< split 3:1 into train.split1 and test.split1
  int64_t dim = 24;               ///< feature dimension (16 of them carry the class, the rest distract)
  double amplitude = 0.8;         ///< length of a class prototype against unit noise per dimension
  double pace_min = 0.6, pace_max = 1.4;  ///< per-video scale of every action's duration
  /// "activities": three activities that all start with take and end with serve, so a video's
  /// set of actions tells little more than its activity. "subsets": every video does 2 to 4 of
  /// the 8 actions, drawn at random and done in one kitchen order, so sets vary from video to
  /// video as Breakfast's do across its 10 activities (what learning from sets, thesis ch. 8,
  /// needs to tell the actions apart).
  std::string grammar = "activities";
};

struct SegmentationSynthResult {
  int64_t videos = 0;
  int64_t frames = 0;
  std::vector<std::string> files;  ///< mapping.txt and the bundles
};

/// The class names: background first, then the actions.
const std::vector<std::string>& segmentation_synth_classes();

/// Writes <out>/features, groundTruth, mapping.txt and splits/{train,test}.split1.bundle. The
/// output is a pure function of the options.
SegmentationSynthResult write_segmentation_synth(const SegmentationSynthOptions& options);

}  // namespace holo::pipeline
