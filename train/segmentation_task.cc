#include "train/segmentation_task.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "train/precision.h"
#include "train/segmentation_loader.h"
#include "train/segmentation_metrics.h"

namespace holo::train {

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
                      "\"mstcn\", \"mucon\" or \"sct\", not \"" + recipe.model.name + "\"");
  }
  if (recipe.task.supervision != "full") {
    throw RecipeError("[task]", 0, 0, "task.supervision",
                      "MS-TCN learns from frame labels only (\"full\"), not \"" + recipe.task.supervision +
                          "\"; model.name = \"mucon\" learns from transcripts, \"sct\" from action sets");
  }
}

std::string SegmentationTraining::describe() const { return "mstcn on segmentation"; }

void SegmentationTraining::setup(const Runtime& rt) {
  train_ = std::make_unique<pipeline::SegmentationDataset>(segmentation_data_options(recipe_, recipe_.data.train));
  if (validates()) val_ = std::make_unique<pipeline::SegmentationDataset>(segmentation_data_options(recipe_, recipe_.data.val));
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
  return make_video_loader(train_->videos(), recipe_.loader.batch_size, rt.rank, rt.world_size,
                           static_cast<uint64_t>(recipe_.run.seed));
}

torch::Tensor SegmentationTraining::train_loss(const StepBatch& batch, const Runtime& rt, Stats& stats) {
  const VideoSequences b = pad_videos(train_->videos(), batch.samples);
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
    const torch::Tensor predicted = logits[-1][0].argmax(0).cpu().contiguous();
    add_prediction(meter, videos[i], names,
                   {predicted.data_ptr<int64_t>(), predicted.data_ptr<int64_t>() + predicted.numel()}, predictions);
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
  const std::string bundle = segmentation_eval_bundle(recipe);
  const Runtime rt = start_runtime(recipe);
  const pipeline::SegmentationDataset data(segmentation_data_options(recipe, bundle));
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
  const std::string predictions = prepare_predictions(out_dir, split, save_predictions, rt);
  result.predictions_dir = predictions;
  const std::set<std::string> background(recipe.data.background.begin(), recipe.data.background.end());
  const seg::SegmentationMeter all = score_segmentation(net, data, rt, background, predictions);
  report_segmentation_eval(all, {}, loaded.path, loaded.step, split, bundle, out_dir, rt, result);
  return result;
}

}  // namespace holo::train
