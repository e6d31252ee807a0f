#pragma once
/// Probing videos (`holo data probe`): what each file is and whether it decodes to the end,
/// in parallel, with a manifest (JSON) that datasets read to leave known-bad files out before
/// training starts.
///
/// Manifest: {"version": 1, "videos": [{"path", "size", "mtime", "hash", "status", "frames",
/// "fps", "duration", "codec", "width", "height", "variable_rate", "decodes_to_end"}]} with
/// status "ok" or the quarantine reason. `hash` is XXH3-64 of the file's bytes (16 hex digits).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace holo::pipeline {

struct ProbeResult {
  std::string path;
  int64_t size = 0;
  int64_t mtime = 0;          ///< seconds since the epoch, to notice a changed file
  std::string hash;
  std::string status = "ok";  ///< "ok" or why the file is unusable
  int64_t frames = 0;
  double fps = 0;
  double duration = 0;
  std::string codec;
  int width = 0;
  int height = 0;
  bool variable_rate = false;
  bool decodes_to_end = false;
  bool ok() const { return status == "ok"; }
};

/// Opens `path`, decodes every frame, hashes the bytes. Never throws for a bad video: the
/// reason goes into `status`.
ProbeResult probe_video(const std::string& path, int threads = 1);

/// Probes `paths` on `jobs` threads (0: one per core), showing progress; results in input order.
std::vector<ProbeResult> probe_videos(const std::vector<std::string>& paths, int jobs, bool show_progress = true);

/// Video files under each path (files as given, folders searched recursively), sorted.
std::vector<std::string> find_videos(const std::vector<std::string>& paths);

void write_manifest(const std::string& file, const std::vector<ProbeResult>& results);
/// Manifest entries by absolute path, as probed. Throws holo::IoError naming the file (and the
/// entry) when unreadable.
std::map<std::string, ProbeResult> read_manifest(const std::string& file);

/// One row per file (name, frames, fps, codec, resolution, status) and a summary line.
std::string format_probe_table(const std::vector<ProbeResult>& results);

/// XXH3-64 of a file's bytes as 16 hex digits.
std::string file_hash(const std::string& path);

}  // namespace holo::pipeline
