#pragma once
/// Talking to SLURM through its client commands (sbatch, squeue, scontrol, sacct, scancel),
/// started directly with an argument vector: no shell ever sees a value. The commands find the
/// cluster the usual way (SLURM_CONF, /etc/slurm/slurm.conf or DNS).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace holo::slurm {

/// What a finished program printed and how it ended.
struct ProgramResult {
  int exit_code = -1;  ///< exit status; 128 + N when killed by signal N
  std::string out;     ///< stdout
  std::string err;     ///< stderr
};

/// Runs `argv[0]` (looked up on PATH) with `argv`, stdin from /dev/null, and waits for it.
/// Throws holo::IoError when it cannot be started (e.g. not installed), naming the program.
ProgramResult run_program(const std::vector<std::string>& argv);

/// Checks that `id` is a SLURM job id (digits); throws holo::UsageError naming `where`.
void check_job_id(const std::string& id, const std::string& where);

/// Submits `script` with `sbatch --parsable` and returns the job id. Throws holo::Error with
/// sbatch's own message when it refuses (unknown partition, bad account, no controller, ...).
std::string submit_script(const std::string& script);

/// What the scheduler knows about one job.
struct JobInfo {
  std::string id;
  std::string state;      ///< PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT,
                          ///< PREEMPTED, NODE_FAIL, REQUEUED, ...; empty when nothing knows the job
  std::string reason;     ///< why it pends or ended ("BeginTime", "None", ...), when known
  int64_t restarts = -1;  ///< times SLURM restarted it (SLURM_RESTART_COUNT); -1 when unknown
  std::string exit_code;  ///< "code:signal" of the batch script, when known
  std::string elapsed;    ///< run time of the current (or last) start
  std::string source;     ///< where the state came from: "squeue", "scontrol", "sacct"
  std::string note;       ///< when the state is unknown: why (e.g. accounting disabled)
  /// True while the job still holds or waits for resources (not in a final state).
  bool active() const;
};

/// Queries squeue for the live state, scontrol for restarts and the exit code (while the
/// controller remembers the job, MinJobAge), and sacct when neither knows it and accounting is
/// available.
JobInfo query_job(const std::string& id);

/// scancel the job; with `signal` non-empty, only sends that signal (e.g. "USR1") to its batch
/// script (`scancel --signal=SIG --batch`), which is how a preemption warning is simulated.
/// Throws holo::Error with scancel's message on failure.
void cancel_job(const std::string& id, const std::string& signal = "");

/// The nodes of one partition as sinfo reports them now.
struct PartitionNodes {
  std::string partition;             ///< the partition asked about (the default one: its name)
  int total = 0;                     ///< nodes in the partition
  std::vector<std::string> usable;   ///< nodes that can run jobs (idle, mixed, allocated, ...)
  std::vector<std::string> unusable; ///< "name (state: reason)" of nodes down, drained, failing or not responding
};

/// Asks sinfo about `partition`'s nodes (the default partition when empty). nullopt when sinfo
/// cannot tell (not installed, no controller, an unknown or comma-separated partition): the
/// caller then leaves the decision to sbatch.
std::optional<PartitionNodes> partition_nodes(const std::string& partition);

/// Whether this machine can submit to SLURM, as `holo doctor` reports it.
struct ClientProbe {
  bool reachable = false;  ///< sinfo and sbatch are on PATH and the controller answered
  std::string seen;        ///< the programs, the partitions or why not, the allocation
  std::string fix;         ///< what to install or start, when not reachable
  std::string why_not;     ///< why holo submit cannot be used, when it cannot
  std::string allocation;  ///< SLURM_JOB_ID when inside an allocation
};

/// Looks for sinfo and sbatch on PATH and asks the controller for its partitions
/// (`sinfo -h -o %P`), waiting at most `timeout_s` seconds for it.
ClientProbe probe_client(int timeout_s);

}  // namespace holo::slurm
