#include "train/sct_task.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <iterator>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "train/precision.h"
#include "train/segmentation_loader.h"
#include "train/segmentation_metrics.h"

namespace holo::train {

namespace F = torch::nn::functional;

namespace sct {

Losses losses(const models::SctOutput& out, const std::vector<int64_t>& action_set,
              const std::vector<double>& class_weight, double delta, bool release) {
  const auto device = out.a.device();
  const torch::Tensor set = torch::tensor(action_set, torch::kInt64).to(device);
  std::vector<double> c;
  for (int64_t m : action_set) c.push_back(release ? class_weight[static_cast<size_t>(m)] : 1.0);
  const torch::Tensor weight = torch::tensor(c, torch::kFloat64).to(out.a.options());
  const torch::Tensor as = out.a.index_select(0, set);  // M x K
  const auto m = static_cast<double>(action_set.size());
  const auto k = static_cast<double>(as.size(1));
  // Binary cross entropy as the released code computes it (its log clamped at -100, its gradient
  // bounded), so that saturated probabilities give no infinities.
  Losses l;
  if (release) {
    const torch::Tensor top = std::get<0>(as.max(1));  // M
    l.set = F::binary_cross_entropy(top, torch::ones_like(top), F::BinaryCrossEntropyFuncOptions().weight(weight));
  } else {
    const torch::Tensor top = std::get<0>(out.a.max(1));  // C
    l.set = F::binary_cross_entropy(top, torch::zeros_like(top).index_fill(0, set, 1.0));
  }
  const torch::Tensor best = std::get<0>(as.max(0));  // K
  l.region = F::binary_cross_entropy(best, torch::ones_like(best));
  l.sparsity = (weight * (1 - as.mean(1)).abs()).sum() / m;
  l.consistency = as.size(1) > 1 ? (as.narrow(1, 1, as.size(1) - 1) - as.narrow(1, 0, as.size(1) - 1)).abs().sum()
                                 : torch::zeros({}, out.a.options());
  if (!release) l.consistency = l.consistency / (m * k);
  const auto frames = static_cast<double>(out.y.size(1));
  const torch::Tensor v = out.y.index_select(0, set).matmul(out.s.t()) / frames;  // M x C
  const torch::Tensor ce = F::cross_entropy(v, set, F::CrossEntropyFuncOptions().reduction(torch::kNone));
  l.transformer = (weight * ce).sum() / weight.sum();
  l.length = (torch::relu(out.l - delta) + torch::relu(-delta - out.l)).sum();
  if (!release) l.length = l.length / k;
  return l;
}

}  // namespace sct

namespace {

void check_lengths(const pipeline::SegmentationDataset& data, const std::string& bundle, const models::SctNet& net) {
  check_min_frames(data, bundle, net->min_frames(), "SCT's poolings (model.sct_pool_after), for 2 regions,");
}

/// Jaccard index of the action set a video's regions predict (the classes whose probability
/// reaches 0.5 in some region) and its true set, background left out of both; 1 when both are
/// empty.
double set_jaccard(const torch::Tensor& a, const pipeline::SegmentationVideo& v, const std::vector<std::string>& names,
                   const std::set<std::string>& background) {
  const torch::Tensor top = std::get<0>(a.max(1)).cpu();
  std::set<int64_t> predicted, truth;
  for (int64_t c = 0; c < top.size(0); ++c) {
    if (top[c].item<double>() >= 0.5 && !background.count(names[static_cast<size_t>(c)])) predicted.insert(c);
  }
  for (int64_t c : v.action_set()) {
    if (!background.count(names[static_cast<size_t>(c)])) truth.insert(c);
  }
  std::set<int64_t> both;
  std::set_union(predicted.begin(), predicted.end(), truth.begin(), truth.end(), std::inserter(both, both.end()));
  if (both.empty()) return 1.0;
  int64_t common = 0;
  for (int64_t c : predicted) common += truth.count(c);
  return static_cast<double>(common) / static_cast<double>(both.size());
}

/// argmax of Y on every video of `data` that is this rank's, scored and summed over ranks; the
/// mean set Jaccard index (percent) in `*set_iou`.
seg::SegmentationMeter score(models::SctNet& net, const pipeline::SegmentationDataset& data, const Recipe& recipe,
                             const Runtime& rt, const std::string& predictions, double* set_iou) {
  torch::NoGradGuard no_grad;
  const bool was_training = net->is_training();
  net->eval();
  const std::set<std::string> background(recipe.data.background.begin(), recipe.data.background.end());
  seg::SegmentationMeter meter(background);
  const auto& videos = data.videos();
  double jaccard = 0;
  for (size_t i = static_cast<size_t>(rt.rank); i < videos.size(); i += static_cast<size_t>(rt.world_size)) {
    models::SctOutput out;
    {
      AutocastGuard autocast(rt.precision, rt.device);
      out = net->forward(video_features(videos[i], rt.device));
    }
    const torch::Tensor arg = out.y.argmax(0).cpu().contiguous();
    add_prediction(meter, videos[i], data.class_names(),
                   {arg.data_ptr<int64_t>(), arg.data_ptr<int64_t>() + arg.numel()}, predictions);
    jaccard += set_jaccard(out.a.to(torch::kFloat32), videos[i], data.class_names(), background);
  }
  if (was_training) net->train();
  seg::SegmentationMeter all(background);
  all.merge_sums(all_reduce_stats(meter.sums(), *rt.comm, rt.device));
  const Stats sets = all_reduce_stats({{"jaccard", jaccard}}, *rt.comm, rt.device);
  *set_iou = 100.0 * sets.at("jaccard") / static_cast<double>(std::max<int64_t>(all.videos(), 1));
  return all;
}

}  // namespace

SctTraining::SctTraining(const Recipe& recipe) : recipe_(recipe) {
  if (recipe.data.dataset != "mstcn") {
    throw RecipeError("[data]", 0, 0, "data.dataset",
                      "SCT trains on per-frame features: set data.dataset = \"mstcn\" (MS-TCN's layout), not \"" +
                          recipe.data.dataset + "\"");
  }
  if (recipe.model.name != "sct") throw RecipeError("[model]", 0, 0, "model.name", "is \"" + recipe.model.name + "\", not \"sct\"");
  if (recipe.task.supervision != "set") {
    throw RecipeError("[task]", 0, 0, "task.supervision",
                      "SCT learns from action sets: set task.supervision = \"set\", not \"" + recipe.task.supervision + "\"");
  }
  if (recipe.model.sct_hidden % 32 != 0) {
    throw RecipeError("[model]", 0, 0, "model.sct_hidden",
                      "must be a multiple of 32, the group norm's groups, not " + std::to_string(recipe.model.sct_hidden));
  }
  for (int64_t p : recipe.model.sct_pool_after) {
    if (p >= recipe.model.sct_layers) {
      throw RecipeError("[model]", 0, 0, "model.sct_pool_after",
                        "names layer " + std::to_string(p) + ", but model.sct_layers = " +
                            std::to_string(recipe.model.sct_layers));
    }
  }
  if (recipe.model.sct_z_after >= recipe.model.sct_layers) {
    throw RecipeError("[model]", 0, 0, "model.sct_z_after",
                      "names layer " + std::to_string(recipe.model.sct_z_after) + ", but model.sct_layers = " +
                          std::to_string(recipe.model.sct_layers));
  }
}

void SctTraining::setup(const Runtime& rt) {
  train_ = std::make_unique<pipeline::SegmentationDataset>(segmentation_data_options(recipe_, recipe_.data.train));
  if (validates()) {
    val_ = std::make_unique<pipeline::SegmentationDataset>(segmentation_data_options(recipe_, recipe_.data.val));
  }
  hash_ = content_hash(*train_);
  const auto& names = train_->class_names();
  net_ = models::SctNet(models::sct_options(recipe_.model, train_->feature_dim(), static_cast<int64_t>(names.size())));
  check_lengths(*train_, recipe_.data.train, net_);
  if (val_) {
    if (val_->feature_dim() != train_->feature_dim()) {
      throw IoError("the validation split " + recipe_.data.val + " has features of dimension " +
                    std::to_string(val_->feature_dim()) + ", the training split " +
                    std::to_string(train_->feature_dim()));
    }
    check_lengths(*val_, recipe_.data.val, net_);
  }
  // The released code weighs the background class 0.001 in the set, sparsity and SCT losses.
  class_weight_.assign(names.size(), 1.0);
  for (size_t c = 0; c < names.size(); ++c) {
    if (std::find(recipe_.data.background.begin(), recipe_.data.background.end(), names[c]) !=
        recipe_.data.background.end()) {
      class_weight_[c] = 0.001;
    }
  }
  net_->to(rt.device);
  spdlog::info("sct: {} training videos ({} frames), {} classes, features of dimension {}", train_->videos().size(),
               train_->frames(), names.size(), train_->feature_dim());
}

std::unique_ptr<StepLoader> SctTraining::train_loader(const Runtime& rt) {
  return make_video_loader(train_->videos(), recipe_.loader.batch_size, rt.rank, rt.world_size,
                           static_cast<uint64_t>(recipe_.run.seed));
}

torch::Tensor SctTraining::train_loss(const StepBatch& batch, const Runtime& rt, Stats& stats) {
  const auto& t = recipe_.task;
  torch::Tensor total = torch::zeros({}, torch::TensorOptions().device(rt.device));
  for (int64_t i : batch.samples) {
    const auto& v = train_->videos()[static_cast<size_t>(i)];
    models::SctOutput out;
    {
      AutocastGuard autocast(rt.precision, rt.device);
      out = net_->forward(video_features(v, rt.device));
    }
    out.a = out.a.to(torch::kFloat32);
    out.l = out.l.to(torch::kFloat32);
    out.s = out.s.to(torch::kFloat32);
    out.y = out.y.to(torch::kFloat32);
    const sct::Losses l =
        sct::losses(out, v.action_set(), class_weight_, t.length_width, recipe_.model.sct_variant == "release");
    const torch::Tensor loss = l.set + l.transformer + t.region_weight * l.region +
                               t.consistency_weight * l.consistency + t.sparsity_weight * l.sparsity +
                               t.length_weight * l.length;
    total = total + loss;
    const auto f = static_cast<double>(v.labels.size());
    stats["count"] += f;
    stats["loss"] += loss.item<double>() * f;
    stats["loss_set"] += l.set.item<double>() * f;
    stats["loss_sct"] += l.transformer.item<double>() * f;
    stats["loss_region"] += l.region.item<double>() * f;
    stats["loss_consistency"] += l.consistency.item<double>() * f;
    stats["frame_acc"] += (out.y.argmax(0).cpu() == torch::tensor(v.labels, torch::kInt64)).sum().item<double>();
  }
  return total / static_cast<double>(batch.samples.size());
}

Validation SctTraining::validate(const Runtime& rt) {
  double set_iou = 0;
  const seg::SegmentationMeter all = score(net_, *val_, recipe_, rt, "", &set_iou);
  Stats m = all.summary();
  m["set_iou"] = set_iou;
  m["videos"] = static_cast<double>(all.videos());
  return {m, {}};
}

EvalResult evaluate_sct(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                        bool save_predictions) {
  SctTraining task(recipe);  // the recipe's checks
  const std::string& split = recipe.eval.split;
  const std::string bundle = segmentation_eval_bundle(recipe);
  const Runtime rt = start_runtime(recipe);
  const pipeline::SegmentationDataset data(segmentation_data_options(recipe, bundle));
  models::SctNet net(models::sct_options(recipe.model, data.feature_dim(), static_cast<int64_t>(data.class_names().size())));
  check_lengths(data, bundle, net);
  net->to(rt.device);
  const auto loaded = ckpt::Manager::load_newest_valid(checkpoint, rt.rank, rt.world_size);
  load_module_state("model.", *net, loaded.replicated, loaded.path);
  EvalResult result;
  result.predictions_dir = prepare_predictions(out_dir, split, save_predictions, rt);
  double set_iou = 0;
  const seg::SegmentationMeter all = score(net, data, recipe, rt, result.predictions_dir, &set_iou);
  report_segmentation_eval(all, {{"set_iou", set_iou}}, loaded.path, loaded.step, split, bundle, out_dir, rt, result);
  return result;
}

}  // namespace holo::train
