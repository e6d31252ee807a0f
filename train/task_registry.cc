// The registries of train (train/registry.h): task.kind and the segmentation networks; train()
// and evaluate() (train/trainer.h) dispatch through them.
#include <mutex>

#include "core/error.h"
#include "models/network.h"
#include "pipeline/decoder.h"
#include "pipeline/dataset.h"
#include "train/mucon_task.h"
#include "train/optim.h"
#include "train/registry.h"
#include "train/schedule.h"
#include "train/sct_task.h"
#include "train/segmentation_task.h"
#include "train/video_task.h"

namespace holo::train {
namespace {

template <class T>
TaskFactory make() {
  return [](const Recipe& r) -> std::unique_ptr<Task> { return std::make_unique<T>(r); };
}

/// The segmentation network a recipe names; a RecipeError naming the ones there are otherwise.
const TaskEntry& segmentation_network(const Recipe& r) {
  if (const TaskEntry* e = segmentation_networks().find(r.model.name)) return *e;
  std::string names;
  const auto& items = segmentation_networks().items();
  for (size_t i = 0; i < items.size(); ++i) {
    names += (i == 0 ? "" : i + 1 == items.size() ? " or " : ", ") + ("\"" + items[i].choice.name + "\"");
  }
  throw RecipeError("[model]", 0, 0, "model.name",
                    "task.kind = \"segmentation\" trains a temporal network on features: set model.name = " + names +
                        ", not \"" + r.model.name + "\"");
}

}  // namespace

const Registry<TaskEntry>& segmentation_networks() {
  static const Registry<TaskEntry> registry = [] {
    Registry<TaskEntry> r("model.name", "segmentation network");
    r.add("mstcn", "MS-TCN (Farha and Gall 2019), fully supervised: model.tcn_stages stages of model.tcn_layers dilated layers",
          {make<SegmentationTraining>(), evaluate_segmentation, nullptr}, "segmentation");
    r.add("mucon", "MuCon (thesis ch. 9): from transcripts, frames or both; model.mucon_*",
          {make<MuConTraining>(), evaluate_mucon, nullptr}, "segmentation");
    r.add("sct", "SCT (thesis ch. 8): from action sets; model.sct_*", {make<SctTraining>(), evaluate_sct, nullptr}, "segmentation");
    return r;
  }();
  return registry;
}

const Registry<TaskEntry>& tasks() {
  static const Registry<TaskEntry> registry = [] {
    Registry<TaskEntry> r("task.kind", "task");
    const auto video = [](VideoTaskFactory task) { return TaskEntry{make<VideoTraining>(), evaluate_videos, std::move(task)}; };
    r.add("classification", "one head over the dataset's classes, cross entropy; top-1, top-5, mean class accuracy",
          video(make_classification_task));
    r.add("multilabel", "tags (HVU), binary cross entropy; model.heads standard or multitask; mAP",
          video(make_multilabel_task));
    r.add("transfer", "2D->3D knowledge transfer from a frozen 2D teacher (thesis 4.3; task.teacher*)",
          video(make_transfer_task));
    r.add("finetune", "classification from model.init with task.freeze stages kept frozen",
          video(make_classification_task));
    r.add("segmentation", "per-frame labels on per-frame features (data.dataset = mstcn; model.name mstcn, mucon or sct)",
          {[](const Recipe& recipe) { return segmentation_network(recipe).train(recipe); },
           [](const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir, bool save) {
             return segmentation_network(recipe).evaluate(recipe, checkpoint, out_dir, save);
           },
           nullptr});
    return r;
  }();
  return registry;
}

void register_all() {
  static std::once_flag once;
  std::call_once(once, [] {
    pipeline::register_datasets();
    pipeline::register_decoders();
    models::register_networks();
    segmentation_networks();
    tasks();
    register_optimisers();
    register_schedules();
  });
}

TrainResult train(const Recipe& recipe) {
  const TaskEntry& task = tasks().at(recipe.task.kind);
  return train(recipe, task.train);
}

EvalResult evaluate(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                    bool save_predictions) {
  return tasks().at(recipe.task.kind).evaluate(recipe, checkpoint, out_dir, save_predictions);
}

}  // namespace holo::train
