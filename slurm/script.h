#pragma once
/// The sbatch script `holo submit` writes: resources from the recipe's [slurm] table, workers
/// started with srun (or mpirun) inside the allocation, and the preemption protocol: USR1 from
/// SLURM (`--signal=B:USR1@grace`) is forwarded to the workers, which save a checkpoint and exit
/// with code 3; the script then requeues the job while `slurm.max_restarts` allows, and a
/// restarted job resumes from the newest checkpoint in the run directory. See docs/slurm.md.
///
/// Every value that reaches the script is validated (the recipe schema's forms, plus the
/// relations below) and quoted, for the shell in the script's body and for sbatch's own parser
/// in `#SBATCH` lines, so no recipe string can add a line or a command to the script.

#include <cstdint>
#include <string>
#include <vector>

#include "core/recipe.h"

namespace holo::slurm {

/// Exit code of a worker that saved a checkpoint on SIGUSR1/SIGTERM and stopped (kExitPreempted
/// of the trainer); the batch script requeues on it.
constexpr int kExitPreempted = 3;

/// Seconds srun lets the other workers run on once one has ended (`srun --wait`): after a
/// preemption every rank exits within moments of the others; after a failure (a worker killed,
/// a node lost) the survivors, which may wait in a collective for a dead peer, are killed then.
constexpr int kWorkerExitWait_s = 30;

/// Files a submitted run keeps under `<run dir>/slurm/`.
struct RunFiles {
  explicit RunFiles(const std::string& run_dir);
  std::string run_dir;
  std::string slurm_dir;  ///< <run>/slurm
  std::string script;     ///< job.sbatch: the script as submitted
  std::string recipe;     ///< recipe.toml: the resolved recipe the job trains
  std::string job_id;     ///< job_id: the latest job id, one line
  std::string events;     ///< events.log: submissions, starts, signals, requeues, the end
  /// Output and error files of job `id` ("%j" in the script).
  std::string output(const std::string& id) const;
  std::string error(const std::string& id) const;
};

/// What the script needs besides the recipe.
struct ScriptOptions {
  ScriptOptions(std::string holo, std::string run) : holo_binary(std::move(holo)), run_dir(std::move(run)) {}
  std::string holo_binary;  ///< absolute path of the `holo` executable the workers run (must exist on every node)
  std::string run_dir;      ///< absolute run directory; the job's recipe is `<run dir>/slurm/recipe.toml`
  std::string origin;       ///< text for the script's header comment: where the recipe came from

  ScriptOptions& set_origin(std::string v) { origin = std::move(v); return *this; }
};

/// `s` as one word for a POSIX shell: single-quoted, with each `'` written as `'\''`. Safe for
/// every byte string (newlines, `$`, backquotes, quotes).
std::string shell_quote(const std::string& s);

/// `s` as one argument of an `#SBATCH` line: double-quoted with `"` and `\` escaped, as
/// sbatch's script parser reads it. Throws holo::UsageError for control characters (a newline
/// would end the line) naming `what`.
std::string sbatch_quote(const std::string& s, const std::string& what);

/// Workers per node: slurm.tasks_per_node, else gpus_per_node, else 1.
int64_t tasks_per_node(const SlurmOptions& o);

/// Re-checks every [slurm] value against the schema (a Recipe may have been built in code) and
/// the relations between them: tasks_per_node equals gpus_per_node when both are set, the
/// grace period is shorter than the time limit, gpu_type only with GPUs. Throws
/// holo::UsageError naming the key and the value.
void validate(const Recipe& recipe);

/// Seconds of an sbatch time limit (the forms slurm.time accepts). Throws holo::UsageError.
int64_t time_limit_seconds(const std::string& time);

/// SLURM's job name for a run: "holo-" + run.name with characters outside [A-Za-z0-9_.-]
/// replaced by '_'.
std::string job_name(const Recipe& recipe);

/// The complete sbatch script for `recipe` (validated first). Deterministic: the same inputs
/// give the same text.
std::string build_script(const Recipe& recipe, const ScriptOptions& options);

}  // namespace holo::slurm
