#pragma once
/// Process-wide settings of glibc's allocator for Holo's processes, and the memory they hold.

#include <cstdint>

namespace holo {

/// Keeps freed blocks of up to 32 MiB in the heap for reuse instead of returning them to the
/// kernel (`M_MMAP_THRESHOLD` 32 MiB, `M_TRIM_THRESHOLD` 64 MiB). Opening a decoder with frame
/// threads allocates about 0.75 MiB of zeroed context per thread, and a clip's frame buffer is
/// megabytes: with glibc's defaults the memory of the last one was handed back and faulted in
/// again, page by page, by the next one (docs/pipeline.md, "Serial work"). Does nothing when
/// `HOLO_MALLOC_TUNING=0`, or when `GLIBC_TUNABLES` sets a `glibc.malloc.` tunable itself.
/// Returns whether it changed the settings.
bool tune_allocator();

/// The most resident memory (RSS) this program has held since it was executed, in bytes
/// (`VmHWM` of /proc/self/status; `getrusage`'s `ru_maxrss` where that cannot be read).
int64_t peak_resident_bytes();

}  // namespace holo
