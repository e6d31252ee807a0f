// holo submit | status | cancel: SLURM runs, handled through their run directory.

#include <CLI/CLI.hpp>

#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "core/recipe.h"
#include "launcher/cli.h"
#include "pipeline/data_check.h"
#include "slurm/submit.h"

namespace holo::cli {
namespace {

/// `holo submit` flags that set [slurm] keys; each is validated like the recipe value.
struct SubmitFlags {
  RecipeArgs recipe;
  std::optional<int64_t> nodes, gpus_per_node, cpus_per_task, max_restarts;
  std::optional<std::string> time, partition, account, qos, constraint, mem;
  std::string holo_binary;
  bool dry_run = false;
};

void submit_command(const SubmitFlags& f) {
  Recipe recipe = load_recipe(f.recipe.file, f.recipe.overrides);
  auto set_int = [&](const std::optional<int64_t>& v, const char* key, const char* flag) {
    if (v) slurm::apply_flag(recipe, key, Value(*v), flag);
  };
  auto set_str = [&](const std::optional<std::string>& v, const char* key, const char* flag) {
    if (v) slurm::apply_flag(recipe, key, Value(*v), flag);
  };
  set_int(f.nodes, "slurm.nodes", "--nodes");
  set_int(f.gpus_per_node, "slurm.gpus_per_node", "--gpus-per-node");
  set_int(f.cpus_per_task, "slurm.cpus_per_task", "--cpus-per-task");
  set_int(f.max_restarts, "slurm.max_restarts", "--max-restarts");
  set_str(f.time, "slurm.time", "--time");
  set_str(f.partition, "slurm.partition", "--partition");
  set_str(f.account, "slurm.account", "--account");
  set_str(f.qos, "slurm.qos", "--qos");
  set_str(f.constraint, "slurm.constraint", "--constraint");
  set_str(f.mem, "slurm.mem", "--mem");
  // Missing data stops here, before anything is written or queued.
  pipeline::check_data(recipe, pipeline::splits_for(recipe, "all"));

  const auto result = slurm::submit(
      recipe, slurm::SubmitOptions().set_holo_binary(f.holo_binary).set_dry_run(f.dry_run));
  if (f.dry_run) {
    std::cout << result.script;
    return;
  }
  std::cout << "submitted job " << result.job_id << "\n"
            << "run directory " << result.run_dir << "\n"
            << "follow it with: holo status " << result.run_dir << "\n";
}

}  // namespace

void add_slurm_commands(CLI::App& app) {
  auto f = std::make_shared<SubmitFlags>();
  auto* submit = app.add_subcommand(
      "submit", "Submit a recipe to SLURM as a self-requeueing batch job (see docs/slurm.md)");
  add_recipe_args(submit, f->recipe);
  submit->add_option("--nodes", f->nodes, "Nodes (slurm.nodes)");
  submit->add_option("--gpus-per-node", f->gpus_per_node,
                     "GPUs per node, one worker each (slurm.gpus_per_node)");
  submit->add_option("--cpus-per-task", f->cpus_per_task, "CPUs per worker (slurm.cpus_per_task)");
  submit->add_option("--time", f->time, "Time limit per allocation, [D-]HH:MM:SS (slurm.time)");
  submit->add_option("--partition", f->partition, "Partition(s) (slurm.partition)");
  submit->add_option("--account", f->account, "Account (slurm.account)");
  submit->add_option("--qos", f->qos, "QOS (slurm.qos)");
  submit->add_option("--constraint", f->constraint, "Node features (slurm.constraint)");
  submit->add_option("--mem", f->mem, "Memory per node, e.g. 64G (slurm.mem)");
  submit->add_option("--max-restarts", f->max_restarts,
                     "Self-requeues allowed after preemption (slurm.max_restarts)");
  submit->add_option("--holo-binary", f->holo_binary,
                     "Absolute path of holo on the compute nodes (default: this executable)");
  submit->add_flag("--dry-run", f->dry_run, "Print the sbatch script; write and submit nothing");
  submit->callback([f] { submit_command(*f); });

  auto run_dir = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* status = app.add_subcommand(
      "status", "Job state, restarts, newest checkpoint and last metrics of a submitted run");
  status->add_option("run_dir", *run_dir, "Run directory")->required();
  status->add_flag("--json", *json, "Print one JSON object");
  status->callback([run_dir, json] {
    std::cout << slurm::format_status(slurm::run_status(*run_dir), *json);
  });

  auto cancel_dir = std::make_shared<std::string>();
  auto preempt = std::make_shared<bool>(false);
  auto* cancel = app.add_subcommand(
      "cancel", "Cancel a submitted run's job (its workers save a checkpoint on SIGTERM)");
  cancel->add_option("run_dir", *cancel_dir, "Run directory")->required();
  cancel->add_flag("--preempt", *preempt,
                   "Send the preemption warning (USR1) instead: the job saves a checkpoint and "
                   "requeues itself while slurm.max_restarts allows");
  cancel->callback([cancel_dir, preempt] {
    const std::string id = slurm::cancel_run(*cancel_dir, *preempt ? "USR1" : "");
    std::cout << (*preempt ? "sent USR1 to job " : "cancelled job ") << id << "\n";
  });
}

}  // namespace holo::cli
