#include "train/metrics.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace holo {

// ---- Classification ----------------------------------------------------------------------

ClassificationMeter::ClassificationMeter(int64_t num_classes, bool confusion)
    : num_classes_(num_classes), confusion_(confusion) {
  HOLO_CHECK(num_classes > 0, "a classification meter needs at least one class, got " +
                                  std::to_string(num_classes));
  sums_.assign(static_cast<size_t>(sums_size(num_classes, confusion)), 0);
}

int64_t ClassificationMeter::sums_size(int64_t num_classes, bool confusion) {
  return kHeader + 2 * num_classes + (confusion ? num_classes * num_classes : 0);
}

void ClassificationMeter::add_ranked(int64_t label, int64_t predicted, int64_t rank) {
  if (label < 0 || label >= num_classes_) {
    throw Error("classification metrics: label " + std::to_string(label) + " is outside [0, " +
                std::to_string(num_classes_) + ")");
  }
  HOLO_CHECK(predicted >= 0 && predicted < num_classes_,
             "predicted class " + std::to_string(predicted) + " out of range");
  sums_[kCount] += 1;
  sums_[kTop1] += rank < 1 ? 1 : 0;
  sums_[kTop5] += rank < 5 ? 1 : 0;
  sums_[kHeader + label] += 1;
  sums_[kHeader + num_classes_ + label] += rank < 1 ? 1 : 0;
  if (confusion_) sums_[kHeader + 2 * num_classes_ + label * num_classes_ + predicted] += 1;
}

void ClassificationMeter::add(const float* scores, const int64_t* labels, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float* row = scores + i * num_classes_;
    const int64_t label = labels[i];
    if (label < 0 || label >= num_classes_) {
      throw Error("classification metrics: row " + std::to_string(i) + " has label " +
                  std::to_string(label) + ", outside [0, " + std::to_string(num_classes_) + ")");
    }
    // Rank of the true class in a stable descending order: classes with a higher score, and
    // classes with an equal score and a lower index, come first.
    const float s = row[label];
    int64_t rank = 0;
    int64_t predicted = 0;
    for (int64_t c = 0; c < num_classes_; ++c) {
      if (row[c] > s || (row[c] == s && c < label)) ++rank;
      if (row[c] > row[predicted]) predicted = c;
    }
    add_ranked(label, predicted, rank);
  }
}

void ClassificationMeter::add(const std::vector<float>& scores,
                              const std::vector<int64_t>& labels) {
  HOLO_CHECK(scores.size() == labels.size() * static_cast<size_t>(num_classes_),
             "classification metrics: " + std::to_string(scores.size()) + " scores for " +
                 std::to_string(labels.size()) + " labels and " + std::to_string(num_classes_) +
                 " classes");
  add(scores.data(), labels.data(), static_cast<int64_t>(labels.size()));
}

void ClassificationMeter::merge(const ClassificationMeter& other) {
  HOLO_CHECK(other.num_classes_ == num_classes_ && other.confusion_ == confusion_,
             "merging classification meters of different shapes");
  for (size_t i = 0; i < sums_.size(); ++i) sums_[i] += other.sums_[i];
}

void ClassificationMeter::reset() { std::fill(sums_.begin(), sums_.end(), 0); }

double ClassificationMeter::top1() const {
  return count() == 0 ? 0.0 : static_cast<double>(top1_correct()) / count();
}

double ClassificationMeter::top5() const {
  return count() == 0 ? 0.0 : static_cast<double>(top5_correct()) / count();
}

int64_t ClassificationMeter::class_count(int64_t c) const {
  HOLO_CHECK(c >= 0 && c < num_classes_, "class index out of range");
  return sums_[kHeader + c];
}

int64_t ClassificationMeter::class_correct(int64_t c) const {
  HOLO_CHECK(c >= 0 && c < num_classes_, "class index out of range");
  return sums_[kHeader + num_classes_ + c];
}

std::vector<std::optional<double>> ClassificationMeter::per_class_accuracy() const {
  std::vector<std::optional<double>> out(static_cast<size_t>(num_classes_));
  for (int64_t c = 0; c < num_classes_; ++c) {
    if (class_count(c) > 0) out[c] = static_cast<double>(class_correct(c)) / class_count(c);
  }
  return out;
}

double ClassificationMeter::mean_class_accuracy() const {
  double sum = 0.0;
  int64_t seen = 0;
  for (const auto& a : per_class_accuracy()) {
    if (a) {
      sum += *a;
      ++seen;
    }
  }
  return seen == 0 ? 0.0 : sum / seen;
}

int64_t ClassificationMeter::confusion(int64_t truth, int64_t predicted) const {
  HOLO_CHECK(confusion_, "this classification meter keeps no confusion counts");
  HOLO_CHECK(truth >= 0 && truth < num_classes_ && predicted >= 0 && predicted < num_classes_,
             "confusion index out of range");
  return sums_[kHeader + 2 * num_classes_ + truth * num_classes_ + predicted];
}

// ---- Multi-label -------------------------------------------------------------------------

