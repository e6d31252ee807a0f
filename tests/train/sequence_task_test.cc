// (Also: VideoTraining.FreezeNamesOnlyTheNetworksStages, freezing by the network's own stages.)
// A task the trainer has never heard of, trained through the same stages as the video tasks:
// per-sample feature sequences of different lengths with a label per frame (the shape of
// temporal action segmentation on per-frame features), a 1-D convolution over time, a per-frame
// loss and a per-frame evaluator. Everything here is this file's: the trainer only sees
// train/task.h. It must learn, save checkpoints, and resume exactly: 12 steps equal 6 steps, a
// stop, and 6 more, bit for bit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "core/recipe.h"
#include "dist/communicator.h"
#include "tests/test_util.h"
#include "train/gather.h"
#include "train/precision.h"
#include "train/task.h"
#include "train/trainer.h"
#include "train/video_task.h"

namespace holo::train {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kFeatures = 6;
constexpr int64_t kClasses = 3;

/// A sequence: kFeatures x L features and L frame labels.
struct Sequence {
  torch::Tensor features;
  torch::Tensor labels;
};

/// Segments of 4 to 16 frames, each of a class; a frame's features are its class's one-hot
/// (in the first kClasses dimensions) plus unit Gaussian noise everywhere, so that one frame
/// alone is often wrong and the convolution's context over time helps.
std::vector<Sequence> make_sequences(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Sequence> out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t length = 24 + static_cast<int64_t>(rng() % 41);
    std::vector<int64_t> labels;
    while (static_cast<int64_t>(labels.size()) < length) {
      const int64_t c = static_cast<int64_t>(rng() % kClasses);
      const int64_t run = 4 + static_cast<int64_t>(rng() % 13);
      for (int64_t k = 0; k < run && static_cast<int64_t>(labels.size()) < length; ++k) labels.push_back(c);
    }
    torch::Tensor y = torch::tensor(labels, torch::kInt64);
    torch::Tensor x = torch::zeros({kFeatures, length});
    x.index_put_({torch::indexing::Slice(0, kClasses)}, torch::one_hot(y, kClasses).t().to(torch::kFloat32));
    const auto gen = at::detail::createCPUGenerator(seed * 1000 + static_cast<uint64_t>(i));
    x += torch::randn({kFeatures, length}, gen);
    out.push_back({x, y});
  }
  return out;
}

/// Sequences padded to the longest of the batch; padded frames have label -1.
struct SequenceBatch : StepBatch {
  torch::Tensor features;  ///< N x kFeatures x T
  torch::Tensor labels;    ///< N x T
};

SequenceBatch pad(const std::vector<Sequence>& all, const std::vector<int64_t>& indices) {
  int64_t longest = 0;
  for (int64_t i : indices) longest = std::max(longest, all[i].labels.size(0));
  SequenceBatch b;
  b.samples = indices;
  const auto n = static_cast<int64_t>(indices.size());
  b.features = torch::zeros({n, kFeatures, longest});
  b.labels = torch::full({n, longest}, -1, torch::kInt64);
  for (int64_t k = 0; k < n; ++k) {
    const Sequence& s = all[indices[k]];
    const int64_t l = s.labels.size(0);
    b.features[k].narrow(1, 0, l).copy_(s.features);
    b.labels[k].narrow(0, 0, l).copy_(s.labels);
  }
  return b;
}

/// Whole global batches of `batch` sequences per rank in an order fixed by the seed and the
/// epoch; the cursor counts sequences the ranks took together, so that a state resumes on any
/// number of ranks.
class SequenceLoader : public StepLoader {
 public:
  SequenceLoader(const std::vector<Sequence>& data, int64_t batch, int rank, int ranks, uint64_t seed)
      : data_(data), batch_(batch), rank_(rank), ranks_(ranks), seed_(seed) {}
  void set_epoch(int64_t epoch) override {
    epoch_ = epoch;
    cursor_ = 0;
    order_.resize(data_.size());
    std::iota(order_.begin(), order_.end(), 0);
    std::mt19937_64 rng(seed_ * 7919 + static_cast<uint64_t>(epoch));
    std::shuffle(order_.begin(), order_.end(), rng);
  }
  std::unique_ptr<StepBatch> next() override {
    if (batches_left() == 0) return nullptr;
    std::vector<int64_t> mine(order_.begin() + cursor_ + rank_ * batch_,
                              order_.begin() + cursor_ + (rank_ + 1) * batch_);
    cursor_ += batch_ * ranks_;
    return std::make_unique<SequenceBatch>(pad(data_, mine));
  }
  int64_t batches_per_epoch() const override {
    return static_cast<int64_t>(data_.size()) / (batch_ * ranks_);
  }
  int64_t batches_left() const override {
    return (static_cast<int64_t>(data_.size()) - cursor_) / (batch_ * ranks_);
  }
  void complete_epoch() override {}  // the cursor counts sequences: any number of ranks goes on from it
  nlohmann::json state() const override { return {{"epoch", epoch_}, {"cursor", cursor_}}; }
  void load_state(const nlohmann::json& j) override {
    set_epoch(j.at("epoch").get<int64_t>());
    cursor_ = j.at("cursor").get<int64_t>();
  }

