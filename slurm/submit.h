#pragma once
/// `holo submit`, `holo status` and `holo cancel` as library calls: a run directory is the
/// handle of a SLURM run (its `slurm/job_id`, script, resolved recipe and event log).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "slurm/scheduler.h"
#include "slurm/script.h"

namespace holo::slurm {

/// Sets the [slurm] key `path` (e.g. "slurm.nodes") from a command-line flag, checked against
/// the schema like a recipe value. Throws holo::UsageError naming `flag` and the problem.
void apply_flag(Recipe& recipe, const std::string& path, const Value& value, const std::string& flag);

/// How `submit()` runs.
struct SubmitOptions {
  std::string holo_binary;  ///< absolute path of the `holo` executable the job runs; empty: this process's executable
  bool dry_run = false;     ///< only build and return the script: no file is written and nothing is submitted

  SubmitOptions& set_holo_binary(std::string v) { holo_binary = std::move(v); return *this; }
  SubmitOptions& set_dry_run(bool v) { dry_run = v; return *this; }
};

struct SubmitResult {
  std::string run_dir;  ///< absolute
  std::string script;   ///< the script text
  std::string job_id;   ///< empty for a dry run
};

/// Builds the script for `recipe` (run.dir made absolute first, so the job does not depend on
/// the submitting shell's HOLO_RUNS_DIR), and unless it is a dry run: refuses when the run
/// directory's previous job is still pending or running, writes `slurm/recipe.toml` and
/// `slurm/job.sbatch`, submits with sbatch, records the job id in `slurm/job_id` and a line in
/// `slurm/events.log`. Resubmitting a run continues it from its newest checkpoint.
SubmitResult submit(Recipe recipe, const SubmitOptions& options);

/// The newest complete checkpoint of a run.
struct CheckpointRef {
  int64_t step = 0;
  std::string path;
};
/// Newest `checkpoints/step-<8 digits>/` whose manifest.json says "complete": true; nullopt
/// when there is none.
std::optional<CheckpointRef> last_checkpoint(const std::string& run_dir);

/// Everything `holo status` reports.
struct RunStatus {
  std::string run_dir;
  std::string job_id;                       ///< empty when the run was never submitted
  std::optional<JobInfo> job;               ///< the scheduler's view of job_id
  int64_t starts = 0;                       ///< starts recorded in slurm/events.log
  std::optional<CheckpointRef> checkpoint;  ///< newest complete checkpoint
  std::string last_metrics;                 ///< last line of metrics.jsonl, or ""
  std::vector<std::string> last_events;     ///< last lines of slurm/events.log
};

/// Reads the run directory and asks the scheduler about its job. Throws holo::UsageError when
/// `run_dir` is not a directory.
RunStatus run_status(const std::string& run_dir, int event_lines = 5);

/// Human-readable report; `json` gives one JSON object instead.
std::string format_status(const RunStatus& status, bool json);

/// Cancels the run's job (`signal` empty), or sends it `signal` through its batch script (e.g.
/// "USR1": save a checkpoint and requeue while the restart budget lasts). Records the request
/// in slurm/events.log and returns the job id. Throws holo::UsageError when the run has no job
/// or its job has already ended.
std::string cancel_run(const std::string& run_dir, const std::string& signal = "");

}  // namespace holo::slurm