namespace {

/// AP over the rows `rows` of column `tag` of row-major matrices with `stride` columns.
std::optional<double> column_ap(const float* scores, const float* targets, int64_t stride,
                                int64_t tag, const std::vector<int64_t>& rows) {
  int64_t positives = 0;
  for (int64_t r : rows) positives += targets[r * stride + tag] > 0.5f ? 1 : 0;
  if (positives == 0) return std::nullopt;
  std::vector<int64_t> order(rows);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return scores[a * stride + tag] > scores[b * stride + tag];
  });
  // Walk the thresholds from the highest score down; a run of equal scores is one threshold.
  double ap = 0.0;
  int64_t tp = 0;
  int64_t seen = 0;
  int64_t previous_tp = 0;
  const size_t n = order.size();
  for (size_t i = 0; i < n;) {
    const float s = scores[order[i] * stride + tag];
    size_t j = i;
    while (j < n && scores[order[j] * stride + tag] == s) {
      tp += targets[order[j] * stride + tag] > 0.5f ? 1 : 0;
      ++seen;
      ++j;
    }
    if (tp != previous_tp) {
      const double recall_step = static_cast<double>(tp - previous_tp) / positives;
      const double precision = static_cast<double>(tp) / seen;
      ap += recall_step * precision;
      previous_tp = tp;
    }
    i = j;
  }
  return ap;
}

}  // namespace

std::optional<double> average_precision(const std::vector<float>& scores,
                                        const std::vector<float>& targets) {
  HOLO_CHECK(scores.size() == targets.size(),
             "average precision: " + std::to_string(scores.size()) + " scores and " +
                 std::to_string(targets.size()) + " targets");
  std::vector<int64_t> rows(scores.size());
  std::iota(rows.begin(), rows.end(), 0);
  return column_ap(scores.data(), targets.data(), 1, 0, rows);
}

void check_tag_groups(const std::vector<TagGroup>& groups, int64_t num_tags) {
  for (const auto& g : groups) {
    for (int64_t t : g.tags) {
      if (t < 0 || t >= num_tags) {
        throw Error("tag group '" + g.name + "' holds tag index " + std::to_string(t) +
                    ", outside [0, " + std::to_string(num_tags) + ")");
      }
    }
  }
}

MultiLabelMeter::MultiLabelMeter(int64_t num_tags) : num_tags_(num_tags) {
  HOLO_CHECK(num_tags > 0, "a multi-label meter needs at least one tag");
}

void MultiLabelMeter::add(const float* scores, const float* targets, int64_t n) {
  scores_.insert(scores_.end(), scores, scores + n * num_tags_);
  targets_.insert(targets_.end(), targets, targets + n * num_tags_);
  count_ += n;
}

void MultiLabelMeter::add(const std::vector<float>& scores, const std::vector<float>& targets) {
  HOLO_CHECK(scores.size() == targets.size() && scores.size() % num_tags_ == 0,
             "multi-label metrics: " + std::to_string(scores.size()) + " scores and " +
                 std::to_string(targets.size()) + " targets for " + std::to_string(num_tags_) +
                 " tags");
  add(scores.data(), targets.data(), static_cast<int64_t>(scores.size()) / num_tags_);
}

void MultiLabelMeter::merge(const MultiLabelMeter& other) {
  HOLO_CHECK(other.num_tags_ == num_tags_, "merging multi-label meters of different widths");
  add(other.scores_.data(), other.targets_.data(), other.count_);
}

void MultiLabelMeter::reset() {
  scores_.clear();
  targets_.clear();
  count_ = 0;
}

MultiLabelResult MultiLabelMeter::compute(const std::vector<TagGroup>& groups) const {
  std::vector<TagGroup> all;
  if (groups.empty()) {
    all.push_back({"all", std::vector<int64_t>(static_cast<size_t>(num_tags_))});
    std::iota(all[0].tags.begin(), all[0].tags.end(), 0);
  }
  const std::vector<TagGroup>& use = groups.empty() ? all : groups;
  check_tag_groups(use, num_tags_);
  const auto masks = category_masks(targets_.data(), count_, num_tags_, use);

  MultiLabelResult result;
  double sum = 0.0;
  int64_t with_map = 0;
  for (size_t g = 0; g < use.size(); ++g) {
    GroupAP out;
    out.name = use[g].name;
    std::vector<int64_t> rows;
    for (int64_t r = 0; r < count_; ++r) {
      // The implicit group "all" keeps every video, untagged ones included.
      if (masks[g][r] || groups.empty()) rows.push_back(r);
    }
    out.videos = static_cast<int64_t>(rows.size());
    double tag_sum = 0.0;
    for (int64_t t : use[g].tags) {
      auto ap = column_ap(scores_.data(), targets_.data(), num_tags_, t, rows);
      if (ap) {
        tag_sum += *ap;
        ++out.tags_scored;
      }
      out.tag_ap.push_back(ap);
    }
    if (out.tags_scored > 0) {
      out.map = tag_sum / out.tags_scored;
      sum += *out.map;
      ++with_map;
    }
    result.groups.push_back(std::move(out));
  }
  if (with_map > 0) result.overall = sum / with_map;
  return result;
}

std::vector<std::vector<uint8_t>> category_masks(const float* targets, int64_t n,
                                                 int64_t num_tags,
                                                 const std::vector<TagGroup>& groups) {
  check_tag_groups(groups, num_tags);
  std::vector<std::vector<uint8_t>> masks(groups.size(),
                                          std::vector<uint8_t>(static_cast<size_t>(n), 0));
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int64_t r = 0; r < n; ++r) {
      const float* row = targets + r * num_tags;
      for (int64_t t : groups[g].tags) {
        if (row[t] > 0.5f) {
          masks[g][r] = 1;
          break;
        }
      }
    }
  }
  return masks;
}

}  // namespace holo
