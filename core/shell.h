#pragma once
// Running shell commands from Holo's own tools (benchmarks, SLURM): quoting and capture.

#include <string>
#include <utility>

namespace holo {

/// `s` as one word of a POSIX shell command line: single-quoted, inner quotes escaped.
std::string shell_quote(const std::string& s);

/// Runs `cmd` through /bin/sh; returns its exit status (as pclose() gives it) and its standard
/// output. Throws Error when the command cannot be started.
std::pair<int, std::string> run_shell(const std::string& cmd);

}  // namespace holo
