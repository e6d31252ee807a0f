#pragma once
/// The `holo` command is assembled from groups of subcommands, one registration function per
/// group (one file each in launcher/). Subcommand callbacks throw holo::Error subclasses;
/// main() turns them into exit codes: 0 success, 1 runtime failure, 2 usage or recipe error.

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace holo::cli {

/// The arguments every recipe-taking subcommand shares: the recipe file and `--set` overrides.
struct RecipeArgs {
  std::string file;
  std::vector<std::string> overrides;
};
/// Adds RECIPE (positional, required) and `--set KEY=VALUE` (repeatable) to `cmd`.
void add_recipe_args(CLI::App* cmd, RecipeArgs& args);

/// Groups register their subcommands on `app`; benchmarks go under `app.get_subcommand("bench")`.

/// `holo version`, `holo doctor`: what this build has and what this machine offers.
void add_system_commands(CLI::App& app);

/// `holo env`, `holo recipe check|show|doc`.
void add_core_commands(CLI::App& app);

/// `holo data synth|probe`, `holo bench decode`.
void add_data_commands(CLI::App& app);

/// `holo plot RUN_DIR`, `holo cluster FEATURES.h5 --k N`.
void add_report_commands(CLI::App& app);

/// `holo metrics segmentation`, `holo bench segmentation`, `holo bench viterbi`.
void add_segmentation_commands(CLI::App& app);

/// `holo model info` of a segmentation network (`target`: a recipe with model.name mstcn or
/// mucon, or one of those names): its parts' parameters (MS-TCN: and GFLOPs per 1,000 frames),
/// for the recipe's feature dimension and classes when its data can be read, else D = 2048 and
/// `classes` (48 when 0). False when `target` is not a segmentation network.
bool segmentation_model_info(const std::string& target, const std::vector<std::string>& overrides, int64_t classes);

/// `holo launch`, `holo bench allreduce`, `holo bench scaling`.
void add_launch_commands(CLI::App& app);

/// `holo submit`, `holo status`, `holo cancel` (SLURM).
void add_slurm_commands(CLI::App& app);

/// `holo train`, `holo eval`, `holo ckpt inspect|export`.
void add_train_commands(CLI::App& app);

/// `holo bench checkpoint`.
void add_checkpoint_commands(CLI::App& app);

/// Thrown by a subcommand that ends normally but must exit with a particular code (e.g. 3 for
/// a training run stopped by a preemption signal after saving its checkpoint).
struct ExitRequest {
  ExitRequest(int c, std::string m) : code(c), message(std::move(m)) {}
  int code;
  std::string message;
};

/// `holo model list`, `holo model info RECIPE|NAME`, `holo bench model`.
void add_model_commands(CLI::App& app);

/// Runs the `holo` command line; returns the process exit code.
int run(int argc, char** argv);

}  // namespace holo::cli
