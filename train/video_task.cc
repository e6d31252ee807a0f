#include "train/video_task.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <tuple>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "core/progress.h"
#include "dist/communicator.h"
#include "models/weights.h"
#include "train/precision.h"
#include "train/metrics.h"
#include "train/metrics_torch.h"
#include "train/registry.h"

namespace holo::train {

namespace {

std::vector<float> to_floats(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", x);
  return buf;
}

/// Single-label classification: cross entropy; top-1, top-5, mean class accuracy.
class ClassificationTask : public VideoTask {
 public:
  ClassificationTask(int64_t num_classes, std::vector<std::string> names)
      : num_classes_(num_classes), names_(std::move(names)) {}

  std::vector<int64_t> head_sizes() const override { return {num_classes_}; }

  torch::Tensor loss(const models::NetworkOutput& out, const pipeline::Batch& batch,
                     Stats& stats) const override {
    const torch::Tensor& logits = out.logits.at(0);
    const torch::Tensor labels = batch.labels.to(logits.device());
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
    const int64_t n = labels.size(0);
    stats["loss"] += loss.item<double>() * n;
    stats["acc"] += logits.argmax(1).eq(labels).sum().item<double>();
    stats["count"] += n;
    return loss;
  }

  torch::Tensor scores(const models::NetworkOutput& out) const override {
    return torch::softmax(out.logits.at(0).to(torch::kFloat32), 1);
  }

  Stats evaluate(const torch::Tensor& scores, const torch::Tensor& targets) const override {
    ClassificationMeter m(num_classes_, false);
    torch::Tensor l = targets.to(torch::kCPU, torch::kInt64).contiguous();
    m.add(to_floats(scores), std::vector<int64_t>(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel()));
    // The loss of the video-level prediction: cross entropy of the views' averaged softmax.
    const torch::Tensor p = scores.to(torch::kCPU, torch::kFloat64).gather(1, l.view({-1, 1})).clamp_min(1e-12);
    return {{"top1", m.top1()}, {"top5", m.top5()}, {"mean_class_acc", m.mean_class_accuracy()},
            {"loss", -p.log().mean().item<double>()}, {"videos", static_cast<double>(m.count())}};
  }

  std::string score_key() const override { return "top1"; }

  std::vector<std::vector<std::string>> per_class(const torch::Tensor& scores,
                                                  const torch::Tensor& targets) const override {
    ClassificationMeter m(num_classes_, false);
    torch::Tensor l = targets.to(torch::kCPU, torch::kInt64).contiguous();
    m.add(to_floats(scores), std::vector<int64_t>(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel()));
    std::vector<std::vector<std::string>> rows = {{"class", "name", "videos", "correct", "accuracy"}};
    const auto acc = m.per_class_accuracy();
    for (int64_t c = 0; c < num_classes_; ++c) {
      rows.push_back({std::to_string(c), c < static_cast<int64_t>(names_.size()) ? names_[c] : "",
                      std::to_string(m.class_count(c)), std::to_string(m.class_correct(c)),
                      acc[c] ? fmt(*acc[c]) : ""});
    }
    return rows;
  }

  std::vector<std::string> mean_keys() const override { return {"loss", "acc"}; }

 private:
  int64_t num_classes_;
  std::vector<std::string> names_;
};

/// Multi-label (HVU): one head per category with BCE masked for videos lacking any tag of the
/// category ("multitask"), or one head over all tags ("standard").
class MultiLabelTask : public VideoTask {
 public:
  MultiLabelTask(int64_t num_tags, std::vector<TagGroup> groups, bool multitask,
                 std::vector<std::string> names)
      : num_tags_(num_tags), groups_(std::move(groups)), multitask_(multitask), names_(std::move(names)) {
    check_tag_groups(groups_, num_tags_);
  }

  std::vector<int64_t> head_sizes() const override {
    if (!multitask_) return {num_tags_};
    std::vector<int64_t> sizes;
    for (const auto& g : groups_) sizes.push_back(static_cast<int64_t>(g.tags.size()));
    return sizes;
  }

