// holo env | recipe check/show/doc

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "core/env.h"
#include "core/recipe.h"
#include "core/run_dir.h"
#include "launcher/cli.h"
#include "pipeline/data_check.h"

namespace holo::cli {
namespace {

void print_env(bool markdown) {
  if (markdown) {
    std::cout << "| variable | type | default | meaning |\n|---|---|---|---|\n";
    for (const auto& k : env::knobs()) {
      std::cout << "| `" << k.name << "` | " << k.type << " | `" << k.default_value << "` | "
                << k.doc << " |\n";
    }
    return;
  }
  for (const auto& k : env::knobs()) {
    std::cout << k.name << "=" << k.value() << (k.is_set() ? "" : "  (default)") << "\n    "
              << k.type << ", default " << k.default_value << ": " << k.doc << "\n";
  }
}

}  // namespace

void add_core_commands(CLI::App& app) {
  auto markdown = std::make_shared<bool>(false);
  auto* env_cmd = app.add_subcommand("env", "List the HOLO_* environment knobs and their values");
  env_cmd->add_flag("--markdown", *markdown, "Print a Markdown table (docs/env.md)");
  env_cmd->callback([markdown] { print_env(*markdown); });

  auto* recipe = app.add_subcommand("recipe", "Check, show and document recipes");
  recipe->require_subcommand(1);

  auto check_args = std::make_shared<RecipeArgs>();
  auto* check = recipe->add_subcommand("check", "Validate a recipe; exit 2 naming the first problem");
  add_recipe_args(check, *check_args);
  check->callback([check_args] {
    const Recipe r = load_recipe(check_args->file, check_args->overrides);
    pipeline::check_data(r, pipeline::splits_for(r, "all"));
    std::cout << "ok: " << check_args->file << " (" << r.sources.size() << " file"
              << (r.sources.size() == 1 ? "" : "s") << ", " << r.overrides.size()
              << " override" << (r.overrides.size() == 1 ? "" : "s") << ")\n";
  });

  auto show_args = std::make_shared<RecipeArgs>();
  auto* show = recipe->add_subcommand("show", "Print the fully resolved recipe (every key)");
  add_recipe_args(show, *show_args);
  auto show_out = std::make_shared<std::string>();
  show->add_option("--out", *show_out, "Write to this file (atomically) instead of stdout");
  show->callback([show_args, show_out] {
    const std::string text = to_toml(load_recipe(show_args->file, show_args->overrides));
    if (show_out->empty()) {
      std::cout << text;
    } else {
      write_file_atomic(*show_out, text);
    }
  });

  auto doc_markdown = std::make_shared<bool>(false);
  auto* doc = recipe->add_subcommand("doc", "Print every recipe key, its type, default and meaning");
  doc->add_flag("--markdown", *doc_markdown, "Print Markdown tables (docs/recipe-keys.md)");
  doc->callback([doc_markdown] { std::cout << recipe_doc(*doc_markdown); });
}

}  // namespace holo::cli
