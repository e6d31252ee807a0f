#pragma once
// Helpers shared by the libFuzzer targets (docs/fuzzing.md): a scratch folder per fuzzer
// process, files written from the fuzzer's bytes, inputs cut into parts, and a failure that the
// fuzzer records as a crash.

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace holo::fuzz {

/// A folder of this process's own under the system's temporary folder, made empty at the first
/// call and removed at a normal exit (libFuzzer leaves crashes in its artifacts instead).
inline const std::filesystem::path& scratch_dir(const std::string& target) {
  static const std::filesystem::path dir = [&] {
    const auto p = std::filesystem::temp_directory_path() /
                   ("holo-fuzz-" + target + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(""), ec);
    });
    return p;
  }();
  return dir;
}

/// Writes `bytes` to `path` (creating its folder), replacing the file.
inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

/// `input` cut at every `separator`; always at least one part.
inline std::vector<std::string_view> split(std::string_view input, std::string_view separator) {
  std::vector<std::string_view> parts;
  for (;;) {
    const size_t at = input.find(separator);
    if (at == std::string_view::npos) break;
    parts.push_back(input.substr(0, at));
    input.remove_prefix(at + separator.size());
  }
  parts.push_back(input);
  return parts;
}

/// A broken property that no exception reports (a round trip that loses something): the
/// fuzzer records the input as a crash.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz: %s\n", what.c_str());
  std::abort();
}

/// Holo's log lines (missing files, skipped checkpoints) would bury libFuzzer's own output.
inline void quiet_logs() { spdlog::set_level(spdlog::level::off); }

}  // namespace holo::fuzz
