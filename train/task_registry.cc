// train(recipe) (train/trainer.h): the Task each task.kind trains.
#include <functional>
#include <map>

#include "core/error.h"
#include "train/segmentation_task.h"
#include "train/trainer.h"
#include "train/video_task.h"

namespace holo::train {
namespace {

/// Every task.kind of the recipe schema, and its Task.
const std::map<std::string, TaskFactory>& task_registry() {
  static const std::map<std::string, TaskFactory> registry = [] {
    const TaskFactory video = [](const Recipe& r) { return std::make_unique<VideoTraining>(r); };
    return std::map<std::string, TaskFactory>{
        {"classification", video},
        {"finetune", video},
        {"multilabel", video},
        {"transfer", video},
        {"segmentation", [](const Recipe& r) { return std::make_unique<SegmentationTraining>(r); }},
    };
  }();
  return registry;
}

}  // namespace

TrainResult train(const Recipe& recipe) {
  const auto it = task_registry().find(recipe.task.kind);
  if (it == task_registry().end()) {
    throw RecipeError("[task]", 0, 0, "task.kind", "'" + recipe.task.kind + "' is not a task the trainer has");
  }
  return train(recipe, it->second);
}

}  // namespace holo::train
