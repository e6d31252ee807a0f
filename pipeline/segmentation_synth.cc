#include "pipeline/segmentation_synth.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "pipeline/segmentation_data.h"

namespace holo::pipeline {
namespace fs = std::filesystem;

const std::vector<std::string>& segmentation_synth_classes() {
  static const std::vector<std::string> names = {"background", "take", "pour", "stir", "cut",
                                                 "peel", "fry", "crack", "serve"};
  return names;
}

namespace {

/// Mean duration in frames of each class at pace 1 (background: the gaps).
constexpr double kMeanFrames[] = {8, 12, 20, 26, 30, 22, 36, 14, 10};

/// The activities: orders of action ids.
const std::vector<std::vector<int64_t>> kActivities = {
    {1, 2, 3, 8},        // take, pour, stir, serve (tea)
    {1, 5, 4, 8},        // take, peel, cut, serve (salad)
    {1, 7, 3, 6, 8},     // take, crack, stir, fry, serve (omelette)
};

/// The kitchen order of the "subsets" grammar: every video keeps 2 to 4 of these actions, in
/// this order.
const std::vector<int64_t> kKitchenOrder = {1, 7, 5, 4, 2, 3, 6, 8};

/// A video's actions before skips and swaps.
std::vector<int64_t> draw_actions(const std::string& grammar, int64_t video, std::mt19937_64& rng) {
  if (grammar == "activities") return kActivities[static_cast<size_t>(video % static_cast<int64_t>(kActivities.size()))];
  std::uniform_int_distribution<int> count(2, 4);
  std::vector<size_t> pick(kKitchenOrder.size());
  for (size_t i = 0; i < pick.size(); ++i) pick[i] = i;
  std::shuffle(pick.begin(), pick.end(), rng);
  pick.resize(static_cast<size_t>(count(rng)));
  std::sort(pick.begin(), pick.end());
  std::vector<int64_t> actions;
  for (size_t i : pick) actions.push_back(kKitchenOrder[i]);
  return actions;
}

}  // namespace

SegmentationSynthResult write_segmentation_synth(const SegmentationSynthOptions& o) {
  if (o.out.empty()) throw UsageError("--out is required");
  if (o.videos < 4) throw UsageError("--videos must be at least 4 (three quarters train, one quarter test)");
  if (o.dim < 16) throw UsageError("segmentation features need at least 16 dimensions");
  if (o.grammar != "activities" && o.grammar != "subsets") {
    throw UsageError("--grammar must be activities or subsets, not '" + o.grammar + "'");
  }
  const auto& names = segmentation_synth_classes();
  const auto classes = static_cast<int64_t>(names.size());
  const fs::path root(o.out);
  fs::create_directories(root / "features");
  fs::create_directories(root / "groundTruth");
  fs::create_directories(root / "splits");
  std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + 11);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);

  // Class prototypes in the first 16 dimensions, each of length `amplitude`.
  std::vector<std::vector<double>> prototype(static_cast<size_t>(classes), std::vector<double>(16));
  for (auto& p : prototype) {
    double norm = 0;
    for (auto& x : p) {
      x = normal(rng);
      norm += x * x;
    }
    for (auto& x : p) x *= o.amplitude / std::sqrt(norm);
  }

  SegmentationSynthResult result;
  std::string train, test;
  for (int64_t v = 0; v < o.videos; ++v) {
    // The transcript: an activity's order, a middle action skipped now and then, two
    // neighbours swapped now and then, background around and sometimes between.
    const auto activity = draw_actions(o.grammar, v, rng);
    std::vector<int64_t> order;
    for (size_t k = 0; k < activity.size(); ++k) {
      const bool middle = k > 0 && k + 1 < activity.size();
      if (middle && uniform(rng) < 0.15) continue;
      order.push_back(activity[k]);
    }
    if (order.size() > 3 && uniform(rng) < 0.2) std::swap(order[1], order[2]);
    std::vector<int64_t> transcript = {0};
    for (size_t k = 0; k < order.size(); ++k) {
      if (k > 0 && uniform(rng) < 0.2) transcript.push_back(0);
      transcript.push_back(order[k]);
    }
    transcript.push_back(0);
    const double pace = o.pace_min + (o.pace_max - o.pace_min) * uniform(rng);
    std::vector<int64_t> labels;
    for (int64_t c : transcript) {
      const double mean = kMeanFrames[c] * pace;
      const auto frames = std::max<int64_t>(2, std::llround(mean * (0.6 + 0.8 * uniform(rng))));
      labels.insert(labels.end(), static_cast<size_t>(frames), c);
    }
    const auto t_frames = static_cast<int64_t>(labels.size());
    NpyMatrix f;
    f.rows = o.dim;
    f.cols = t_frames;
    f.values.resize(static_cast<size_t>(o.dim * t_frames));
    // A per-video offset of the class dimensions (another camera, another cook) and distractor
    // dimensions that drift slowly (an AR(1) walk) and say nothing of the label.
    std::vector<double> offset(16), drift(static_cast<size_t>(o.dim - 16), 0.0);
    for (auto& x : offset) x = 0.3 * normal(rng);
    for (int64_t t = 0; t < t_frames; ++t) {
      const auto& p = prototype[static_cast<size_t>(labels[t])];
      for (int64_t d = 0; d < 16; ++d) {
        f.values[d * t_frames + t] = static_cast<float>(p[d] + offset[d] + normal(rng));
      }
      for (int64_t d = 16; d < o.dim; ++d) {
        auto& w = drift[static_cast<size_t>(d - 16)];
        w = 0.95 * w + 0.3 * normal(rng);
        f.values[d * t_frames + t] = static_cast<float>(w + 0.5 * normal(rng));
      }
    }
    char name[32];
    std::snprintf(name, sizeof name, "video_%04lld", static_cast<long long>(v));
    write_npy_matrix((root / "features" / (std::string(name) + ".npy")).string(), f);
    std::ofstream gt(root / "groundTruth" / (std::string(name) + ".txt"));
    for (int64_t c : labels) gt << names[static_cast<size_t>(c)] << "\n";
    if (!gt) throw IoError("cannot write '" + (root / "groundTruth" / name).string() + ".txt'");
    ((v % 4 == 3) ? test : train) += std::string(name) + ".txt\n";
    ++result.videos;
    result.frames += t_frames;
  }
  std::ofstream mapping(root / "mapping.txt");
  for (int64_t c = 0; c < classes; ++c) mapping << c << " " << names[static_cast<size_t>(c)] << "\n";
  std::ofstream(root / "splits" / "train.split1.bundle") << train;
  std::ofstream(root / "splits" / "test.split1.bundle") << test;
  result.files = {(root / "mapping.txt").string(), (root / "splits" / "train.split1.bundle").string(),
                  (root / "splits" / "test.split1.bundle").string()};
  return result;
}

}  // namespace holo::pipeline
