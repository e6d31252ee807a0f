// Probe manifest reader (pipeline/probe.cc, read_manifest): the JSON that `holo data probe`
// writes and datasets read (data.manifest). A manifest that is not one must be refused with
// holo::Error (IoError naming the file and the entry); any other exception, sanitizer report or
// abort is a crash. Entries that are read must survive write_manifest and a second read.
//
// Input: the manifest file's bytes.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "pipeline/probe.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

bool same(const holo::pipeline::ProbeResult& a, const holo::pipeline::ProbeResult& b) {
  return a.path == b.path && a.size == b.size && a.mtime == b.mtime && a.hash == b.hash &&
         a.status == b.status && a.frames == b.frames && a.fps == b.fps &&
         a.duration == b.duration && a.codec == b.codec && a.width == b.width &&
         a.height == b.height && a.variable_rate == b.variable_rate &&
         a.decodes_to_end == b.decodes_to_end;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = holo::fuzz::scratch_dir("probe_manifest");
  const std::string file = (dir / "manifest.json").string();
  holo::fuzz::write_file(file, std::string_view(reinterpret_cast<const char*>(data), size));
  std::map<std::string, holo::pipeline::ProbeResult> entries;
  try {
    entries = holo::pipeline::read_manifest(file);
  } catch (const holo::Error&) {
    return 0;  // refused, with a message
  }
  std::vector<holo::pipeline::ProbeResult> results;
  for (const auto& [path, r] : entries) results.push_back(r);
  const std::string again_file = (dir / "again.json").string();
  holo::pipeline::write_manifest(again_file, results);
  std::map<std::string, holo::pipeline::ProbeResult> again;
  try {
    again = holo::pipeline::read_manifest(again_file);
  } catch (const holo::Error& e) {
    holo::fuzz::fail("a manifest written from entries that were read does not read again: " +
                     std::string(e.what()));
  }
  if (again.size() != entries.size()) holo::fuzz::fail("entries lost in a write and read");
  for (const auto& [path, r] : entries) {
    auto it = again.find(path);
    if (it == again.end() || !same(r, it->second)) {
      holo::fuzz::fail("entry '" + path + "' changed in a write and read");
    }
  }
  return 0;
}
