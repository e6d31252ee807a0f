// train(recipe) and evaluate() (train/trainer.h): the Task each task.kind trains, and its evaluation.
#include <functional>
#include <map>

#include "core/error.h"
#include "train/mucon_task.h"
#include "train/sct_task.h"
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
        {"segmentation",
         [](const Recipe& r) -> std::unique_ptr<Task> {
           if (r.model.name == "mucon") return std::make_unique<MuConTraining>(r);
           if (r.model.name == "sct") return std::make_unique<SctTraining>(r);
           return std::make_unique<SegmentationTraining>(r);
         }},
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

EvalResult evaluate(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                    bool save_predictions) {
  if (recipe.task.kind == "segmentation" && recipe.model.name == "sct") {
    return evaluate_sct(recipe, checkpoint, out_dir, save_predictions);
  }
  if (recipe.task.kind == "segmentation" && recipe.model.name == "mucon") {
    return evaluate_mucon(recipe, checkpoint, out_dir, save_predictions);
  }
  if (recipe.task.kind == "segmentation") return evaluate_segmentation(recipe, checkpoint, out_dir, save_predictions);
  return evaluate_videos(recipe, checkpoint, out_dir, save_predictions);
}

}  // namespace holo::train
