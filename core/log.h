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

/// Also writes every log line to `path` (appending), e.g. the run directory's log file.
void add_file(const std::string& path);

}  // namespace holo::log
