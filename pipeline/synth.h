#pragma once
/// Synthetic datasets made of real encoded videos, written in the real annotation formats, so
/// that tests, the demo and benchmarks need nothing downloaded (`holo data synth`).
///
/// - `motion`: one moving shape on a background; the class is the motion (moving left or right,
///   up or down, rotating clockwise or counter-clockwise, growing or shrinking). Shape, colour,
///   background, start and speed are random and every frame's appearance has the same
///   distribution in every class, so only the change over time reveals the class. Written as
///   Kinetics CSV files (train.csv, val.csv, test.csv without labels) with clip files named
///   `<id>_<start:06d>_<end:06d>.mp4` in per-label folders under `videos/`.
/// - `hvu`: one to three shapes; tags in all six HVU categories (scene = background, object =
///   shapes present, action = motion of the main shape, event = solo or group, attribute =
///   colour and speed of the main shape, concept = groupings of the others). Written as
///   HVU_Train.csv / HVU_Val.csv (`Tags,youtube_id,time_start,time_end`) and
///   HVU_Tags_Categories.csv (`Tag,Category`).
/// - `unlabeled`: a folder of videos (`videos/`) without annotations, for 2D->3D transfer.
///
/// Every frame also carries its own index in a band at the top (video_writer.h), so decoded
/// frames can be checked exactly. Output is a pure function of the options (seed included).

#include <cstdint>
#include <string>
#include <vector>

namespace holo::pipeline {

struct SynthOptions {
  std::string kind = "motion";  ///< motion, hvu, unlabeled
  std::string out;              ///< output folder (created)
  uint64_t seed = 0;
  int64_t videos = 64;
  int64_t classes = 8;          ///< motion: 2..8 classes (see motion_class_names())
  int64_t frames = 32;
  int width = 96;
  int height = 64;              ///< short side
  double fps = 16;
  double val_fraction = 0.25;   ///< share of videos (per class) in the validation split
  int threads = 0;              ///< 0: one per core (libx264: always one, for identical bytes)
  std::string codec = "auto";   ///< see VideoWriterOptions::codec
  int gop = 8;                  ///< frames between keyframes (VideoWriterOptions::gop)
  int bframes = 2;              ///< most B-frames in a row, placed by libx264 (VideoWriterOptions::bframes)
  /// Draw each frame's index as a bit pattern in the top band (read_frame_code), so that tests
  /// can check the frames a decoder or loader returns. The band tells a frame-level model the
  /// time of every frame, and with it the order of the frames: leave it out when such a model is
  /// a baseline that must not see the order (the demo's frame-averaging 2D network). Without
  /// it the band stays background and shapes still keep out of it.
  bool frame_code = true;

  SynthOptions& set_kind(std::string k) { kind = std::move(k); return *this; }
  SynthOptions& set_out(std::string o) { out = std::move(o); return *this; }
  SynthOptions& set_seed(uint64_t s) { seed = s; return *this; }
  SynthOptions& set_videos(int64_t n) { videos = n; return *this; }
  SynthOptions& set_classes(int64_t n) { classes = n; return *this; }
  SynthOptions& set_frames(int64_t n) { frames = n; return *this; }
  SynthOptions& set_size(int w, int h) { width = w; height = h; return *this; }
  SynthOptions& set_threads(int t) { threads = t; return *this; }
  SynthOptions& set_gop(int g) { gop = g; return *this; }
  SynthOptions& set_bframes(int b) { bframes = b; return *this; }
  SynthOptions& set_frame_code(bool on) { frame_code = on; return *this; }
};

/// What was written.
struct SynthSummary {
  std::string codec;                     ///< encoder used
  int64_t videos = 0;
  std::vector<std::string> files;        ///< video files, absolute, in index order
  std::vector<std::string> annotations;  ///< annotation files written
};

/// The motion classes in order; a dataset with n classes uses the first n.
const std::vector<std::string>& motion_class_names();

/// Writes the dataset. Throws holo::Error for bad options, holo::IoError when the folder
/// cannot be written.
SynthSummary synthesize(const SynthOptions& options);

}  // namespace holo::pipeline
