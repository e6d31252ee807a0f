#pragma once
/// Logging through spdlog. Every line carries the rank ("[rank 2]") so interleaved output of
/// several workers stays readable. Use spdlog's functions (spdlog::info, spdlog::warn, ...)
/// after `holo::log::init()`.

#include <spdlog/spdlog.h>

#include <string>

namespace holo::log {

/// Sets up the default logger on stderr with the rank prefix and the level from HOLO_LOG_LEVEL
/// (or `level` when not empty). Safe to call again, e.g. once the rank is known.
void init(const std::string& level = "");

/// Also writes every log line to `path` (appending), e.g. the run directory's log file. Log
/// lines are flushed at least every second from then on (and at once from warnings up).
void add_file(const std::string& path);

/// Flushes the log now (the trainer calls it at every checkpoint).
void flush();

}  // namespace holo::log
