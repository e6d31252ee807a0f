// holo train | eval | ckpt inspect/export

#include <CLI/CLI.hpp>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "core/json_numbers.h"
#include "core/recipe.h"
#include "core/run_dir.h"
#include "dist/world.h"
#include "launcher/cli.h"
#include "models/network.h"
#include "models/weights.h"
#include "pipeline/data_check.h"
#include "train/signals.h"
#include "train/table.h"
#include "train/trainer.h"

namespace holo::cli {
namespace {

namespace fs = std::filesystem;

void inspect(const std::string& dir_arg) {
  // Verifies every shard's checksum; a run directory falls back to its newest good checkpoint.
  const auto loaded = ckpt::Manager::load_newest_valid(dir_arg, 0, 1);
  const std::string& dir = loaded.path;
  const auto m = nlohmann::json::parse(read_file(dir + "/manifest.json"));
  std::cout << "checkpoint " << dir << "\n"
            << "  step " << loaded.step << ", epoch " << loaded.epoch << ", saved by "
            << loaded.world_size << " rank(s) at " << m.value("created", "") << "\n"
            << "  dataset hash " << loaded.dataset_hash << "\n";
  if (loaded.meta.contains("loader")) std::cout << "  loader " << loaded.meta["loader"].dump() << "\n";
  if (m.contains("score") && !m["score"].is_null()) std::cout << "  score " << m["score"].dump() << "\n";
  TextTable shards({"shard", "rank", "bytes", "checksum", "status"});
  for (const auto& s : m.at("shards")) {
    shards.add_row({s.at("file"), std::to_string(json_number_at<int>(s, "rank")),
                    std::to_string(json_number_at<uint64_t>(s, "bytes")), s.at("checksum"), "ok"});
  }
  std::cout << shards.str();
  int64_t params = 0, bytes = 0, model_tensors = 0, optim_tensors = 0;
  for (const auto& [name, t] : loaded.replicated) {
    bytes += t.numel() * t.element_size();
    if (name.rfind("model.", 0) == 0) {
      ++model_tensors;
      if (t.is_floating_point()) params += t.numel();
    } else if (name.rfind("optim.", 0) == 0) {
      ++optim_tensors;
    }
  }
  std::cout << "  " << model_tensors << " model tensors (" << params << " values), " << optim_tensors
            << " optimiser tensors, " << bytes << " bytes\n";
}

/// Writes the newest valid checkpoint's network as one torch.save-compatible dict, named as
/// `layout` names it (models/weights.h): the family comes from the checkpoint's own recipe.
void export_model(const std::string& dir_arg, const std::string& out, const std::string& layout_arg) {
  const auto loaded = ckpt::Manager::load_newest_valid(dir_arg, 0, 1);
  const std::string& dir = loaded.path;
  const models::WeightsLayout layout = models::parse_weights_layout(layout_arg);
  std::vector<std::pair<std::string, at::Tensor>> state;
  for (const auto& [name, t] : loaded.replicated) {
    if (name.rfind("model.", 0) == 0) state.emplace_back(name.substr(6), t);
  }
  std::string family;
  if (layout != models::WeightsLayout::kHolo) {
    if (loaded.recipe_toml.empty()) throw IoError("'" + dir + "' does not record its recipe, so its network is unknown");
    family = models::resolve_model(parse_recipe(loaded.recipe_toml, dir + "/manifest.json").model).name;
  }
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : models::export_weights(state, family, layout)) dict.insert(name, t);
  const std::vector<char> bytes = torch::pickle_save(dict);
  write_file_atomic(out, std::string(bytes.begin(), bytes.end()));
  std::cout << "exported " << dict.size() << " tensors of " << dir << " (step " << loaded.step << ") in "
            << models::to_string(layout) << " names to " << out << " (torch.load gives a state dict)\n";
}

}  // namespace