  torch::Tensor loss(const models::NetworkOutput& out, const pipeline::Batch& batch,
                     Stats& stats) const override {
    const torch::Device dev = out.logits.at(0).device();
    const torch::Tensor targets = batch.labels.to(dev, torch::kFloat32);
    const int64_t n = targets.size(0);
    torch::Tensor total;
    if (!multitask_) {
      total = torch::nn::functional::binary_cross_entropy_with_logits(out.logits.at(0).to(torch::kFloat32), targets);
      stats["loss"] += total.item<double>() * n;
    } else {
      const auto masks = category_masks(targets, groups_);
      total = torch::zeros({}, targets.options());
      for (size_t h = 0; h < groups_.size(); ++h) {
        // A head whose category no video of the batch has still joins the graph with weight
        // 0, so every rank produces a gradient for every head.
        const torch::Tensor head_loss =
            masked_bce_with_logits(out.logits.at(h), group_targets(targets, groups_[h]), masks[h]);
        total = total + head_loss;
        stats["loss_" + groups_[h].name] += head_loss.item<double>() * n;
      }
      stats["loss"] += total.item<double>() * n;
    }
    stats["count"] += n;
    return total;
  }

  torch::Tensor scores(const models::NetworkOutput& out) const override {
    if (!multitask_) return torch::sigmoid(out.logits.at(0).to(torch::kFloat32));
    return merge_head_scores(out.logits, groups_, num_tags_);
  }

  Stats evaluate(const torch::Tensor& scores, const torch::Tensor& targets) const override {
    MultiLabelMeter m(num_tags_);
    m.add(to_floats(scores), to_floats(targets));
    const auto r = m.compute(groups_);
    // Binary cross entropy of the views' averaged sigmoid, over tags and videos.
    const torch::Tensor p = scores.to(torch::kCPU, torch::kFloat64).clamp(1e-12, 1 - 1e-12);
    const torch::Tensor y = targets.to(torch::kCPU, torch::kFloat64);
    const double bce = -(y * p.log() + (1 - y) * (1 - p).log()).mean().item<double>();
    Stats out = {{"mAP", r.overall.value_or(0.0)}, {"loss", bce}, {"videos", static_cast<double>(m.count())}};
    for (const auto& g : r.groups) {
      if (g.map) out["mAP_" + g.name] = *g.map;
    }
    return out;
  }

  std::string score_key() const override { return "mAP"; }
  bool multilabel() const override { return true; }

  std::vector<std::vector<std::string>> per_class(const torch::Tensor& scores,
                                                  const torch::Tensor& targets) const override {
    MultiLabelMeter m(num_tags_);
    m.add(to_floats(scores), to_floats(targets));
    const auto r = m.compute(groups_);
    std::vector<std::vector<std::string>> rows = {{"tag", "name", "category", "ap"}};
    for (size_t gi = 0; gi < r.groups.size(); ++gi) {
      const auto& tags = groups_.empty() ? std::vector<int64_t>() : groups_[gi].tags;
      for (size_t i = 0; i < r.groups[gi].tag_ap.size(); ++i) {
        const int64_t tag = groups_.empty() ? static_cast<int64_t>(i) : tags[i];
        const auto& ap = r.groups[gi].tag_ap[i];
        rows.push_back({std::to_string(tag), tag < static_cast<int64_t>(names_.size()) ? names_[tag] : "",
                        r.groups[gi].name, ap ? fmt(*ap) : ""});
      }
    }
    return rows;
  }

  std::vector<std::string> mean_keys() const override {
    std::vector<std::string> keys = {"loss"};
    if (multitask_) {
      for (const auto& g : groups_) keys.push_back("loss_" + g.name);
    }
    return keys;
  }

