#pragma once
/// The run directory: everything a run leaves behind (resolved recipe, logs, metrics,
/// checkpoints, evaluation tables, features). See docs/layout.md.

#include <string>

#include "core/recipe.h"

namespace holo {

/// run.dir, or $HOLO_RUNS_DIR/<run.name> when run.dir is empty.
std::string run_dir_path(const Recipe& recipe);

/// Creates the run directory (and parents) and writes the resolved recipe to
/// `<dir>/recipe.toml` atomically. Returns the directory.
std::string prepare_run_dir(const Recipe& recipe);

/// Writes `contents` to `path` through a temporary file in the same folder, fsync and rename,
/// so a reader sees the old file or the new one, never a torn one. Throws holo::IoError.
void write_file_atomic(const std::string& path, const std::string& contents);

/// Whole file as a string. Throws holo::IoError naming the file.
std::string read_file(const std::string& path);

}  // namespace holo
