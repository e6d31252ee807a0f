#pragma once
/// Environment knobs (`HOLO_*`), each declared once in env.cc with a type, a default and a
/// meaning, read through a typed accessor, and listed by `holo env`. Nothing else calls getenv
/// for a HOLO_ variable. A value that does not parse as the knob's type throws holo::UsageError
/// naming the variable.

#include <string>
#include <vector>

namespace holo::env {

/// Description of one knob, for `holo env` and the docs.
struct KnobInfo {
  std::string name;           ///< e.g. "HOLO_LOG_LEVEL"
  std::string type;           ///< "bool", "int", "float", "string"
  std::string default_value;  ///< as text
  std::string doc;            ///< one sentence
  bool is_set() const;        ///< present in the environment
  std::string value() const;  ///< current value as text (the default when unset)
};

/// Every declared knob, in declaration order.
const std::vector<KnobInfo>& knobs();

/// Log level: trace, debug, info, warn, error, off.
std::string log_level();
/// Progress display: auto (bar on a terminal, lines otherwise), bar, lines, off.
std::string progress();
/// Seconds between plain progress lines when stdout is not a terminal.
double progress_interval();
/// Intra-op threads for LibTorch; 0 keeps LibTorch's choice.
int num_threads();
/// Folder that holds run directories when a recipe does not name one.
std::string runs_dir();
/// Seconds a collective may wait for its peers before the job aborts.
double collective_timeout();
/// Decoder threads per open video; 0 lets FFmpeg choose.
int decode_threads();
/// Folder for caches (probe manifests, teacher features) when a recipe does not name one.
std::string cache_dir();
/// Keeps freed blocks up to 32 MiB in the heap (core/allocator.h) when true, the default.
bool malloc_tuning();
/// Disables colour in log lines when true.
bool no_color();
/// Folder where each rank other than 0 of a multi-rank job writes its whole log
/// (`rank-<N>.log`, core/log.h); empty: the folder the command names (`holo train`: the run
/// directory's logs/), else `<temp dir>/holo-logs-<uid>`. `holo launch` sets it to the run
/// directory's logs/ for its workers.
std::string log_dir();
/// When set, every training rank appends the samples it trains on ("epoch step record") to
/// `<value>.rank<N>`: an audit of what a resumed or re-sharded run saw.
std::string sample_log();
/// Fault injection for the fault tests (tests/train/faults_test.cc): the process kills itself
/// with SIGKILL at this phase of a checkpoint save: shard (this rank's shard written), marker
/// (its done marker written), manifest (rank 0: manifest written, not yet renamed), cleanup
/// (rank 0: an old checkpoint renamed for deletion, not yet removed); "PHASE:N" the N-th time.
/// Empty: never.
std::string fault_kill_at();

/// SIGKILLs this process when HOLO_FAULT_KILL_AT names `phase` (for the fault tests).
void fault_point(const char* phase);

}  // namespace holo::env