 private:
  int64_t num_tags_;
  std::vector<TagGroup> groups_;
  bool multitask_;
  std::vector<std::string> names_;
};

}  // namespace

namespace {

/// The class count: model.num_classes, else data.num_classes, else the dataset's classes.
int64_t class_count(const Recipe& recipe, const pipeline::Dataset& dataset) {
  const int64_t n = recipe.model.num_classes > 0 ? recipe.model.num_classes
                    : recipe.data.num_classes > 0 ? recipe.data.num_classes
                                                   : static_cast<int64_t>(dataset.class_names().size());
  if (n <= 0) throw Error("task '" + recipe.task.kind + "': the dataset has no classes; set model.num_classes");
  return n;
}

}  // namespace

std::unique_ptr<VideoTask> make_classification_task(const Recipe& recipe, const pipeline::Dataset& dataset) {
  return std::make_unique<ClassificationTask>(class_count(recipe, dataset), dataset.class_names());
}

std::unique_ptr<VideoTask> make_multilabel_task(const Recipe& recipe, const pipeline::Dataset& dataset) {
  const int64_t n = class_count(recipe, dataset);
  std::vector<TagGroup> groups;
  for (const auto& c : dataset.categories()) groups.push_back(TagGroup{c.name, c.tags});
  const bool multitask = recipe.model.heads == "multitask";
  if (multitask && groups.empty()) {
    throw Error("model.heads = \"multitask\" needs a dataset with tag categories (data.categories)");
  }
  return std::make_unique<MultiLabelTask>(n, std::move(groups), multitask, dataset.class_names());
}

std::unique_ptr<VideoTask> make_video_task(const Recipe& recipe, const pipeline::Dataset& dataset) {
  const TaskEntry& task = tasks().at(recipe.task.kind);
  if (!task.video) throw Error("task.kind = \"" + recipe.task.kind + "\" is not trained by this loop");
  return task.video(recipe, dataset);
}

namespace fs = std::filesystem;

torch::Tensor record_targets(const pipeline::Dataset& ds, const std::vector<int64_t>& records, bool multilabel,
                             int64_t num_tags) {
  if (!multilabel) {
    std::vector<int64_t> l;
    for (int64_t r : records) l.push_back(ds.records()[r].label);
    return torch::tensor(l, torch::kInt64);
  }
  torch::Tensor t = torch::zeros({static_cast<int64_t>(records.size()), num_tags});
  for (size_t i = 0; i < records.size(); ++i) {
    for (int64_t tag : ds.records()[records[i]].tags) t[static_cast<int64_t>(i)][tag] = 1.0f;
  }
  return t;
}

VideoScores score_videos(models::NetworkImpl& net, const VideoTask& task, pipeline::ClipLoader& loader,
                         const Runtime& rt, const std::string& label) {
  torch::NoGradGuard no_grad;
  net.eval();
  // Per record: the sums of its views' scores and of their features, and the view count.
  std::map<int64_t, std::tuple<torch::Tensor, torch::Tensor, int64_t>> acc;
  CostStats costs(net.clip_cost_names());
  holo::Progress progress({label, loader.batches_per_epoch(), "batches"});
  while (auto batch = loader.next()) {
    progress.advance();  // each rank counts its own batches (ranks other than 0: in their log file)
    if (batch->indices.empty()) continue;  // a rank's share of the views can end early
    models::NetworkOutput out;
    {
      AutocastGuard autocast(rt.precision, rt.device);
      out = net.forward_all(batch->clips.to(rt.device));
    }
    costs.add(net.clip_costs(batch->clips, out));
    const torch::Tensor s = task.scores(out).cpu();
    const torch::Tensor f = out.features.to(torch::kFloat32).cpu();
    for (size_t i = 0; i < batch->indices.size(); ++i) {
      auto& [ss, fs_, n] = acc[batch->indices[i]];
      const auto row = static_cast<int64_t>(i);
      ss = ss.defined() ? ss + s[row] : s[row].clone();
      fs_ = fs_.defined() ? fs_ + f[row] : f[row].clone();
      ++n;
    }
  }
  progress.finish();
  net.train();
  // Every rank joins, with the names its network reports even when it saw no view.
  costs.reduce(*rt.comm, rt.device);
  // The views of one video can land on different ranks (the test loader shards views, not
  // videos): their sums travel as one row [scores, features] and are merged per record.
  RecordSums sums;
  for (const auto& [record, v] : acc) {
    const auto& [ss, fs_, n] = v;
    sums[record] = {torch::cat({ss, fs_}), n};
  }
  const int64_t feature_dim = net.feature_dim();
  RecordMeans means = gather_record_means(sums, feature_dim, *rt.comm, rt.device);
  const int64_t classes = means.means.size(1) - feature_dim;
  VideoScores out;
  out.records = std::move(means.records);
  out.scores = means.means.slice(1, 0, classes);
  out.features = means.means.slice(1, classes);
  out.costs = std::move(costs);
  return out;
}

namespace {

/// model.init: a checkpoint (directory or folder of checkpoints) or a single file of tensors
/// (a dict saved by torch.save: `holo ckpt export`, torchvision, PySlowFast, MMAction2), named as
/// model.init_layout says (models/weights.h). Anything left unmatched, apart from a classifier of
/// another class count, stops the run with exit 2 unless model.init_strict is false.
void init_from(models::NetworkImpl& net, const holo::ModelOptions& model) {
  const std::string& path = model.init;
  std::map<std::string, torch::Tensor> state;
  if (fs::is_directory(path)) {
    auto loaded = ckpt::Manager::load_newest_valid(path, 0, 1);
    for (auto& [k, v] : loaded.replicated) {
      if (k.rfind("model.", 0) == 0) state[k.substr(6)] = v;
    }
  } else {
    for (auto& [k, t] : models::read_weights_file(path)) state[k.rfind("model.", 0) == 0 ? k.substr(6) : k] = t;
  }
  const std::string family = models::resolve_model(model).name;
  const auto report = models::import_weights(net, family, state, model.init_layout);
  const auto initialised = [&] {
    spdlog::info("initialised {} tensors from {} ({} names){}", report.loaded, path, models::to_string(report.layout),
                 report.classifier_kept.empty() ? "" : "; the classifier keeps its fresh weights (another class count)");
    for (const auto& c : report.classifier_kept) spdlog::debug("model.init: classifier {}", c);
  };
  if (report.unmatched.empty()) return initialised();
  // Up to 10 lines of each side: what the network lacks, and what the file has in excess.
  std::string list;
  for (const bool network_side : {true, false}) {
    std::vector<std::string> side;
    for (const auto& u : report.unmatched) {
      if ((u.rfind("file tensor", 0) != 0) == network_side) side.push_back(u);
    }
    for (size_t i = 0; i < side.size() && i < 10; ++i) list += "\n  " + side[i];
    if (side.size() > 10) list += "\n  ... and " + std::to_string(side.size() - 10) + " more like these";
  }
  const std::string msg = std::to_string(report.unmatched.size()) + " tensor(s) of '" + path + "' (" +
                          models::to_string(report.layout) + " names) and the " + family +
                          " network did not match:" + list;
  if (model.init_strict) {
    throw RecipeError("[model]", 0, 0, "model.init",
                      msg + "\n(set model.init_strict = false to train with them left as initialised, or "
                            "model.init_layout to read other names)");
  }
  spdlog::warn("model.init: {}", msg);
  initialised();
}

/// A batch of clips.
struct ClipBatch : StepBatch {
  pipeline::Batch clips;
};

/// The clip loader as the trainer's StepLoader.
class ClipStepLoader : public StepLoader {
 public:
  ClipStepLoader(std::shared_ptr<pipeline::Dataset> dataset, const Recipe& recipe, const Runtime& rt)
      : loader_(std::move(dataset), recipe, pipeline::LoaderMode::kTrain, rt.rank, rt.world_size) {}
  void set_epoch(int64_t epoch) override { loader_.set_epoch(epoch); }
  std::unique_ptr<StepBatch> next() override {
    auto batch = loader_.next();
    if (!batch) return nullptr;
    auto out = std::make_unique<ClipBatch>();
    out->samples = batch->indices;
    out->weight = batch->weight;
    out->clips = std::move(*batch);
    return out;
  }
  int64_t batches_per_epoch() const override { return loader_.batches_per_epoch(); }
  int64_t batches_left() const override { return loader_.batches_left(); }
  void complete_epoch() override { loader_.complete_epoch(); }
  nlohmann::json state() const override {
    const pipeline::LoaderState s = loader_.state();
    return {{"epoch", s.epoch}, {"cursor", s.cursor}, {"seed", s.seed}, {"quarantined", s.quarantined}};
  }
  void load_state(const nlohmann::json& j) override {
    pipeline::LoaderState s;
    s.epoch = j.at("epoch");
    s.cursor = j.at("cursor");
    s.seed = j.at("seed");
    s.quarantined = j.value("quarantined", int64_t{0});
    loader_.load_state(s);
  }
  void defer_bad_fraction_check(bool on) override { loader_.defer_bad_fraction_check(on); }
  int64_t epoch_quarantined() const override { return loader_.epoch_quarantined(); }
  void set_world_quarantined(int64_t count) override { loader_.set_world_quarantined(count); }

