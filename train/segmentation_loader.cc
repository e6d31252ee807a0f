#include "train/segmentation_loader.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/run_dir.h"
#include "dist/communicator.h"
#include "train/table.h"
#include "core/json_numbers.h"
#include "pipeline/feature_store.h"

namespace holo::train {
namespace {

/// Whole videos, `batch` per rank per step, in an order drawn per epoch from the seed; drops
/// the epoch's last incomplete global batch. The state's cursor counts videos all ranks took
/// together, so a state resumes on any number of ranks; after complete_epoch() (a resume on
/// another number) the videos left in the epoch that do not fill a whole global batch go into one
/// uneven last step, so that none of them is skipped.
class VideoLoader : public StepLoader {
 public:
  VideoLoader(const std::vector<pipeline::SegmentationVideo>& videos, int64_t batch, int rank, int ranks, uint64_t seed)
      : videos_(videos), batch_(batch), rank_(rank), ranks_(ranks), seed_(seed) {}
  void set_epoch(int64_t epoch) override {
    epoch_ = epoch;
    cursor_ = 0;
    complete_ = false;
    order_.resize(videos_.size());
    std::iota(order_.begin(), order_.end(), 0);
    std::mt19937_64 rng(seed_ * 1000003u + static_cast<uint64_t>(epoch));
    std::shuffle(order_.begin(), order_.end(), rng);
  }
  std::unique_ptr<StepBatch> next() override {
    if (batches_left() == 0) return nullptr;
    const int64_t left = static_cast<int64_t>(videos_.size()) - cursor_;
    std::vector<int64_t> mine;
    double weight = 1.0;
    if (left >= batch_ * ranks_) {
      const auto first = order_.begin() + cursor_ + rank_ * batch_;
      mine.assign(first, first + batch_);
      cursor_ += batch_ * ranks_;
    } else {
      // The uneven last step: the videos left, dealt round-robin. A rank's mean loss weighs
      // n_rank * ranks / left, so that the ranks' average is the mean over the videos; a rank
      // without one trains on the first video left with weight 0, only to keep its place in
      // the step's collectives.
      for (int64_t k = rank_; k < left; k += ranks_) mine.push_back(order_[cursor_ + k]);
      if (mine.empty()) {
        mine.push_back(order_[cursor_]);
        weight = 0.0;
      } else {
        weight = static_cast<double>(mine.size()) * ranks_ / static_cast<double>(left);
      }
      cursor_ += left;
    }
    auto batch = std::make_unique<StepBatch>();
    batch->samples = std::move(mine);
    batch->weight = weight;
    return batch;
  }
  int64_t batches_per_epoch() const override { return static_cast<int64_t>(videos_.size()) / (batch_ * ranks_); }
  int64_t batches_left() const override {
    const int64_t left = static_cast<int64_t>(videos_.size()) - cursor_;
    const int64_t whole = left / (batch_ * ranks_);
    return whole + (complete_ && left % (batch_ * ranks_) > 0 ? 1 : 0);
  }
  void complete_epoch() override { complete_ = true; }
  nlohmann::json state() const override { return {{"epoch", epoch_}, {"cursor", cursor_}, {"seed", seed_}}; }
  void load_state(const nlohmann::json& j) override {
    set_epoch(json_number_at<int64_t>(j, "epoch"));
    cursor_ = json_number_at<int64_t>(j, "cursor");
  }

