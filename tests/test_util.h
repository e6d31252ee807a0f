#pragma once
// Helpers shared by tests: a fresh temporary folder per test, running the holo binary.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace holo::testing {

/// A folder unique to the running test, emptied first.
inline std::string temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const char* root = std::getenv("HOLO_TEST_TMP");
  std::filesystem::path p = std::filesystem::path(root ? root : "/tmp/holo-test") /
                            (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

/// The repository root (set by CTest).
inline std::string source_dir() {
  const char* s = std::getenv("HOLO_SOURCE_DIR");
  return s ? s : ".";
}

/// Path of the built `holo` binary (set by CTest).
inline std::string holo_binary() {
  const char* s = std::getenv("HOLO_BINARY");
  return s ? s : "holo";
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

/// Runs a shell command, capturing its output and exit code.
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.output.append(buf, n);
  const int status = ::pclose(f);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace holo::testing
