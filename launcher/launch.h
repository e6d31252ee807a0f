#pragma once
/// Starting N workers of one job: `holo launch` and the self-launching benchmarks. No LibTorch.
///
/// A plan is made first (pure: what would run, given the options and facts about the machine)
/// and then run: the workers' output lines are prefixed with their rank ("[rank 3] ...") and the
/// launcher's exit code is the job's. See docs/distributed.md.

#include <string>
#include <utility>
#include <vector>

namespace holo::launch {

struct LaunchOptions {
  int np = 1;                         ///< number of workers
  std::vector<std::string> hosts;     ///< mpirun --host / srun --nodelist entries ("h" or "h:slots")
  std::string hostfile;               ///< mpirun --hostfile
  /// How mpirun starts its daemons on the other hosts (`--mca plm_rsh_agent`): empty keeps
  /// mpirun's default, ssh (then rsh). Any program called as `AGENT HOST COMMAND...` that runs
  /// COMMAND on HOST, e.g. scripts/slurm-local.sh's node-exec on the local multi-node cluster.
  std::string launch_agent;
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

/// A whole line of output, attributed, and where it goes.
struct RelayedLine {
  bool to_stderr = false;
  std::string text;  ///< "[rank R] ..." for a worker's line; a launcher's own line as it is
};

/// Reassembles the workers' output as the launcher program interleaves it into whole lines,
/// each attributed to its rank. mpirun (--tag-output) tags every piece of output it relays, not
/// every line: a worker's unfinished line ("abc", its newline still to come) is followed on the
/// same line by another rank's tagged text ("[1,0]<stderr>:abc[1,1]<stderr>:error ..."). The
/// relay splits at every tag, keeps each rank's and stream's unfinished line apart, and gives a
/// line once its own newline arrives, so no tag ends up in the middle of a line and no line
/// under another rank's name. srun's labels (--label: "3: text") mark whole lines.
class OutputRelay {
 public:
  explicit OutputRelay(std::string via) : via_(std::move(via)) {}
  /// Bytes read from the launcher program's stdout (stream 0) or stderr (1); the lines they
  /// complete.
  std::vector<RelayedLine> feed(int stream, const std::string& bytes);
  /// The unfinished lines left at the end, each ended.
  std::vector<RelayedLine> finish();

 private:
  struct Source {
    std::string rank;  ///< empty: the launcher program's own output
    bool err = false;
    bool operator<(const Source& o) const { return rank != o.rank ? rank < o.rank : err < o.err; }
  };
  void append(const Source& to, const std::string& text, std::vector<RelayedLine>& out);
  RelayedLine line_of(const Source& s, const std::string& text) const;

  std::string via_;
  Source current_[2];                       ///< per stream: whose text comes now
  std::string unparsed_[2];                 ///< per stream: bytes that may be the start of a tag
  std::string unparsed_line_[2];            ///< srun, direct: the line not yet ended
  std::vector<std::pair<Source, std::string>> pending_;  ///< unfinished lines, in arrival order
};

/// Runs the plan: forwards SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 to the job, prefixes output
/// lines, and returns the job's exit code (128 + signal when the launcher program was killed).
/// Throws holo::Error when the program cannot be started.
int run_launch(const LaunchPlan& plan);

/// Absolute path of the running executable.
std::string self_executable();

}  // namespace holo::launch