void add_train_commands(CLI::App& app) {
  auto train_args = std::make_shared<RecipeArgs>();
  auto* train_cmd = app.add_subcommand(
      "train", "Train a recipe on this process (one rank; `holo launch` starts several)");
  add_recipe_args(train_cmd, *train_args);
  train_cmd->callback([train_args] {
    const Recipe recipe = load_recipe(train_args->file, train_args->overrides);
    pipeline::check_data(recipe, pipeline::splits_for(recipe, "train"));
    const auto result = train::train(recipe);
    dist::finalize_world();
    if (result.preempted) {
      throw ExitRequest(train::kExitPreempted, "stopped by a signal at step " +
                                                   std::to_string(result.step) +
                                                   " after saving a checkpoint");
    }
  });

  auto eval_args = std::make_shared<RecipeArgs>();
  auto checkpoint = std::make_shared<std::string>();
  auto out_dir = std::make_shared<std::string>();
  auto* eval_cmd = app.add_subcommand(
      "eval", "Evaluate a checkpoint: multi-view testing (top-1/top-5 or mAP, per-class CSV) or segmentation metrics");
  add_recipe_args(eval_cmd, *eval_args);
  eval_cmd->add_option("--checkpoint", *checkpoint,
                       "Checkpoint directory, or a run directory (its newest checkpoint)")
      ->required();
  eval_cmd->add_option("--out", *out_dir, "Folder for eval-<split>.json and the CSV (default: the run directory)");
  auto eval_split = std::make_shared<std::string>();
  eval_cmd->add_option("--split", *eval_split, "val or test (default: the recipe's eval.split), as --set eval.split=")
      ->check(CLI::IsMember({"val", "test"}));
  auto save_predictions = std::make_shared<bool>(false);
  eval_cmd->add_flag("--save-predictions", *save_predictions,
                     "Also write predictions-<split>.csv (top 5 per video) and predictions-<split>.npy (scores); "
                     "segmentation: predictions-<split>/<video>.txt, one label per frame");
  eval_cmd->callback([eval_args, checkpoint, out_dir, eval_split, save_predictions] {
    std::vector<std::string> overrides = eval_args->overrides;
    if (!eval_split->empty()) overrides.push_back("eval.split=" + *eval_split);
    const Recipe recipe = load_recipe(eval_args->file, overrides);
    pipeline::check_data(recipe, pipeline::splits_for(recipe, "eval"));
    const std::string out = out_dir->empty() ? run_dir_path(recipe) : *out_dir;
    const auto result = train::evaluate(recipe, *checkpoint, out, *save_predictions);
    if (dist::init_world().rank == 0) {
      std::cout << result.table;
      if (!result.csv_path.empty()) std::cout << "per-class results: " << result.csv_path << "\n";
      if (!result.predictions_csv.empty()) {
        std::cout << "predictions: " << result.predictions_csv << ", scores: " << result.predictions_npy << "\n";
      }
      if (!result.predictions_dir.empty()) std::cout << "predictions: " << result.predictions_dir << "\n";
    }
    dist::finalize_world();
  });

  auto extract_args = std::make_shared<RecipeArgs>();
  auto extract_ckpt = std::make_shared<std::string>();
  auto extract_out = std::make_shared<std::string>();
  auto extract_split = std::make_shared<std::string>("val");
  auto* extract_cmd = app.add_subcommand(
      "extract", "Clip features (averaged over the test views) of every video into the HDF5 feature store");
  add_recipe_args(extract_cmd, *extract_args);
  extract_cmd->add_option("--checkpoint", *extract_ckpt, "Checkpoint directory, or a run directory")->required();
  extract_cmd->add_option("--out", *extract_out, "Feature store folder (shards, index.h5, labels.csv)")->required();
  extract_cmd->add_option("--split", *extract_split, "train, val or test")->check(CLI::IsMember({"train", "val", "test"}));
  auto per_frame = std::make_shared<bool>(false);
  extract_cmd->add_flag("--per-frame", *per_frame,
                        "A feature per frame (the clip centred on it): frames x D per video, for segmentation "
                        "recipes (data.features)");
  extract_cmd->callback([extract_args, extract_ckpt, extract_out, extract_split, per_frame] {
    const Recipe recipe = load_recipe(extract_args->file, extract_args->overrides);
    pipeline::check_data(recipe, {*extract_split});
    if (*per_frame) {
      const int64_t n = train::extract_frames(recipe, *extract_ckpt, *extract_split, *extract_out);
      if (dist::init_world().rank == 0) {
        std::cout << "wrote per-frame features (frames x D) of " << n << " videos to " << *extract_out
                  << " (a segmentation recipe reads them with data.features = \"" << *extract_out << "\")\n";
      }
      dist::finalize_world();
      return;
    }
    const int64_t n = train::extract(recipe, *extract_ckpt, *extract_split, *extract_out);
    if (dist::init_world().rank == 0) {
      std::cout << "wrote features of " << n << " videos to " << *extract_out << " (open "
                << *extract_out << "/index.h5 with h5py; labels in labels.csv; holo cluster "
                << *extract_out << "/index.h5 --k N --labels " << *extract_out << "/labels.csv)\n";
    }
    dist::finalize_world();
  });

  auto* ckpt_cmd = app.add_subcommand("ckpt", "Inspect and export checkpoints");
  ckpt_cmd->require_subcommand(1);
  auto inspect_dir = std::make_shared<std::string>();
  auto* inspect_cmd = ckpt_cmd->add_subcommand("inspect", "Print a checkpoint's manifest and verify its shards");
  inspect_cmd->add_option("dir", *inspect_dir, "Checkpoint directory, or a run directory")->required();
  inspect_cmd->callback([inspect_dir] { inspect(*inspect_dir); });
  auto export_dir = std::make_shared<std::string>();
  auto export_out = std::make_shared<std::string>();
  auto* export_cmd = ckpt_cmd->add_subcommand(
      "export", "Write the model's state dict to one file that Python's torch.load reads");
  export_cmd->add_option("dir", *export_dir, "Checkpoint directory, or a run directory")->required();
  export_cmd->add_option("--out", *export_out, "Output file, e.g. model.pt")->required();
  auto export_layout = std::make_shared<std::string>("holo");
  auto export_tv = std::make_shared<bool>(false);
  export_cmd->add_option("--layout", *export_layout,
                         "Tensor names: holo, torchvision (resnet*_2d, r3d_18, mc3_18, r2plus1d_18), "
                         "pyslowfast or mmaction2 (docs/weights.md)")
      ->check(CLI::IsMember(models::weights_layout_names()));
  export_cmd->add_flag("--torchvision", *export_tv, "Same as --layout torchvision");
  export_cmd->callback([export_dir, export_out, export_layout, export_tv] {
    export_model(*export_dir, *export_out, *export_tv ? "torchvision" : *export_layout);
  });
}

}  // namespace holo::cli
