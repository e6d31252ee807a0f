#include "launcher/cli.h"

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "core/allocator.h"
#include "core/error.h"
#include "core/log.h"
#include "train/registry.h"

namespace holo::cli {

void add_recipe_args(CLI::App* cmd, RecipeArgs& args) {
  cmd->add_option("recipe", args.file, "Recipe file (TOML)")->required();
  cmd->add_option("--set", args.overrides,
                  "Override a recipe key, typed and validated like the file: --set optim.lr=0.05")
      ->type_name("KEY=VALUE")
      ->expected(1)  // one KEY=VALUE per --set: then `--` after the last one ends the options
      ->allow_extra_args(false)
      ->take_all();
}

/// `holo frobnicate` or `holo data frobnicate`: name the unknown command and the known ones
/// (CLI11 alone answers "A subcommand is required" or "arguments were not expected").
void check_command_names(CLI::App& app, int argc, char** argv) {
  CLI::App* cur = &app;
  std::string path = "holo";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.empty() || arg[0] == '-') return;  // options (and their values) from here on
    const auto subs = cur->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) return;  // a positional argument of a command
    CLI::App* next = nullptr;
    for (CLI::App* s : subs) {
      if (s->check_name(arg)) next = s;
    }
    if (next == nullptr) {
      std::string names;
      for (CLI::App* s : subs) names += (names.empty() ? "" : ", ") + s->get_name();
      throw ExitRequest(2, "unknown command '" + path + " " + arg + "'; the commands of " + path + " are: " + names +
                               " (" + path + " --help)");
    }
    cur = next;
    path += " " + arg;
  }
}

int run(int argc, char** argv) {
  // Every registry first: recipes are checked against the names they hold.
  train::register_all();
  CLI::App app{"holo: training orchestrator for video understanding"};
  app.name("holo");
  app.require_subcommand(1);
  app.fallthrough(false);
  // Benchmarks of every layer hang under one `holo bench` parent; groups add theirs to it.
  app.add_subcommand("bench", "Benchmarks, each side by side with a baseline on this machine")
      ->require_subcommand(1);
  add_system_commands(app);
  add_core_commands(app);
  add_model_commands(app);
  add_data_commands(app);
  add_report_commands(app);
  add_segmentation_commands(app);
  add_launch_commands(app);
  add_slurm_commands(app);
  add_train_commands(app);
  add_checkpoint_commands(app);
  try {
    const bool tuned = tune_allocator();
    log::init();
    spdlog::debug("glibc allocator: {}",
                  tuned ? "freed blocks up to 32 MiB kept for reuse (HOLO_MALLOC_TUNING)"
                        : "glibc's defaults (HOLO_MALLOC_TUNING=0 or GLIBC_TUNABLES)");
    check_command_names(app, argc, argv);
    app.parse(argc, argv);
    return 0;
  } catch (const ExitRequest& e) {
    std::cerr << "holo: " << e.message << "\n";
    return e.code;
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const Error& e) {
    std::cerr << "holo: error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "holo: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace holo::cli
