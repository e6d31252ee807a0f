#pragma once
/// The registries of the layers up to train (core/registry.h), and the one call that fills
/// them all. `holo` calls register_all() before it reads a recipe, so that the recipe schema
/// checks model.name, task.kind, data.dataset, decode.device, optim.name and schedule.kind
/// against every registered name; a test that checks those keys calls it too.
///
/// Where a new piece registers:
///   network (clip)          models/network.cc, add_networks: a family (its builder) or a preset
///   segmentation network    train/task_registry.cc, add_segmentation_networks (its Task and holo eval)
///   task.kind               train/task_registry.cc, add_tasks
///   data.dataset            pipeline/dataset.cc, dataset_formats
///   decode.device           pipeline/decoder.cc, decoders
///   optim.name              train/optim.cc, optimisers
///   schedule.kind           train/schedule.cc, schedules

#include <functional>
#include <memory>
#include <string>

#include "core/recipe.h"
#include "core/registry.h"
#include "train/trainer.h"

namespace holo::pipeline {
class Dataset;
}

namespace holo::train {

/// holo eval of a recipe's checkpoint.
using Evaluator = std::function<EvalResult(const Recipe&, const std::string& checkpoint, const std::string& out_dir,
                                           bool save_predictions)>;

class VideoTask;

/// The task over clips of a video dataset (train/video_task.h); null for segmentation.
using VideoTaskFactory = std::function<std::unique_ptr<VideoTask>(const Recipe&, const pipeline::Dataset&)>;

/// One task.kind, or one segmentation network under model.name: what trains it, what evaluates
/// its checkpoints, and for clip tasks the VideoTask (heads, loss, metrics).
struct TaskEntry {
  TaskFactory train;
  Evaluator evaluate;
  VideoTaskFactory video;
};

/// task.kind.
const Registry<TaskEntry>& tasks();
/// The networks of task.kind = "segmentation", under model.name (group "segmentation").
const Registry<TaskEntry>& segmentation_networks();

/// Fills every registry of pipeline, models and train, once (thread-safe).
void register_all();

}  // namespace holo::train