 private:
  const std::vector<pipeline::SegmentationVideo>& videos_;
  int64_t batch_;
  int rank_, ranks_;
  uint64_t seed_;
  int64_t epoch_ = 0, cursor_ = 0;
  bool complete_ = false;
  std::vector<int64_t> order_;
};

}  // namespace

pipeline::SegmentationDataOptions segmentation_data_options(const Recipe& r, const std::string& bundle) {
  pipeline::SegmentationDataOptions o;
  o.root = r.data.root;
  o.bundle = bundle;
  o.sample_rate = r.data.sample_rate;
  o.background = {r.data.background.begin(), r.data.background.end()};
  if (!r.data.features.empty()) {
    // A feature store of holo extract --per-frame: frames x D per video id.
    auto reader = std::make_shared<pipeline::FeatureReader>(r.data.features);
    o.features_source = r.data.features;
    o.features = [reader, store = r.data.features](const std::string& name) {
      if (!reader->contains(name)) throw IoError(store + ": no features of video '" + name + "'");
      const torch::Tensor f = reader->read(name).to(torch::kFloat32);
      if (f.dim() != 2) {
        throw IoError(store + ": the features of '" + name + "' are not frames x D (holo extract --per-frame)");
      }
      const torch::Tensor t = f.t().contiguous();  // D x T
      pipeline::NpyMatrix m{t.size(0), t.size(1), {}};
      m.values.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
      return m;
    };
  }
  return o;
}

VideoSequences pad_videos(const std::vector<pipeline::SegmentationVideo>& videos, const std::vector<int64_t>& which) {
  int64_t longest = 0;
  for (int64_t i : which) longest = std::max(longest, static_cast<int64_t>(videos[i].labels.size()));
  const auto n = static_cast<int64_t>(which.size());
  const int64_t dim = videos.front().features.rows;
  VideoSequences b;
  b.features = torch::zeros({n, dim, longest});
  b.labels = torch::full({n, longest}, -100, torch::kInt64);
  b.mask = torch::zeros({n, longest});
  for (int64_t k = 0; k < n; ++k) {
    const auto& v = videos[which[k]];
    const auto t = static_cast<int64_t>(v.labels.size());
    b.features[k].narrow(1, 0, t).copy_(
        torch::from_blob(const_cast<float*>(v.features.values.data()), {dim, t}, torch::kFloat32));
    b.labels[k].narrow(0, 0, t).copy_(torch::tensor(v.labels, torch::kInt64));
    b.mask[k].narrow(0, 0, t).fill_(1.0);
  }
  return b;
}

/// FNV-1a over the videos' names, labels and features: a checkpoint of other data is refused.
std::string content_hash(const pipeline::SegmentationDataset& d) {
  uint64_t h = 1469598103934665603ull;
  const auto add = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const auto& v : d.videos()) {
    add(v.name.data(), v.name.size());
    add(v.labels.data(), v.labels.size() * sizeof(int64_t));
    add(v.features.values.data(), v.features.values.size() * sizeof(float));
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

torch::Tensor video_features(const pipeline::SegmentationVideo& v, const torch::Device& device) {
  return torch::from_blob(const_cast<float*>(v.features.values.data()), {1, v.features.rows, v.features.cols},
                          torch::kFloat32)
      .to(device);
}

void check_min_frames(const pipeline::SegmentationDataset& data, const std::string& bundle, int64_t frames,
                      const std::string& what) {
  for (const auto& v : data.videos()) {
    if (static_cast<int64_t>(v.labels.size()) < frames) {
      throw IoError(bundle + ": video '" + v.name + "' has " + std::to_string(v.labels.size()) +
                    " frames (after data.sample_rate); " + what + " need at least " + std::to_string(frames));
    }
  }
}

std::unique_ptr<StepLoader> make_video_loader(const std::vector<pipeline::SegmentationVideo>& videos, int64_t batch,
                                              int rank, int ranks, uint64_t seed) {
  return std::make_unique<VideoLoader>(videos, batch, rank, ranks, seed);
}

std::string segmentation_eval_bundle(const Recipe& recipe) {
  const std::string& split = recipe.eval.split;
  const std::string bundle = split == "test" ? recipe.data.test : recipe.data.val;
  if (bundle.empty()) {
    throw RecipeError("[data]", 0, 0, "data." + split, "is not set: the " + split + " split's bundle to evaluate on");
  }
  return bundle;
}

void add_prediction(seg::SegmentationMeter& meter, const pipeline::SegmentationVideo& video,
                    const std::vector<std::string>& class_names, const std::vector<int64_t>& predicted,
                    const std::string& predictions) {
  std::vector<std::string> gt, pred;
  std::string text;
  for (size_t t = 0; t < video.labels.size(); ++t) {
    gt.push_back(class_names[static_cast<size_t>(video.labels[t])]);
    pred.push_back(class_names[static_cast<size_t>(predicted[t])]);
    text += pred.back() + "\n";
  }
  if (!predictions.empty()) write_file_atomic(predictions + "/" + video.name + ".txt", text);
  meter.add(video.name, gt, pred);
}

std::string prepare_predictions(const std::string& out_dir, const std::string& split, bool save, const Runtime& rt) {
  if (!save) return "";
  const std::string predictions = (std::filesystem::path(out_dir) / ("predictions-" + split)).string();
  if (rt.rank == 0) {
    std::filesystem::remove_all(predictions);
    std::filesystem::create_directories(predictions);
  }
  rt.comm->barrier();
  return predictions;
}

void report_segmentation_eval(const seg::SegmentationMeter& all, const Stats& extra, const std::string& checkpoint,
                              int64_t step, const std::string& split, const std::string& bundle,
                              const std::string& out_dir, const Runtime& rt, EvalResult& result) {
  result.metrics = all.summary();
  result.metrics["videos"] = static_cast<double>(all.videos());
  for (const auto& [k, v] : extra) result.metrics[k] = v;
  TextTable table({"metric", "value"});
  table.add_row({"videos", std::to_string(all.videos())});
  table.add_row({"frames", std::to_string(all.frames())});
  for (const auto& [k, v] : result.metrics) {
    if (k != "videos") table.add_row({k, TextTable::number(v, 2)});
  }
  result.table = "checkpoint " + checkpoint + " (step " + std::to_string(step) + "), split " + split + " (" + bundle +
                 ")\n" + table.str();
  if (rt.rank == 0) {
    std::filesystem::create_directories(out_dir);
    nlohmann::json j = {{"checkpoint", checkpoint}, {"step", step}, {"split", split}, {"bundle", bundle}};
    for (const auto& [k, v] : result.metrics) j["metrics"][k] = v;
    write_file_atomic((std::filesystem::path(out_dir) / ("eval-" + split + ".json")).string(), j.dump(2));
  }
}

}  // namespace holo::train