 private:
  const std::vector<Sequence>& data_;
  int64_t batch_;
  int rank_, ranks_;
  uint64_t seed_;
  int64_t epoch_ = 0, cursor_ = 0;
  std::vector<int64_t> order_;
};

struct FrameNetImpl : torch::nn::Module {
  FrameNetImpl()
      : temporal(register_module("temporal", torch::nn::Conv1d(torch::nn::Conv1dOptions(kFeatures, 16, 5).padding(2)))),
        classifier(register_module("classifier", torch::nn::Conv1d(16, kClasses, 1))) {}
  torch::Tensor forward(const torch::Tensor& x) { return classifier(torch::relu(temporal(x))); }
  torch::nn::Conv1d temporal, classifier;
};
TORCH_MODULE(FrameNet);

/// Per-frame cross entropy; frame accuracy.
class SequenceTask : public Task {
 public:
  explicit SequenceTask(const Recipe& recipe)
      : recipe_(recipe), train_(make_sequences(48, 11)), val_(make_sequences(24, 12)) {}
  std::string describe() const override { return "a 1-D convolution on frame labels"; }
  void setup(const Runtime& rt) override {
    net_ = FrameNet();
    net_->to(rt.device);
  }
  torch::nn::Module& model() override { return *net_; }
  std::unique_ptr<StepLoader> train_loader(const Runtime& rt) override {
    return std::make_unique<SequenceLoader>(train_, recipe_.loader.batch_size, rt.rank, rt.world_size,
                                            static_cast<uint64_t>(recipe_.run.seed));
  }
  std::string data_hash() const override { return "sequences-48-11"; }
  torch::Tensor train_loss(const StepBatch& batch, const Runtime& rt, Stats& stats) override {
    const auto& b = static_cast<const SequenceBatch&>(batch);
    torch::Tensor logits;
    {
      AutocastGuard autocast(rt.precision, rt.device);
      logits = net_->forward(b.features.to(rt.device));
    }
    const torch::Tensor labels = b.labels.to(rt.device);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(
        logits.to(torch::kFloat32), labels, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1));
    const double frames = (labels >= 0).sum().item<double>();
    stats["count"] += frames;
    stats["loss"] += loss.item<double>() * frames;
    stats["frame_acc"] += ((logits.argmax(1) == labels) & (labels >= 0)).sum().item<double>();
    return loss;
  }
  bool validates() const override { return recipe_.train.val_every > 0; }
  Validation validate(const Runtime& rt) override {
    torch::NoGradGuard no_grad;
    net_->eval();
    Stats sums{{"correct", 0.0}, {"frames", 0.0}, {"samples", 0.0}};
    for (size_t i = static_cast<size_t>(rt.rank); i < val_.size(); i += static_cast<size_t>(rt.world_size)) {
      const torch::Tensor pred = net_->forward(val_[i].features.unsqueeze(0).to(rt.device)).argmax(1)[0].cpu();
      sums["correct"] += (pred == val_[i].labels).sum().item<double>();
      sums["frames"] += static_cast<double>(val_[i].labels.size(0));
      sums["samples"] += 1;
    }
    net_->train();
    const Stats all = all_reduce_stats(sums, *rt.comm, rt.device);
    return {{{"frame_acc", all.at("correct") / all.at("frames")}, {"samples", all.at("samples")}}, {}};
  }
  std::string score_key() const override { return "frame_acc"; }
  std::vector<std::string> mean_keys() const override { return {"loss", "frame_acc"}; }

 private:
  Recipe recipe_;
  std::vector<Sequence> train_, val_;
  FrameNet net_{nullptr};
};

Recipe sequence_recipe(const std::string& dir) {
  Recipe r;
  r.run.dir = dir;
  r.run.seed = 3;
  r.loader.batch_size = 4;  // 12 steps per epoch
  r.optim.lr = 0.1;
  r.schedule.kind = "step";
  r.schedule.step_epochs = 2;
  r.schedule.gamma = 0.5;
  r.train.epochs = 6;
  r.train.log_every = 1;
  r.checkpoint.every_steps = 4;
  return r;
}

std::unique_ptr<Task> sequence_task(const Recipe& r) { return std::make_unique<SequenceTask>(r); }

