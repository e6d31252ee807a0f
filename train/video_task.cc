#include "train/task.h"

#include <torch/torch.h>

#include "core/error.h"
#include "train/metrics.h"
#include "train/metrics_torch.h"

namespace holo::train {

std::unique_ptr<Task> make_transfer_task(const Recipe& recipe, const pipeline::Dataset& dataset);

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
class ClassificationTask : public Task {
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
class MultiLabelTask : public Task {
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

std::unique_ptr<Task> make_task(const Recipe& recipe, const pipeline::Dataset& dataset) {
  const std::string& kind = recipe.task.kind;
  if (kind == "transfer") return make_transfer_task(recipe, dataset);  // unlabeled: no classes
  int64_t n = recipe.model.num_classes > 0 ? recipe.model.num_classes
              : recipe.data.num_classes > 0 ? recipe.data.num_classes
                                             : static_cast<int64_t>(dataset.class_names().size());
  if (n <= 0) {
    throw Error("task '" + kind + "': the dataset has no classes; set model.num_classes");
  }
  if (kind == "classification" || kind == "finetune") {
    return std::make_unique<ClassificationTask>(n, dataset.class_names());
  }
  if (kind == "multilabel") {
    std::vector<TagGroup> groups;
    for (const auto& c : dataset.categories()) groups.push_back(TagGroup{c.name, c.tags});
    const bool multitask = recipe.model.heads == "multitask";
    if (multitask && groups.empty()) {
      throw Error("model.heads = \"multitask\" needs a dataset with tag categories (data.categories)");
    }
    return std::make_unique<MultiLabelTask>(n, std::move(groups), multitask, dataset.class_names());
  }
  throw Error("task.kind = \"" + kind + "\" is not trained by this loop");
}

}  // namespace holo::train
