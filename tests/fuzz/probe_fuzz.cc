// The probe (pipeline/probe.h, probe_video) on damaged video files: it opens the file through
// the CPU decoder, reads its frame table and decodes every frame. It must never throw for a bad
// video (the reason goes into the result's status); any exception, sanitizer report or abort is
// a crash, and so is a file called usable that has no frame to sample from. FFmpeg is not
// instrumented: the fuzzer is guided by Holo's own code (pipeline/libav_decoder.cc and the
// decoders), and AddressSanitizer checks every access Holo makes into FFmpeg's buffers.
//
// Input: the video file's bytes (the seed corpus: tiny real files in several containers).

#include <cstddef>
#include <cstdint>
#include <string>

#include "pipeline/probe.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  holo::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = holo::fuzz::scratch_dir("probe") / "video";
  holo::fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));
  const holo::pipeline::ProbeResult r = holo::pipeline::probe_video(path.string());
  if (r.ok() && r.frames <= 0) holo::fuzz::fail("probe calls a file without frames usable");
  return 0;
}