std::map<std::string, torch::Tensor> model_tensors(const std::string& run_dir) {
  auto loaded = ckpt::Manager::load_latest(run_dir + "/checkpoints", 0, 1);
  EXPECT_TRUE(loaded.has_value()) << run_dir;
  std::map<std::string, torch::Tensor> out;
  if (!loaded) return out;
  for (auto& [k, v] : loaded->replicated) {
    if (k.rfind("model.", 0) == 0) out[k] = v;
  }
  return out;
}

std::vector<nlohmann::json> metric_lines(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(SequenceTask, LearnsFrameLabelsThroughTheTrainersStages) {
  const std::string dir = holo::testing::temp_dir();
  Recipe r = sequence_recipe(dir + "/run");
  const TrainResult result = train(r, sequence_task);
  EXPECT_EQ(result.step, 72);
  EXPECT_EQ(result.epoch, 6);
  ASSERT_TRUE(result.last_val.count("frame_acc"));
  // One frame alone, read by the best rule there is for it (the largest of its class
  // dimensions), is right on `single` of the validation frames; the convolution's context over
  // five frames must do clearly better.
  double correct = 0, frames = 0;
  for (const auto& s : make_sequences(24, 12)) {
    correct += (s.features.narrow(0, 0, kClasses).argmax(0) == s.labels).sum().item<double>();
    frames += static_cast<double>(s.labels.size(0));
  }
  const double single = correct / frames;
  std::printf("frame accuracy on validation: one frame alone %.3f, trained 1-D convolution %.3f\n", single,
              result.last_val.at("frame_acc"));
  EXPECT_LT(single, 0.7);
  EXPECT_GT(result.last_val.at("frame_acc"), single + 0.15);
  EXPECT_EQ(result.last_val.at("samples"), 24);
  const auto lines = metric_lines(dir + "/run");
  std::vector<nlohmann::json> train_lines;
  int64_t val_lines = 0;
  for (const auto& l : lines) {
    if (l.at("split") == "train") {
      train_lines.push_back(l);
    } else {
      ++val_lines;
      EXPECT_TRUE(l.contains("frame_acc"));
    }
  }
  ASSERT_EQ(train_lines.size(), 72u);
  EXPECT_EQ(val_lines, 6);  // after every epoch
  EXPECT_LT(train_lines.back().at("loss").get<double>(), 0.6 * train_lines.front().at("loss").get<double>());
  // The step schedule: 0.1 for epochs 0-1, halved every two epochs.
  EXPECT_DOUBLE_EQ(train_lines.front().at("lr").get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(train_lines.back().at("lr").get<double>(), 0.025);
}

TEST(SequenceTask, TwelveStepsEqualSixAndSixResumedBitwise) {
  const std::string dir = holo::testing::temp_dir();
  Recipe whole = sequence_recipe(dir + "/whole");
  whole.train.max_steps = 12;
  ASSERT_EQ(train(whole, sequence_task).step, 12);

  Recipe part = sequence_recipe(dir + "/part");
  part.train.max_steps = 6;
  const TrainResult first = train(part, sequence_task);
  EXPECT_EQ(first.step, 6);
  EXPECT_EQ(first.resumed_from, -1);
  part.train.max_steps = 12;
  const TrainResult second = train(part, sequence_task);
  EXPECT_EQ(second.resumed_from, 6);
  EXPECT_EQ(second.step, 12);

  const auto a = model_tensors(dir + "/whole"), b = model_tensors(dir + "/part");
  ASSERT_EQ(a.size(), 4u);  // two convolutions' weights and biases
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name << " differs after the resume";
  }
  // The resumed run's training lines continue the whole run's, loss for loss.
  const auto la = metric_lines(dir + "/whole"), lb = metric_lines(dir + "/part");
  std::vector<double> losses_a, losses_b;
  for (const auto& l : la) if (l["split"] == "train") losses_a.push_back(l["loss"]);
  for (const auto& l : lb) if (l["split"] == "train") losses_b.push_back(l["loss"]);
  EXPECT_EQ(losses_a, losses_b);
}

// Freezing names the network's own stages (its top-level submodules), not a fixed list.
TEST(VideoTraining, FreezeNamesOnlyTheNetworksStages) {
  ModelOptions o;
  o.name = "r3d10";
  o.width = 0.125;
  const auto net = models::build_network(o, {4});
  freeze_stages(*net, {"stem", "res2"});
  for (const auto& p : net->named_parameters()) {
    const bool frozen = p.key().rfind("stem.", 0) == 0 || p.key().rfind("res2.", 0) == 0;
    EXPECT_EQ(p.value().requires_grad(), !frozen) << p.key();
  }
  EXPECT_THAT([&] { freeze_stages(*net, {"blocks"}); },
              ::testing::ThrowsMessage<RecipeError>(::testing::HasSubstr("'blocks' is not a stage of this network; its stages: stem, res2")));
}

}  // namespace
}  // namespace holo::train
