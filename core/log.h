#pragma once
/// Logging through spdlog. Every line carries the rank ("[rank 2]") so interleaved output of
/// several workers stays readable. Use spdlog's functions (spdlog::info, spdlog::warn, ...)
/// after `holo::log::init()`.
///
/// In a job of several ranks (rank and size from process_identity(): the launcher's variables
/// as core/rank.h reads them, then MPI), rank 0 alone writes every line to the terminal. Every
/// other rank writes only its warnings and errors there and its whole log to a file of its own,
/// `rank-<N>.log` in the folder HOLO_LOG_DIR names (`holo launch` sets it to the run directory's
/// `logs/`), or in the folder set_rank_log_dir() names (`holo train`: `<run dir>/logs`). Lines
/// logged before a folder is known wait in memory and go to the file first; when none is named by
/// the end of the process they go to `<temp dir>/holo-logs-<uid>/rank-<N>.log`. See docs/layout.md.

#include <spdlog/spdlog.h>

#include <string>

namespace holo::log {

/// Sets up the default logger on stderr with the rank prefix and the level from HOLO_LOG_LEVEL
/// (or `level` when not empty), and the terminal and file split of a multi-rank job (above).
/// Safe to call again, e.g. once the rank is known.
void init(const std::string& level = "");

/// Also writes every log line to `path` (appending), e.g. the run directory's log file. Log
/// lines are flushed at least every second from then on (and at once from warnings up).
void add_file(const std::string& path);

/// On a rank other than 0 of a multi-rank job: this rank's whole log goes to
/// `<dir>/rank-<N>.log` (appending), the lines held so far first, unless HOLO_LOG_DIR named a
/// folder already. Does nothing on rank 0 or in a job of one rank.
void set_rank_log_dir(const std::string& dir);

/// The file this rank's whole log goes to (a rank other than 0 of a multi-rank job, once a
/// folder is known), else "".
std::string rank_log_path();

/// Flushes the log now (the trainer calls it at every checkpoint).
void flush();

}  // namespace holo::log
