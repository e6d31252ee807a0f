#pragma once
/// Per-frame features for temporal action segmentation in MS-TCN's layout (Breakfast, 50Salads,
/// GTEA, Hollywood Extended):
///
///   <root>/features/<video>.npy        D x T float32, C order
///   <root>/groundTruth/<video>.txt     one label name per frame (T lines)
///   <root>/mapping.txt                 "<id> <name>" lines, ids 0, 1, 2, ...
///   <root>/splits/<split>.bundle       one "<video>.txt" per line (the recipe's data.train and
///                                      data.val name such files)
///
/// Frames are subsampled by `sample_rate` (50Salads: 2, 30 fps features read at 15) as MS-TCN
/// reads them: frames 0, r, 2r, ... of both features and labels. Weak labels come from the
/// ground truth: the transcript (segment labels in order, consecutive repeats merged) and the
/// action set (the distinct labels). No torch here; docs/segmentation.md.

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace holo::pipeline {

/// A 2-D float32 array of an .npy file, row-major.
struct NpyMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> values;
};

/// Reads an .npy file (format 1.0 to 3.0) holding a 2-D little-endian float32 array in C order.
/// Anything else (another dtype, Fortran order, another rank, a truncated file) is an IoError
/// naming the file and what it holds.
NpyMatrix read_npy_matrix(const std::string& path);

/// Writes `m` as an .npy file (format 1.0) that numpy.load reads.
void write_npy_matrix(const std::string& path, const NpyMatrix& m);

/// The class names of an MS-TCN mapping.txt ("<id> <name>" lines, blank lines skipped), by id.
/// An IoError names the file and line of a malformed line or a repeated id, and a gap in the
/// ids 0, 1, 2, ...
std::vector<std::string> read_mapping(const std::string& path);

/// Frame labels of a groundTruth-format file (one label per line; blank lines at the end
/// ignored, a blank line among labels an error). Every label must be in `known` unless `known`
/// is empty (an IoError naming the file and line otherwise).
std::vector<std::string> read_frame_labels(const std::string& path, const std::set<std::string>& known = {});

/// The entries of a split bundle ("<video>.txt" lines; blank lines skipped): each video's name
/// without ".txt" and its line number.
std::vector<std::pair<std::string, int64_t>> read_bundle(const std::string& path);

/// The bytes of an .npy file (format 1.0) holding `m`, as numpy.load reads it.
std::string npy_bytes(const NpyMatrix& m);

struct SegmentationDataOptions {
  std::string root;             ///< the layout's folder
  std::string bundle;           ///< the split: a bundle file, e.g. <root>/splits/train.split1.bundle
  int64_t sample_rate = 1;      ///< keep every sample_rate-th frame
  std::set<std::string> background = {"background"};  ///< labels that are background (Breakfast: SIL)
  /// Where a video's D x T features come from, by its name; empty: <root>/features/<name>.npy.
  /// (train/segmentation_task.cc reads a feature store through it: data.features.)
  std::function<NpyMatrix(const std::string& name)> features;
  /// Where features() reads from, for messages.
  std::string features_source;
};

struct SegmentationVideo {
  std::string name;             ///< the bundle's entry without ".txt"
  NpyMatrix features;           ///< D x T after subsampling
  std::vector<int64_t> labels;  ///< T class ids

  /// Class ids of the segments in order (consecutive repeats merged), background included.
  std::vector<int64_t> transcript() const;
  /// The distinct class ids, ascending.
  std::vector<int64_t> action_set() const;
};

/// The videos of one split. Throws an IoError naming the file (and line) for: a missing file, a
/// label not in mapping.txt, features whose frame count differs from the labels', features of
/// another dimension than the first video's, a non-float32 or Fortran-order array, an empty split,
/// and a background label the mapping lacks.
class SegmentationDataset {
 public:
  explicit SegmentationDataset(const SegmentationDataOptions& options);
  const std::vector<std::string>& class_names() const { return class_names_; }
  const std::vector<SegmentationVideo>& videos() const { return videos_; }
  std::vector<int64_t> background_ids() const;
  int64_t feature_dim() const { return videos_.front().features.rows; }
  int64_t frames() const;  ///< all videos' frames

 private:
  SegmentationDataOptions options_;
  std::vector<std::string> class_names_;
  std::vector<SegmentationVideo> videos_;
};

}  // namespace holo::pipeline