 private:
  pipeline::ClipLoader loader_;
};

/// Periodic validation during training: one centre view per video, for speed.
Recipe validation_recipe(Recipe r) {
  r.sampling.test_clips = 1;
  r.sampling.test_crops = 1;
  return r;
}

/// The dataset, task and network of `recipe` on `split`, the network on `rt.device` with the
/// weights every rank draws alike from run.seed.
void build(const Recipe& recipe, const std::string& split, const Runtime& rt,
           std::shared_ptr<pipeline::Dataset>& dataset, std::unique_ptr<VideoTask>& task,
           std::shared_ptr<models::NetworkImpl>& net) {
  dataset = pipeline::make_dataset(recipe, split);
  task = make_video_task(recipe, *dataset);
  // Identical initial weights on every rank (and broadcast from rank 0 all the same).
  torch::manual_seed(static_cast<uint64_t>(recipe.run.seed));
  net = models::build_network(recipe.model, task->head_sizes());
  net->to(rt.device);
}

}  // namespace

void freeze_stages(models::NetworkImpl& net, const std::vector<std::string>& stages) {
  std::vector<std::string> own;
  for (const auto& child : net.named_children()) own.push_back(child.key());
  for (const auto& s : stages) {
    if (std::find(own.begin(), own.end(), s) == own.end()) {
      throw RecipeError("[task]", 0, 0, "task.freeze",
                        "'" + s + "' is not a stage of this network; its stages: " + fmt::format("{}", fmt::join(own, ", ")));
    }
  }
  int64_t frozen = 0;
  for (auto& p : net.named_parameters()) {
    for (const auto& s : stages) {
      if (p.key().rfind(s + ".", 0) == 0) {
        p.value().set_requires_grad(false);
        ++frozen;
      }
    }
  }
  if (!stages.empty()) spdlog::info("froze {} parameter tensors of stages {}", frozen, fmt::join(stages, ","));
}

VideoTraining::VideoTraining(const Recipe& recipe) : recipe_(recipe) {
  if (recipe.data.dataset == "mstcn") {
    throw RecipeError("[data]", 0, 0, "data.dataset",
                      "\"mstcn\" holds per-frame features, not videos: set task.kind = \"segmentation\" (and "
                      "model.name = \"mstcn\")");
  }
}

std::string VideoTraining::describe() const { return recipe_.model.name + " on " + recipe_.task.kind; }

void VideoTraining::setup(const Runtime& rt) { build(recipe_, "train", rt, dataset_, task_, net_); }

void VideoTraining::initialise(const Runtime&) {
  if (validates()) val_dataset_ = pipeline::make_dataset(recipe_, "val");
  if (!recipe_.model.init.empty()) init_from(*net_, recipe_.model);
  freeze_stages(*net_, recipe_.task.freeze);
}

void VideoTraining::prepare(const Runtime& rt) {
  task_->prepare(recipe_, *dataset_, *net_, rt.device, *rt.comm);
}

std::unique_ptr<StepLoader> VideoTraining::train_loader(const Runtime& rt) {
  return std::make_unique<ClipStepLoader>(dataset_, recipe_, rt);
}

std::string VideoTraining::data_hash() const { return dataset_->content_hash(); }

bool VideoTraining::same_data(const std::string& saved_hash) const {
  // Checkpoints from before the hash left the paths out hold the hash with the paths.
  return saved_hash == dataset_->content_hash() || saved_hash == dataset_->content_hash_with_paths();
}

torch::Tensor VideoTraining::train_loss(const StepBatch& batch, const Runtime& rt, Stats& stats) {
  const pipeline::Batch& b = static_cast<const ClipBatch&>(batch).clips;
  {
    AutocastGuard autocast(rt.precision, rt.device);
    last_output_ = net_->forward_all(b.clips.to(rt.device));
  }
  return task_->loss(last_output_, b, stats);
}

void VideoTraining::add_costs(const StepBatch& batch, CostStats& costs) {
  costs.add(net_->clip_costs(static_cast<const ClipBatch&>(batch).clips.clips, last_output_));
  last_output_ = {};
}

bool VideoTraining::validates() const {
  return !recipe_.data.val.empty() && recipe_.train.val_every > 0 && task_ && task_->validates();
}

Validation VideoTraining::validate(const Runtime& rt) {
  const Recipe vr = validation_recipe(recipe_);
  pipeline::ClipLoader loader(val_dataset_, vr, pipeline::LoaderMode::kTest, rt.rank, rt.world_size);
  // A rank alone must not stop in the middle of the ranks' collectives (the bad videos of the
  // validation set are dropped from its views and counted, not summed over ranks).
  if (rt.world_size > 1) loader.defer_bad_fraction_check(true);
  loader.set_epoch(0);
  VideoScores vs = score_videos(*net_, *task_, loader, rt, "validate");
  const torch::Tensor targets =
      record_targets(*val_dataset_, vs.records, task_->multilabel(), vs.scores.size(1));
  return {task_->evaluate(vs.scores, targets), std::move(vs.costs)};
}

VideoModel load_video_model(const Recipe& recipe, const std::string& checkpoint, const std::string& split) {
  VideoModel m;
  m.rt = start_runtime(recipe);
  build(recipe, split, m.rt, m.dataset, m.task, m.net);
  const auto loaded = ckpt::Manager::load_newest_valid(checkpoint, m.rt.rank, m.rt.world_size);
  m.path = loaded.path;
  m.step = loaded.step;
  load_module_state("model.", *m.net, loaded.replicated, m.path);
  return m;
}

}  // namespace holo::train
