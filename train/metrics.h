#pragma once
/// Evaluation metrics on plain arrays (no LibTorch here; train/metrics_torch.h adds tensor
/// overloads and the multi-task loss).
///
/// - Single-label classification: top-1, top-5, mean class accuracy, confusion counts, kept as
///   integer sums so batches and ranks accumulate exactly (all-reduce `sums()` with kSum).
/// - Multi-label (HVU): average precision from the step precision-recall curve, exactly as
///   scikit-learn's `average_precision_score`; tags with no positives are skipped; mAP per
///   category over the videos that have at least one tag of that category; overall = mean of
///   the category mAPs. Scores are kept per video because AP is not a sum: ranks gather them.
///
/// The decisions behind each definition are written down in docs/metrics.md.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace holo {

/// Accumulates single-label predictions. Scores may be logits or probabilities: only their
/// order within a row matters. Ties are broken towards the lower class index (as argmax and a
/// stable descending sort do), so a row of equal scores predicts class 0.
class ClassificationMeter {
 public:
  /// `confusion` keeps the num_classes x num_classes confusion counts (truth row, top-1
  /// prediction column); they are part of `sums()` when kept.
  explicit ClassificationMeter(int64_t num_classes, bool confusion = true);

  /// Adds `n` rows: `scores` is row-major n x num_classes, `labels` n class indices.
  /// Throws holo::Error naming the row when a label is outside [0, num_classes).
  void add(const float* scores, const int64_t* labels, int64_t n);
  /// Same with vectors; scores.size() must be labels.size() * num_classes.
  void add(const std::vector<float>& scores, const std::vector<int64_t>& labels);
  /// Adds rows whose top-1 prediction and true-class rank are already known (e.g. computed on
  /// a GPU): `rank` is the number of classes ordered before the true class (0 = top-1 hit).
  void add_ranked(int64_t label, int64_t predicted, int64_t rank);

  /// Adds another meter's sums (same number of classes and confusion setting).
  void merge(const ClassificationMeter& other);
  void reset();

  int64_t num_classes() const { return num_classes_; }
  bool has_confusion() const { return confusion_; }
  int64_t count() const { return sums_[kCount]; }
  int64_t top1_correct() const { return sums_[kTop1]; }
  int64_t top5_correct() const { return sums_[kTop5]; }
  /// Fractions in [0, 1]; 0 when nothing was added. With fewer than five classes top-5 counts
  /// every row as correct.
  double top1() const;
  double top5() const;
  /// Mean over the classes that have at least one sample of (correct top-1 / samples).
  double mean_class_accuracy() const;
  /// Per class: samples seen, top-1 hits, and the accuracy (nullopt for a class never seen).
  int64_t class_count(int64_t c) const;
  int64_t class_correct(int64_t c) const;
  std::vector<std::optional<double>> per_class_accuracy() const;
  /// Rows whose true class is `truth` and top-1 prediction `predicted`. Throws without
  /// confusion counts.
  int64_t confusion(int64_t truth, int64_t predicted) const;

  /// The raw integer sums, laid out as [count, top1, top5, class counts (C), class hits (C),
  /// confusion (C*C, row = truth) when kept]. Summing this vector element-wise over ranks
  /// (an all-reduce with kSum) gives the meter of all ranks together.
  const std::vector<int64_t>& sums() const { return sums_; }
  std::vector<int64_t>& mutable_sums() { return sums_; }
  /// Number of elements of sums() for these settings.
  static int64_t sums_size(int64_t num_classes, bool confusion);

 private:
  static constexpr int64_t kCount = 0;
  static constexpr int64_t kTop1 = 1;
  static constexpr int64_t kTop5 = 2;
  static constexpr int64_t kHeader = 3;

  int64_t num_classes_;
  bool confusion_;
  std::vector<int64_t> sums_;
};

/// Average precision of one binary problem from the step precision-recall curve:
/// AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, highest first, with tied
/// scores forming one threshold (scikit-learn's `average_precision_score`). A target counts as
/// positive when > 0.5. nullopt when there is no positive (scikit-learn warns and returns a
/// meaningless value there; we skip the tag). Throws holo::Error on mismatched sizes.
std::optional<double> average_precision(const std::vector<float>& scores,
                                        const std::vector<float>& targets);

/// A group of tags evaluated together: an HVU category (action, attribute, concept, event,
/// object, scene) and its global tag indices. Also the tag set of one multi-task head, whose
/// outputs are in the order of `tags`.
struct TagGroup {
  std::string name;
  std::vector<int64_t> tags;
};

/// Result of one group.
struct GroupAP {
  std::string name;
  std::optional<double> map;                ///< mean of the scored tags' AP; nullopt if none
  int64_t videos = 0;                       ///< videos having at least one tag of the group
  int64_t tags_scored = 0;                  ///< tags with at least one positive among them
  std::vector<std::optional<double>> tag_ap;  ///< aligned with the group's tags
};

struct MultiLabelResult {
  std::vector<GroupAP> groups;
  std::optional<double> overall;  ///< mean of the groups' mAPs that exist
};

/// Accumulates multi-label scores (probabilities or logits: AP depends on order only) and 0/1
/// targets, one row per video.
class MultiLabelMeter {
 public:
  explicit MultiLabelMeter(int64_t num_tags);

  /// Adds `n` rows, each row-major with num_tags values; a target is positive when > 0.5.
  void add(const float* scores, const float* targets, int64_t n);
  void add(const std::vector<float>& scores, const std::vector<float>& targets);
  /// Appends another meter's rows (e.g. those gathered from the other ranks).
  void merge(const MultiLabelMeter& other);
  void reset();

  int64_t num_tags() const { return num_tags_; }
  int64_t count() const { return count_; }
  /// Row-major count() x num_tags.
  const std::vector<float>& scores() const { return scores_; }
  const std::vector<float>& targets() const { return targets_; }

  /// Per group: AP of each of its tags over the videos having at least one tag of the group,
  /// tags without a positive there skipped, mAP = mean of the rest; overall = mean of the
  /// group mAPs. With no groups, one group "all" holding every tag over every video (the
  /// "standard" single-head evaluation), videos without any tag included. Throws holo::Error
  /// on a tag index out of range.
  MultiLabelResult compute(const std::vector<TagGroup>& groups = {}) const;

 private:
  int64_t num_tags_;
  int64_t count_ = 0;
  std::vector<float> scores_;
  std::vector<float> targets_;
};

/// The multi-task masking rule: for each group, one entry per video, 1 when the video has at
/// least one tag of the group (a target > 0.5), else 0. A video with a 0 contributes no loss
/// to that group's head. `targets` is row-major n x num_tags.
std::vector<std::vector<uint8_t>> category_masks(const float* targets, int64_t n,
                                                 int64_t num_tags,
                                                 const std::vector<TagGroup>& groups);

/// Throws holo::Error naming the group when a tag index is outside [0, num_tags).
void check_tag_groups(const std::vector<TagGroup>& groups, int64_t num_tags);

}  // namespace holo
