#pragma once
/// Probing videos (`holo data probe`): what each file is and whether it decodes to the end,
/// in parallel, with a manifest (JSON) that datasets read to leave known-bad files out before
/// training starts; and the folder scan that finds video files by their content.
///
/// Manifest: {"version": 1, "videos": [{"path", "size", "mtime", "hash", "status", "frames",
/// "declared_frames", "warning", "fps", "duration", "codec", "width", "height",
/// "variable_rate", "decodes_to_end", "skipped"}]} with status "ok" or the quarantine reason
/// (for a skipped file, why it is not a video). `mtime` is the file's modification time in
/// Unix seconds (st_mtime); `hash` is XXH3-64 of the file's bytes (16 hex digits).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace holo::pipeline {

struct ProbeResult {
  std::string path;
  int64_t size = 0;
  int64_t mtime = 0;  ///< modification time, Unix seconds (st_mtime), to notice a changed file
  std::string hash;
  std::string status = "ok";  ///< "ok" or why the file is unusable
  /// Frames that decode, from the first on: what `ffprobe -count_frames` reads. Those the
  /// sampler draws clips from (VideoRecord::frames).
  int64_t frames = 0;
  /// Frames the file declares when more than `frames` (its container's count or duration, or
  /// its readable frames when the last ones do not decode), else as VideoInfo::declared_frames.
  /// Datasets leave the file out when fewer than data.min_readable_fraction of these decode.
  int64_t declared_frames = 0;
  /// Why `frames` falls short of what the file declares (VideoInfo::shortfall; "the last N of
  /// M frames do not decode"), empty when it does not. The file is still usable.
  std::string warning;
  double fps = 0;
  double duration = 0;
  std::string codec;
  int width = 0;
  int height = 0;
  bool variable_rate = false;
  bool decodes_to_end = false;  ///< every frame the container holds decodes
  /// Not a video (found by a folder scan: audio only, an image, text, not a container); the
  /// status says why. Kept in the manifest so that the next scan need not open it again.
  bool skipped = false;
  bool ok() const { return status == "ok"; }
};

/// A file's modification time in Unix seconds (st_mtime), or -1 when it cannot be read.
int64_t file_mtime(const std::string& path);

/// Why the file at `path` is not a video, or "" when it is one: libavformat opens it (its
/// header only; the first packets for containers without a header, such as MPEG-TS) and finds
/// a video stream that is not a cover picture, not an image (image2 and the *_pipe image
/// demuxers; a GIF, animated PNG or WebP of one frame) and not text drawn as pictures (the tty
/// demuxer's ANSI art). Decodes nothing.
std::string why_not_video(const std::string& path);

/// What a folder scan found.
struct ScanResult {
  std::vector<std::string> videos;  ///< absolute paths, sorted
  std::vector<ProbeResult>
      skipped;  ///< files that are not videos: path, size, mtime, status = why; skipped = true
};

/// Video files under each path: folders are searched recursively and every file is judged by
/// its content (why_not_video), whatever its name; files given by name are taken as videos
/// whatever they are (the probe reports them). A file whose entry in `cache` (a probe manifest,
/// by absolute path) has its size and modification time is judged by the entry (skipped, or
/// opened by the decoder as a video) without being opened. Every skipped file is logged with
/// its reason (a warning when its name has a video extension), and their count. Throws
/// holo::IoError naming a path that does not exist.
ScanResult scan_videos(const std::vector<std::string>& paths,
                       const std::map<std::string, ProbeResult>* cache = nullptr);

/// Whether a file name ends in an extension video files commonly have (.mp4, .avi, .ogv, ...).
/// Names only: scans judge files by their content (why_not_video).
bool has_video_extension(const std::string& name);

/// Opens `path`, decodes every frame, hashes the bytes. Never throws for a bad video: the
/// reason goes into `status`. A file whose last frames do not decode is usable for the frames
/// before them (`frames`, with a `warning`); one with a frame that does not decode before
/// others that do is not ("frame i of N cannot be decoded").
ProbeResult probe_video(const std::string& path, int threads = 1);

/// Probes `paths` on `jobs` threads (0: one per core), showing progress; results in input order.
std::vector<ProbeResult> probe_videos(const std::vector<std::string>& paths, int jobs, bool show_progress = true);

/// scan_videos(paths).videos.
std::vector<std::string> find_videos(const std::vector<std::string>& paths);

void write_manifest(const std::string& file, const std::vector<ProbeResult>& results);
/// Manifest entries by absolute path, as probed. Throws holo::IoError naming the file (and the
/// entry) when unreadable.
std::map<std::string, ProbeResult> read_manifest(const std::string& file);

/// One row per probed file (name, frames, fps, codec, resolution, status and warning) and a
/// summary line that also counts the skipped entries (which get no row).
std::string format_probe_table(const std::vector<ProbeResult>& results);

/// XXH3-64 of a file's bytes as 16 hex digits.
std::string file_hash(const std::string& path);

}  // namespace holo::pipeline
