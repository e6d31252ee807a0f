#include "core/allocator.h"

#include <malloc.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "core/env.h"

namespace holo {

bool tune_allocator() {
  if (!env::malloc_tuning()) return false;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return false;
  // The mmap threshold first: setting either disables glibc's adjustment of both, and a fixed
  // trim threshold alone (with the default 128 KiB mmap threshold) sends every larger block
  // to mmap, to be faulted in at each allocation.
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 64 << 20) == 1;
}

int64_t peak_resident_bytes() {
  // VmHWM belongs to this program's memory map, which exec starts afresh; getrusage's
  // ru_maxrss is kept across exec, so in a process forked from a large one (the launcher) it
  // would report at least the parent's size at the fork.
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    long long kib = 0;
    if (std::sscanf(line.c_str(), "VmHWM: %lld kB", &kib) == 1)
      return static_cast<int64_t>(kib) * 1024;
  }
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // Linux counts it in KiB
}

}  // namespace holo
