#include "train/segmentation_task.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "core/json_numbers.h"
#include "core/run_dir.h"
#include "dist/communicator.h"
#include "pipeline/feature_store.h"
#include "train/precision.h"
#include "train/segmentation_metrics.h"
#include "train/table.h"

namespace holo::train {
namespace {

pipeline::SegmentationDataOptions data_options(const Recipe& r, const std::string& bundle) {
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

/// Videos padded to the longest of the batch; labels -100 and mask 0 past each video's end.
struct VideoSequences : StepBatch {
  torch::Tensor features;  ///< N x D x T
  torch::Tensor labels;    ///< N x T
  torch::Tensor mask;      ///< N x T
};

VideoSequences pad_videos(const std::vector<pipeline::SegmentationVideo>& videos, const std::vector<int64_t>& which) {
  int64_t longest = 0;
  for (int64_t i : which) longest = std::max(longest, static_cast<int64_t>(videos[i].labels.size()));
  const auto n = static_cast<int64_t>(which.size());
  const int64_t dim = videos.front().features.rows;
  VideoSequences b;
  b.samples = which;
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
    auto batch = std::make_unique<VideoSequences>(pad_videos(videos_, mine));
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

}  // namespace

torch::Tensor mstcn_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& mask,
                         double smoothing) {
  torch::Tensor loss = torch::zeros({}, logits.options().dtype(torch::kFloat32));
  const int64_t classes = logits.size(2);
  for (int64_t s = 0; s < logits.size(0); ++s) {
    const torch::Tensor p = logits[s].to(torch::kFloat32);  // N x C x T
    loss = loss + torch::nn::functional::cross_entropy(
                      p.transpose(2, 1).reshape({-1, classes}), labels.reshape({-1}),
                      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
    if (smoothing > 0 && p.size(2) > 1) {
      const torch::Tensor now = torch::log_softmax(p.narrow(2, 1, p.size(2) - 1), 1);
      const torch::Tensor before = torch::log_softmax(p.detach().narrow(2, 0, p.size(2) - 1), 1);
      const torch::Tensor mse = (now - before).pow(2).clamp(0, 16);
      loss = loss + smoothing * (mse * mask.narrow(1, 1, mask.size(1) - 1).unsqueeze(1)).mean();
    }
  }
  return loss;
}

SegmentationTraining::SegmentationTraining(const Recipe& recipe) : recipe_(recipe) {
  if (recipe.data.dataset != "mstcn") {
    throw RecipeError("[data]", 0, 0, "data.dataset",
                      "task.kind = \"segmentation\" trains on per-frame features: set data.dataset = \"mstcn\" "
                      "(MS-TCN's layout), not \"" + recipe.data.dataset + "\"");
  }
  if (recipe.model.name != "mstcn") {
    throw RecipeError("[model]", 0, 0, "model.name",
                      "task.kind = \"segmentation\" trains a temporal network on features: set model.name = "
                      "\"mstcn\", not \"" + recipe.model.name + "\"");
  }
}

std::string SegmentationTraining::describe() const { return "mstcn on segmentation"; }

void SegmentationTraining::setup(const Runtime& rt) {
  train_ = std::make_unique<pipeline::SegmentationDataset>(data_options(recipe_, recipe_.data.train));
  if (validates()) val_ = std::make_unique<pipeline::SegmentationDataset>(data_options(recipe_, recipe_.data.val));
  hash_ = content_hash(*train_);
  models::MultiStageTcnOptions o;
  o.stages = recipe_.model.tcn_stages;
  o.layers = recipe_.model.tcn_layers;
  o.channels = recipe_.model.tcn_channels;
  o.in_dim = train_->feature_dim();
  o.classes = static_cast<int64_t>(train_->class_names().size());
  if (val_ && val_->feature_dim() != o.in_dim) {
    throw IoError("the validation split " + recipe_.data.val + " has features of dimension " +
                  std::to_string(val_->feature_dim()) + ", the training split " + std::to_string(o.in_dim));
  }
  net_ = models::MultiStageTcn(o);
  net_->to(rt.device);
  spdlog::info("segmentation: {} training videos ({} frames), {} classes, features of dimension {}",
               train_->videos().size(), train_->frames(), o.classes, o.in_dim);
}

std::unique_ptr<StepLoader> SegmentationTraining::train_loader(const Runtime& rt) {
  return std::make_unique<VideoLoader>(train_->videos(), recipe_.loader.batch_size, rt.rank, rt.world_size,
                                       static_cast<uint64_t>(recipe_.run.seed));
}

torch::Tensor SegmentationTraining::train_loss(const StepBatch& batch, const Runtime& rt, Stats& stats) {
  const auto& b = static_cast<const VideoSequences&>(batch);
  const torch::Tensor labels = b.labels.to(rt.device), mask = b.mask.to(rt.device);
  torch::Tensor logits;
  {
    AutocastGuard autocast(rt.precision, rt.device);
    logits = net_->forward(b.features.to(rt.device), mask);
  }
  const torch::Tensor loss = mstcn_loss(logits, labels, mask, recipe_.task.smoothing);
  const double frames = mask.sum().item<double>();
  stats["count"] += frames;
  stats["loss"] += loss.item<double>() * frames;
  stats["frame_acc"] += (logits[-1].argmax(1) == labels).sum().item<double>();
  return loss;
}

namespace {

/// `net` over every video of `data` that is this rank's (i % ranks == rank), in eval mode; the
/// metric sums of all ranks in one meter. With `predictions`, each video's frame labels go to
/// <predictions>/<video>.txt.
seg::SegmentationMeter score_segmentation(models::MultiStageTcn& net, const pipeline::SegmentationDataset& data,
                                          const Runtime& rt, const std::set<std::string>& background,
                                          const std::string& predictions) {
  torch::NoGradGuard no_grad;
  const bool was_training = net->is_training();
  net->eval();
  const auto& names = data.class_names();
  seg::SegmentationMeter meter(background);
  const auto& videos = data.videos();
  for (size_t i = static_cast<size_t>(rt.rank); i < videos.size(); i += static_cast<size_t>(rt.world_size)) {
    const VideoSequences one = pad_videos(videos, {static_cast<int64_t>(i)});
    torch::Tensor logits;
    {
      AutocastGuard autocast(rt.precision, rt.device);
      logits = net->forward(one.features.to(rt.device), one.mask.to(rt.device));
    }
    const torch::Tensor predicted = logits[-1][0].argmax(0).cpu();
    const auto p = predicted.accessor<int64_t, 1>();
    std::vector<std::string> gt, pred;
    std::string text;
    for (size_t t = 0; t < videos[i].labels.size(); ++t) {
      gt.push_back(names[static_cast<size_t>(videos[i].labels[t])]);
      pred.push_back(names[static_cast<size_t>(p[static_cast<int64_t>(t)])]);
      text += pred.back() + "\n";
    }
    if (!predictions.empty()) write_file_atomic(predictions + "/" + videos[i].name + ".txt", text);
    meter.add(videos[i].name, gt, pred);
  }
  if (was_training) net->train();
  seg::SegmentationMeter all(background);
  all.merge_sums(all_reduce_stats(meter.sums(), *rt.comm, rt.device));
  return all;
}

}  // namespace

Validation SegmentationTraining::validate(const Runtime& rt) {
  const std::set<std::string> background(recipe_.data.background.begin(), recipe_.data.background.end());
  const seg::SegmentationMeter all = score_segmentation(net_, *val_, rt, background, "");
  Stats m = all.summary();
  m["videos"] = static_cast<double>(all.videos());
  return {m, {}};
}

EvalResult evaluate_segmentation(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                                 bool save_predictions) {
  SegmentationTraining task(recipe);  // the recipe's checks
  const std::string& split = recipe.eval.split;
  const std::string bundle = split == "test" ? recipe.data.test : recipe.data.val;
  if (bundle.empty()) {
    throw RecipeError("[data]", 0, 0, "data." + split, "is not set: the " + split + " split's bundle to evaluate on");
  }
  const Runtime rt = start_runtime(recipe);
  const pipeline::SegmentationDataset data(data_options(recipe, bundle));
  models::MultiStageTcnOptions o;
  o.stages = recipe.model.tcn_stages;
  o.layers = recipe.model.tcn_layers;
  o.channels = recipe.model.tcn_channels;
  o.in_dim = data.feature_dim();
  o.classes = static_cast<int64_t>(data.class_names().size());
  models::MultiStageTcn net(o);
  net->to(rt.device);
  const auto loaded = ckpt::Manager::load_newest_valid(checkpoint, rt.rank, rt.world_size);
  load_module_state("model.", *net, loaded.replicated, loaded.path);
  EvalResult result;
  std::string predictions;
  if (save_predictions) {
    predictions = (std::filesystem::path(out_dir) / ("predictions-" + split)).string();
    if (rt.rank == 0) {
      std::filesystem::remove_all(predictions);
      std::filesystem::create_directories(predictions);
    }
    rt.comm->barrier();
    result.predictions_dir = predictions;
  }
  const std::set<std::string> background(recipe.data.background.begin(), recipe.data.background.end());
  const seg::SegmentationMeter all = score_segmentation(net, data, rt, background, predictions);
  result.metrics = all.summary();
  result.metrics["videos"] = static_cast<double>(all.videos());
  TextTable table({"metric", "value"});
  table.add_row({"videos", std::to_string(all.videos())});
  table.add_row({"frames", std::to_string(all.frames())});
  for (const auto& [k, v] : all.summary()) table.add_row({k, TextTable::number(v, 2)});
  result.table = "checkpoint " + loaded.path + " (step " + std::to_string(loaded.step) + "), split " + split + " (" +
                 bundle + ")\n" + table.str();
  if (rt.rank == 0) {
    std::filesystem::create_directories(out_dir);
    nlohmann::json j = {{"checkpoint", loaded.path}, {"step", loaded.step}, {"split", split}, {"bundle", bundle}};
    for (const auto& [k, v] : result.metrics) j["metrics"][k] = v;
    write_file_atomic((std::filesystem::path(out_dir) / ("eval-" + split + ".json")).string(), j.dump(2));
  }
  return result;
}

}  // namespace holo::train
