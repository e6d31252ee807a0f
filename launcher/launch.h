#pragma once
/// Starting N workers of one job: `holo launch` and the self-launching benchmarks. No LibTorch.
///
/// A plan is made first (pure: what would run, given the options and facts about the machine)
/// and then run: the workers' output lines are prefixed with their rank ("[rank 3] ...") and the
/// launcher's exit code is the job's. See docs/distributed.md.

#include <string>
#include <vector>

namespace holo::launch {

struct LaunchOptions {
  int np = 1;                         ///< number of workers
  std::vector<std::string> hosts;     ///< mpirun --host / srun --nodelist entries ("h" or "h:slots")
  std::string hostfile;               ///< mpirun --hostfile
  std::vector<std::string> command = {"train"};  ///< holo subcommand the workers run
  std::vector<std::string> args;      ///< the workers' arguments after the subcommand
  std::string holo_binary;            ///< absolute path of the holo executable
  std::string via = "auto";           ///< auto, mpirun, srun, direct
  std::string srun_mpi = "pmix";      ///< srun --mpi plugin (the recipe's slurm.mpi)
};

/// Facts about where the launcher runs (this_machine() reads them).
struct Machine {
  bool root = false;
  int cores = 1;
  bool in_slurm = false;              ///< SLURM_JOB_ID set: inside an allocation
  std::vector<std::string> env_names; ///< variables passed to the workers (mpirun -x)
};
Machine this_machine();

struct LaunchPlan {
  std::string via;                    ///< mpirun, srun or direct
  std::vector<std::string> argv;      ///< argv[0] is looked up in PATH
};

/// What `options` would run on `machine`. "auto": srun inside a SLURM allocation, otherwise
/// direct for one worker without hosts, otherwise mpirun. Throws holo::UsageError for
/// impossible requests (np < 1, srun outside an allocation, direct with several workers).
LaunchPlan plan_launch(const LaunchOptions& options, const Machine& machine);

/// The plan as one shell-quoted line, for logs and --dry-run.
std::string to_command_line(const LaunchPlan& plan);

/// Turns one line of a worker's output as mpirun (--tag-output: "[1,3]<stdout>:text") or srun
/// (--label: "3: text") prints it into "[rank 3] text" (just "text" when it already names its
/// rank, as Holo's log lines do); other lines are returned unchanged.
/// `is_stderr` is set when mpirun says the line came from the worker's stderr.
std::string prefix_rank(const std::string& via, const std::string& line, bool* is_stderr = nullptr);

/// Runs the plan: forwards SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 to the job, prefixes output
/// lines, and returns the job's exit code (128 + signal when the launcher program was killed).
/// Throws holo::Error when the program cannot be started.
int run_launch(const LaunchPlan& plan);

/// Absolute path of the running executable.
std::string self_executable();

}  // namespace holo::launch
