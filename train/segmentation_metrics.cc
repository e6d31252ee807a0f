#include "train/segmentation_metrics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "pipeline/segmentation_data.h"

namespace holo::train::seg {
namespace fs = std::filesystem;

std::vector<Segment> segments(const std::vector<std::string>& frames, const std::set<std::string>& background) {
  std::vector<Segment> out;
  const auto n = static_cast<int64_t>(frames.size());
  for (int64_t start = 0; start < n;) {
    int64_t end = start + 1;
    while (end < n && frames[end] == frames[start]) ++end;
    if (!background.count(frames[start])) out.push_back({frames[start], start, end});
    start = end;
  }
  return out;
}

std::vector<std::string> transcript(const std::vector<std::string>& frames, const std::set<std::string>& background) {
  std::vector<std::string> out;
  for (const auto& s : segments(frames, background)) out.push_back(s.label);
  return out;
}

int64_t levenshtein(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

double edit_score(const std::vector<std::string>& pred, const std::vector<std::string>& gt,
                  const std::set<std::string>& background) {
  const auto p = transcript(pred, background), y = transcript(gt, background);
  const size_t longest = std::max(p.size(), y.size());
  if (longest == 0) return 100.0;
  return (1.0 - static_cast<double>(levenshtein(p, y)) / static_cast<double>(longest)) * 100.0;
}

namespace {

/// MS-TCN's segment bounds (get_labels_start_end_time): a segment ends at the next segment's
/// first frame, and the video's last segment at its last frame's index.
std::vector<Segment> mstcn_segments(const std::vector<std::string>& frames, const std::set<std::string>& background) {
  std::vector<Segment> out = segments(frames, background);
  const auto n = static_cast<int64_t>(frames.size());
  if (!out.empty() && out.back().end == n) out.back().end = n - 1;
  return out;
}

}  // namespace

F1Counts f1_counts(const std::vector<std::string>& pred, const std::vector<std::string>& gt, double overlap,
                   const std::set<std::string>& background) {
  const auto p = mstcn_segments(pred, background), y = mstcn_segments(gt, background);
  F1Counts c;
  std::vector<bool> hit(y.size(), false);
  for (const auto& s : p) {
    // The ground-truth segment with the highest IoU (0 for another label); the first on ties.
    // A zero union (a one-frame last segment against another) is NaN in MS-TCN's code, which
    // numpy's argmax picks and which then fails the threshold: a false positive.
    double best = -std::numeric_limits<double>::infinity();
    size_t best_index = 0;
    bool undefined = false;
    for (size_t k = 0; k < y.size() && !undefined; ++k) {
      const double inter = static_cast<double>(std::min(s.end, y[k].end) - std::max(s.start, y[k].start));
      const double uni = static_cast<double>(std::max(s.end, y[k].end) - std::min(s.start, y[k].start));
      if (uni <= 0) {
        undefined = true;
        break;
      }
      const double iou = s.label == y[k].label ? inter / uni : 0.0;
      if (iou > best) {
        best = iou;
        best_index = k;
      }
    }
    if (!undefined && !y.empty() && best >= overlap && !hit[best_index]) {
      c.tp += 1;
      hit[best_index] = true;
    } else {
      c.fp += 1;
    }
  }
  c.fn = static_cast<double>(std::count(hit.begin(), hit.end(), false));
  return c;
}

double f1_score(const F1Counts& c) {
  const double precision = c.tp + c.fp > 0 ? c.tp / (c.tp + c.fp) : 0.0;
  const double recall = c.tp + c.fn > 0 ? c.tp / (c.tp + c.fn) : 0.0;
  if (precision + recall <= 0) return 0.0;
  return 2.0 * precision * recall / (precision + recall) * 100.0;
}

double iod(const std::vector<std::string>& pred, const std::vector<std::string>& gt,
           const std::set<std::string>& background) {
  const auto p = segments(pred, background), y = segments(gt, background);
  if (y.empty()) return -1.0;
  double sum = 0;
  for (const auto& g : y) {
    double best = 0;
    for (const auto& s : p) {
      if (s.label != g.label) continue;
      const double inter = static_cast<double>(std::min(s.end, g.end) - std::max(s.start, g.start));
      best = std::max(best, inter / static_cast<double>(s.end - s.start));
    }
    sum += best;
  }
  return sum / static_cast<double>(y.size());
}

double matching_score(const std::vector<std::string>& gt, const std::vector<std::string>& pred) {
  const size_t m = gt.size(), n = pred.size();
  if (m + n == 0) return 1.0;
  if (gt == pred) return 1.0;
  if (m == 0 || n == 0) return 0.0;
  // Edit costs and the matches along the chosen path, row by row (gt along the rows).
  std::vector<int64_t> cost0(n + 1), cost1(n + 1), match0(n + 1, 0), match1(n + 1, 0);
  for (size_t j = 0; j <= n; ++j) cost0[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= m; ++i) {
    cost1[0] = static_cast<int64_t>(i);
    match1[0] = 0;
    for (size_t j = 1; j <= n; ++j) {
      const int64_t differ = gt[i - 1] == pred[j - 1] ? 0 : 1;
      const int64_t ins = cost1[j - 1] + 1, del = cost0[j] + 1, sub = cost0[j - 1] + differ;
      const int64_t lowest = std::min({ins, del, sub});
      if (lowest == sub) {
        cost1[j] = sub;
        match1[j] = match0[j - 1] + (1 - differ);
      } else if (lowest == ins) {
        cost1[j] = ins;
        match1[j] = match1[j - 1];
      } else {
        cost1[j] = del;
        match1[j] = match0[j];
      }
    }
    std::swap(cost0, cost1);
    std::swap(match0, match1);
  }
  return 2.0 * static_cast<double>(match0[n]) / static_cast<double>(m + n);
}

SegmentationMeter::SegmentationMeter(std::set<std::string> background, std::vector<double> overlaps)
    : background_(std::move(background)), overlaps_(std::move(overlaps)), f1_(overlaps_.size()) {}

void SegmentationMeter::add(const std::string& video, const std::vector<std::string>& gt,
                            const std::vector<std::string>& pred) {
  if (gt.size() != pred.size()) {
    throw Error(video + ": the prediction has " + std::to_string(pred.size()) + " frames, the ground truth " +
                std::to_string(gt.size()));
  }
  ++videos_;
  frames_ += static_cast<int64_t>(gt.size());
  for (size_t i = 0; i < gt.size(); ++i) correct_ += gt[i] == pred[i] ? 1 : 0;
  edit_sum_ += edit_score(pred, gt, background_);
  for (size_t k = 0; k < overlaps_.size(); ++k) {
    const F1Counts c = f1_counts(pred, gt, overlaps_[k], background_);
    f1_[k].tp += c.tp;
    f1_[k].fp += c.fp;
    f1_[k].fn += c.fn;
  }
  const double v = seg::iod(pred, gt, background_);
  if (v >= 0) {
    iod_sum_ += v;
    ++iod_videos_;
  }
  matching_sum_ += matching_score(transcript(gt), transcript(pred));
}

double SegmentationMeter::mof() const {
  return frames_ > 0 ? 100.0 * static_cast<double>(correct_) / static_cast<double>(frames_) : 0.0;
}
double SegmentationMeter::edit() const { return videos_ > 0 ? edit_sum_ / static_cast<double>(videos_) : 0.0; }
double SegmentationMeter::iod() const {
  return iod_videos_ > 0 ? 100.0 * iod_sum_ / static_cast<double>(iod_videos_) : 0.0;
}
double SegmentationMeter::matching() const {
  return videos_ > 0 ? 100.0 * matching_sum_ / static_cast<double>(videos_) : 0.0;
}

std::map<double, double> SegmentationMeter::f1() const {
  std::map<double, double> out;
  for (size_t k = 0; k < overlaps_.size(); ++k) out[overlaps_[k]] = f1_score(f1_[k]);
  return out;
}

std::map<std::string, double> SegmentationMeter::summary() const {
  std::map<std::string, double> out = {{"mof", mof()}, {"edit", edit()}, {"iod", iod()}, {"matching", matching()}};
  for (const auto& [k, v] : f1()) out["f1@" + std::to_string(static_cast<int>(std::lround(k * 100)))] = v;
  return out;
}

std::map<std::string, double> SegmentationMeter::sums() const {
  std::map<std::string, double> out = {{"videos", static_cast<double>(videos_)},
                                       {"frames", static_cast<double>(frames_)},
                                       {"correct", static_cast<double>(correct_)},
                                       {"edit_sum", edit_sum_},
                                       {"iod_sum", iod_sum_},
                                       {"iod_videos", static_cast<double>(iod_videos_)},
                                       {"matching_sum", matching_sum_}};
  for (size_t k = 0; k < overlaps_.size(); ++k) {
    const std::string at = std::to_string(k);
    out["tp" + at] = f1_[k].tp;
    out["fp" + at] = f1_[k].fp;
    out["fn" + at] = f1_[k].fn;
  }
  return out;
}

void SegmentationMeter::merge_sums(const std::map<std::string, double>& s) {
  const auto get = [&](const std::string& key) {
    const auto it = s.find(key);
    if (it == s.end()) throw Error("segmentation metric sums without '" + key + "'");
    return it->second;
  };
  videos_ += std::llround(get("videos"));
  frames_ += std::llround(get("frames"));
  correct_ += std::llround(get("correct"));
  edit_sum_ += get("edit_sum");
  iod_sum_ += get("iod_sum");
  iod_videos_ += std::llround(get("iod_videos"));
  matching_sum_ += get("matching_sum");
  for (size_t k = 0; k < overlaps_.size(); ++k) {
    const std::string at = std::to_string(k);
    f1_[k].tp += get("tp" + at);
    f1_[k].fp += get("fp" + at);
    f1_[k].fn += get("fn" + at);
  }
}

SegmentationMeter evaluate_segmentation_dirs(const std::string& gt_dir, const std::string& pred_dir,
                                             const std::string& mapping_file,
                                             const std::set<std::string>& background, const std::string& bundle) {
  const auto names = pipeline::read_mapping(mapping_file);
  const std::set<std::string> known(names.begin(), names.end());
  for (const auto& b : background) {
    if (!known.count(b)) throw UsageError("--bg label '" + b + "' is not in " + mapping_file);
  }
  if (!fs::is_directory(gt_dir)) throw IoError("no folder '" + gt_dir + "'");
  if (!fs::is_directory(pred_dir)) throw IoError("no folder '" + pred_dir + "'");
  std::vector<fs::path> files;
  if (bundle.empty()) {
    for (const auto& e : fs::directory_iterator(gt_dir)) {
      if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) throw IoError("no ground-truth files (*.txt) in '" + gt_dir + "'");
  } else {
    for (const auto& [name, line] : pipeline::read_bundle(bundle)) {
      const fs::path gt = fs::path(gt_dir) / (name + ".txt");
      if (!fs::exists(gt)) {
        throw IoError(bundle + ":" + std::to_string(line) + ": no ground truth '" + gt.string() + "'");
      }
      files.push_back(gt);
    }
    if (files.empty()) throw IoError("'" + bundle + "' lists no video");
  }
  SegmentationMeter meter(background);
  for (const auto& gt : files) {
    const fs::path pred = fs::path(pred_dir) / gt.filename();
    if (!fs::exists(pred)) throw IoError("no prediction '" + pred.string() + "' for " + gt.string());
    const auto y = pipeline::read_frame_labels(gt.string(), known);
    const auto p = pipeline::read_frame_labels(pred.string(), known);
    if (y.size() != p.size()) {
      throw IoError(pred.string() + ": " + std::to_string(p.size()) + " frame labels, the ground truth " +
                    gt.string() + " has " + std::to_string(y.size()));
    }
    meter.add(gt.stem().string(), y, p);
  }
  return meter;
}

}  // namespace holo::train::seg
