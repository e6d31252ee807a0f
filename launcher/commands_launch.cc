// holo launch | bench allreduce | bench scaling
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/env.h"
#include "core/error.h"
#include "core/recipe.h"
#include "core/run_dir.h"
#include "dist/bench.h"
#include "dist/world.h"
#include "launcher/cli.h"
#include "launcher/launch.h"
#include "train/bench.h"

namespace holo::cli {
namespace {

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

/// The job ran and failed: `holo` exits with the job's own code.
class JobExit : public Error {
 public:
  JobExit(int code, const std::string& what) : Error(what), code_(code) {}
  int exit_code() const override { return code_; }

 private:
  int code_;
};

// ---- holo launch -------------------------------------------------------------------------

struct LaunchArgs {
  RecipeArgs recipe;
  int np = 1;
  std::vector<std::string> hosts;
  std::string hostfile;
  std::string launch_agent;
  std::string via = "auto";
  std::string command = "train";
  std::vector<std::string> extra;
  bool dry_run = false;
};

int run_launch_command(const LaunchArgs& a) {
  // A bad recipe stops here, before any worker starts: exit 2 naming the file and key.
  const Recipe recipe = load_recipe(a.recipe.file, a.recipe.overrides);
  launch::LaunchOptions o;
  o.srun_mpi = recipe.slurm.mpi;
  o.np = a.np;
  o.hosts = a.hosts;
  o.hostfile = a.hostfile;
  o.launch_agent = a.launch_agent;
  o.via = a.via;
  o.command = split_words(a.command);
  if (o.command.empty()) throw UsageError("launch: --command is empty");
  o.args.push_back(a.recipe.file);
  for (const auto& s : a.recipe.overrides) o.args.insert(o.args.end(), {"--set", s});
  o.args.insert(o.args.end(), a.extra.begin(), a.extra.end());
  o.holo_binary = launch::self_executable();
  // The workers' output reaches the user through the launcher, line by line: a progress bar
  // redrawn with carriage returns (mpirun gives workers a pseudo-terminal) would garble it.
  setenv("HOLO_PROGRESS", "lines", /*overwrite=*/0);
  // Rank 0 alone prints info lines; every other rank keeps its whole log in the run directory
  // from its first line on (core/log.h), whatever command the workers run.
  const std::string logs = (std::filesystem::absolute(run_dir_path(recipe)) / "logs").string();
  setenv("HOLO_LOG_DIR", logs.c_str(), /*overwrite=*/0);
  const launch::LaunchPlan plan = launch::plan_launch(o, launch::this_machine());
  if (a.dry_run) {
    std::cout << launch::to_command_line(plan) << "\n";
    return 0;
  }
  spdlog::info("launch: {} workers via {}: {}", a.np, plan.via, launch::to_command_line(plan));
  if (a.np > 1) {
    spdlog::info("launch: rank 0 logs here; rank{} {} log{} to {}/rank-<N>.log and show{} only warnings and errors here",
                 a.np > 2 ? "s 1 to" : "", a.np - 1, a.np > 2 ? "" : "s", env::log_dir(), a.np > 2 ? "" : "s");
  }
  return launch::run_launch(plan);
}

// ---- shared by the benchmarks -----------------------------------------------------------

/// True when this process is a worker of a launched job (mpirun/srun), false when a user ran
/// the benchmark by hand and it must start its workers itself.
bool launched() {
  return dist::discover_world([](const char* n) { return std::getenv(n); }).mpi;
}

/// Starts `np` copies of `holo <command> <args>` under MPI and returns their exit code.
int self_launch(int np, std::vector<std::string> command, std::vector<std::string> args) {
  launch::LaunchOptions o;
  o.np = np;
  o.via = launch::this_machine().in_slurm ? "srun" : "mpirun";
  o.command = std::move(command);
  o.args = std::move(args);
  o.holo_binary = launch::self_executable();
  return launch::run_launch(launch::plan_launch(o, launch::this_machine()));
}

}  // namespace

void add_launch_commands(CLI::App& app) {
  auto la = std::make_shared<LaunchArgs>();
  auto* launch_cmd = app.add_subcommand(
      "launch", "Start N workers of a job (holo train by default) through mpirun, or srun inside "
                "a SLURM allocation");
  launch_cmd->add_option("--np", la->np, "Number of workers (at least 1)")
      ->required()
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            try {
              size_t used = 0;
              const long n = std::stol(v, &used);
              if (used == v.size() && n >= 1) return "";
            } catch (const std::exception&) {
            }
            return "the number of workers must be a whole number of at least 1, got '" + v + "'";
          },
          "N>=1"));
  launch_cmd->add_option("--hosts", la->hosts, "Hosts (h or h:slots), comma-separated")
      ->delimiter(',');
  launch_cmd->add_option("--hostfile", la->hostfile, "mpirun hostfile (one host a line: 'h slots=N')");
  launch_cmd->add_option("--launch-agent", la->launch_agent,
                         "How mpirun starts workers on other hosts: a program called as 'AGENT HOST "
                         "COMMAND...' (mpirun's plm_rsh_agent; default ssh)");
  launch_cmd->add_option("--via", la->via, "auto (srun in SLURM, else mpirun; one worker: direct), "
                         "mpirun, srun, direct")
      ->check(CLI::IsMember({"auto", "mpirun", "srun", "direct"}));
  launch_cmd->add_option("--command", la->command,
                         "holo subcommand the workers run, e.g. \"train\", \"eval\"");
  launch_cmd->add_flag("--dry-run", la->dry_run, "Print the command that would run, start nothing");
  add_recipe_args(launch_cmd, la->recipe);
  launch_cmd->add_option("worker_args", la->extra, "Further worker arguments, after --");
  launch_cmd->callback([la] {
    const int rc = run_launch_command(*la);
    if (rc != 0) throw JobExit(rc, "launch: the job exited with code " + std::to_string(rc));
  });

  auto* bench = app.get_subcommand("bench");

  auto ar = std::make_shared<dist::AllreduceBenchOptions>();
  auto* allreduce = bench->add_subcommand(
      "allreduce", "Bus bandwidth of Holo's MPI communicator vs a raw MPI_Allreduce loop");
  allreduce->add_option("--np", ar->np, "Ranks to start (when not already under mpirun/srun)")
      ->check(CLI::Range(2, 1024));
  allreduce->add_option("--min-bytes", ar->min_bytes, "Smallest buffer")->check(CLI::PositiveNumber);
  allreduce->add_option("--max-bytes", ar->max_bytes, "Largest buffer (sizes grow x4)")
      ->check(CLI::PositiveNumber);
  allreduce->add_option("--rounds", ar->rounds, "Rounds per size (best is kept)")
      ->check(CLI::Range(1, 100));
  allreduce->add_option("--json", ar->json, "Also write the figures to this JSON file");
  allreduce->callback([ar] {
    if (launched()) {
      dist::run_allreduce_bench(*ar);
      return;
    }
    std::vector<std::string> args{"--min-bytes", std::to_string(ar->min_bytes), "--max-bytes",
                                  std::to_string(ar->max_bytes), "--rounds",
                                  std::to_string(ar->rounds)};
    if (!ar->json.empty()) {
      args.insert(args.end(), {"--json", std::filesystem::absolute(ar->json).string()});
    }
    const int rc = self_launch(ar->np, {"bench", "allreduce"}, args);
    if (rc != 0) throw JobExit(rc, "bench allreduce: the workers exited with code " + std::to_string(rc));
  });

  auto sc = std::make_shared<holo::train::ScalingBenchOptions>();
  auto worker = std::make_shared<bool>(false);
  auto* scaling = bench->add_subcommand(
      "scaling", "Training throughput of a small 3D CNN on 1 rank vs N ranks (same threads each), "
                 "and the all-reduce time hidden behind backward");
  scaling->add_option("--np", sc->np, "Ranks of the parallel run")->check(CLI::Range(2, 1024));
  scaling->add_option("--threads", sc->threads, "Intra-op threads per rank")->check(CLI::Range(1, 256));
  scaling->add_option("--steps", sc->steps, "Timed steps per mode and launch")->check(CLI::Range(2, 100000));
  scaling->add_option("--rounds", sc->rounds, "Pairs of launches (1 rank, then N); median and spread are reported")
      ->check(CLI::Range(1, 1000));
  scaling->add_option("--warmup", sc->warmup, "Untimed steps before each timed series")->check(CLI::Range(0, 1000));
  // Options the benchmark passes to its own workers: not shown in --help.
  scaling->add_option("--worker-rounds", sc->worker_rounds, "Worker: rounds of the three modes (internal)")
      ->check(CLI::Range(1, 1000))
      ->group("");
  scaling->add_option("--batch", sc->batch, "Clips per rank per step")->check(CLI::Range(1, 4096));
  scaling->add_option("--frames", sc->frames, "Frames per clip")->check(CLI::Range(1, 512));
  scaling->add_option("--size", sc->size, "Height and width")->check(CLI::Range(8, 1024));
  scaling->add_option("--bucket-mb", sc->bucket_mb, "Gradient bucket size")->check(CLI::Range(0.001, 4096.0));
  scaling->add_option("--json", sc->json, "Also write the figures to this JSON file");
  scaling->add_flag("--worker", *worker, "Run as one rank of a timed run (internal)")->group("");
  scaling->add_option("--result", sc->result, "Worker: JSON file rank 0 writes (internal)")->group("");
  scaling->callback([sc, worker] {
    if (*worker) {
      holo::train::run_scaling_worker(*sc);
    } else {
      holo::train::run_scaling_bench(*sc, [](int np, const std::vector<std::string>& args) {
        return self_launch(np, {"bench", "scaling"}, args);
      });
    }
  });
}

}  // namespace holo::cli
