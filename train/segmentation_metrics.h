#pragma once
/// Temporal action segmentation metrics (thesis §2.10.3-2.10.6), computed as MS-TCN's evaluation
/// does (eval.py of its release, the figures the field compares against): MoF over every frame,
/// Edit (normalised Levenshtein distance of the segment label sequences, per video, averaged)
/// and F1@{10,25,50} (true and false positives summed over the videos, then precision, recall
/// and F1), background segments excluded from Edit and F1. IoD (§2.10.5, the code of Ding and
/// Xu 2018 that the thesis adopts) and the matching score (§2.10.4, Lambert's edit_distance
/// package that MuCon's release uses) complete them. No torch here: labels are strings, as in
/// groundTruth files. docs/segmentation.md names every choice.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace holo::train::seg {

/// A run of equal frame labels: frames [start, end).
struct Segment {
  std::string label;
  int64_t start = 0;
  int64_t end = 0;
};

/// The runs of equal labels of `frames`, in order, those whose label is in `background` left
/// out.
std::vector<Segment> segments(const std::vector<std::string>& frames, const std::set<std::string>& background = {});

/// The labels of segments(frames, background) in order: the video's transcript.
std::vector<std::string> transcript(const std::vector<std::string>& frames,
                                    const std::set<std::string>& background = {});

/// Levenshtein distance of two label sequences (insertions, deletions, substitutions cost 1).
int64_t levenshtein(const std::vector<std::string>& a, const std::vector<std::string>& b);

/// MS-TCN's Edit score of one video, 0..100: (1 - levenshtein / the longer transcript's length)
/// x 100 over the transcripts without background. Two empty transcripts score 100.
double edit_score(const std::vector<std::string>& pred, const std::vector<std::string>& gt,
                  const std::set<std::string>& background);

struct F1Counts {
  double tp = 0, fp = 0, fn = 0;
};

/// MS-TCN's segment matching at IoU threshold `overlap` (0.1, 0.25, 0.5): each predicted
/// segment (background excluded) goes to the ground-truth segment of the same label with the
/// highest IoU; a true positive when that IoU reaches `overlap` and the ground-truth segment is
/// not yet taken, else a false positive; ground-truth segments left untaken are false
/// negatives. Segment ends follow MS-TCN: the last segment of a video ends at its last frame's
/// index (one frame short), every other at the next segment's first frame.
F1Counts f1_counts(const std::vector<std::string>& pred, const std::vector<std::string>& gt, double overlap,
                   const std::set<std::string>& background);

/// F1 from summed counts, 0..100 (0 when there is nothing to score).
double f1_score(const F1Counts& c);

/// IoD of one video, 0..1: over the ground-truth segments (background excluded), the mean of the
/// largest |gt ∩ pred| / |pred| of a predicted segment of the same label. A video without
/// ground-truth segments has none (returns a negative value).
double iod(const std::vector<std::string>& pred, const std::vector<std::string>& gt,
           const std::set<std::string>& background);

/// Matching score of two transcripts, 0..1: 2 x matches / (|gt| + |pred|), the matches of a
/// minimal edit alignment (ties between edits broken as Lambert's edit_distance package does:
/// substitution or match first, then insertion, then deletion). Two empty transcripts score 1.
double matching_score(const std::vector<std::string>& gt, const std::vector<std::string>& pred);

/// The metrics of a set of videos.
class SegmentationMeter {
 public:
  explicit SegmentationMeter(std::set<std::string> background, std::vector<double> overlaps = {0.1, 0.25, 0.5});
  /// Adds one video's frame labels; both have the same length (a holo::Error naming `video`
  /// otherwise).
  void add(const std::string& video, const std::vector<std::string>& gt, const std::vector<std::string>& pred);
  int64_t videos() const { return videos_; }
  int64_t frames() const { return frames_; }
  /// Percent of frames whose label is right, over every frame of every video.
  double mof() const;
  /// Mean Edit over the videos, 0..100.
  double edit() const;
  /// F1@overlap, 0..100, for each overlap given.
  std::map<double, double> f1() const;
  /// Mean IoD over the videos with ground-truth segments, 0..100.
  double iod() const;
  /// Mean matching score of the transcripts (background included), 0..100.
  double matching() const;
  /// MoF, Edit, F1@k, IoD, matching as named values ("mof", "edit", "f1@10", ...).
  std::map<std::string, double> summary() const;
  /// Every metric is a ratio of sums: these sums, to be added over ranks that each scored a
  /// share of the videos. merge_sums() adds such sums into this meter.
  std::map<std::string, double> sums() const;
  void merge_sums(const std::map<std::string, double>& sums);

 private:
  std::set<std::string> background_;
  std::vector<double> overlaps_;
  int64_t videos_ = 0, frames_ = 0, correct_ = 0;
  double edit_sum_ = 0, iod_sum_ = 0, matching_sum_ = 0;
  int64_t iod_videos_ = 0;
  std::vector<F1Counts> f1_;
};

/// (mapping.txt, groundTruth files and bundles are read by pipeline/segmentation_data.h.)

/// Evaluates every groundTruth file `<gt_dir>/<video>.txt` against `<pred_dir>/<video>.txt`:
/// each prediction must exist with one label per frame, every label known to `mapping_file`,
/// and at least one video (a holo::Error naming the file otherwise). `background`: labels
/// excluded from Edit, F1 and IoD (each must be in the mapping). `bundle`, when not empty: only
/// the videos that split file lists ("<video>.txt" lines), each of which must have ground truth.
SegmentationMeter evaluate_segmentation_dirs(const std::string& gt_dir, const std::string& pred_dir,
                                             const std::string& mapping_file,
                                             const std::set<std::string>& background, const std::string& bundle = "");

}  // namespace holo::train::seg
