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

/// The path of the executable `name` in a folder of PATH, or "" when there is none.
std::string find_on_path(const std::string& name);

/// What a command run by run_shell_for() printed and how it ended.
struct ShellRun {
  int code = -1;  ///< exit code; 124: timed out; 128: killed by a signal
  std::string out;  ///< standard output and errors together
};

/// Runs `cmd` through /bin/sh under `timeout SECONDS`, stdin from /dev/null, its errors with
/// its output (as holo doctor probes the machine's tools).
ShellRun run_shell_for(const std::string& cmd, int seconds);

}  // namespace holo
