#include "pipeline/probe.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/json_numbers.h"
#include "core/progress.h"
#include "pipeline/av_handles.h"
#include "pipeline/decoder.h"
#include "pipeline/libav_decoder.h"

namespace fs = std::filesystem;

namespace holo::pipeline {

std::string file_hash(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot read " + path);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    XXH3_64bits_update(state, buf.data(), static_cast<size_t>(f.gcount()));
  }
  const uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

int64_t file_mtime(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_mtime);
}

ProbeResult probe_video(const std::string& path, int threads) {
  ProbeResult r;
  r.path = fs::absolute(path).string();
  std::error_code ec;
  r.size = static_cast<int64_t>(fs::file_size(r.path, ec));
  if (ec) {
    r.status = "missing file";
    return r;
  }
  r.mtime = file_mtime(r.path);
  try {
    r.hash = file_hash(r.path);
    auto d = open_decoder(r.path, DecoderOptions().set_threads(threads));
    const VideoInfo& info = d->info();
    r.frames = info.frames;
    r.declared_frames = info.declared_frames;
    r.warning = info.shortfall;
    r.fps = info.fps;
    r.duration = info.duration;
    r.codec = info.codec;
    r.width = info.width;
    r.height = info.height;
    r.variable_rate = info.variable_rate;
    if (info.truncated()) {
      r.status = "truncated: " + info.truncation;
      return r;
    }
    // Every frame, decoded once from the start (the check is whether frames come out, not
    // their pixels). A frame missing before one that came out leaves a hole in the video: the
    // file is damaged. Frames missing at the end (a last packet that does not decode) leave
    // the frames before them, which are used.
    const std::vector<int64_t> decoded = d->decodable_frames();
    const auto readable = static_cast<int64_t>(decoded.size());
    for (int64_t i = 0; i < std::max<int64_t>(readable, 1); ++i) {
      if (i >= readable || decoded[static_cast<size_t>(i)] != i) {
        r.status = "frame " + std::to_string(i) + " of " + std::to_string(info.frames) +
                   " cannot be decoded";
        return r;
      }
    }
    r.decodes_to_end = readable == info.frames;
    if (readable < info.frames) {
      const int64_t missing = info.frames - readable;
      r.warning += std::string(r.warning.empty() ? "" : "; ") + "the last " +
                   std::to_string(missing) + " of " + std::to_string(info.frames) +
                   (missing == 1 ? " frames does not decode" : " frames do not decode");
      r.declared_frames = std::max(r.declared_frames, info.frames);
      r.frames = readable;
      r.duration = info.frame_time(readable);  // where the first frame that does not decode starts
      r.fps = r.duration > 0 ? static_cast<double>(readable) / r.duration : 0.0;
    }
  } catch (const DecodeError& e) {
    r.status = e.reason();
  } catch (const Error& e) {
    r.status = e.what();
  }
  return r;
}

bool has_video_extension(const std::string& name) {
  static const std::set<std::string> exts = {
      ".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".vob",  ".flv", ".wmv",
      ".asf", ".3gp", ".ts",  ".m2ts", ".mts", ".ogv", ".ogg", ".mxf",  ".divx", ".y4m"};
  std::string ext = fs::path(name).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return exts.count(ext) > 0;
}

std::string why_not_video(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return "cannot read (" + ec.message() + ")";
  if (size == 0) return "zero-byte file";
  av::configure_libav();
  AVFormatContext* raw = nullptr;
  int rc = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (rc < 0) return "not a readable container (" + av::error_string(rc) + ")";
  av::InputFormatPtr format(raw);
  const std::string demuxer = format->iformat->name;
  const auto ends_with = [&](const char* tail) {
    const size_t n = std::strlen(tail);
    return demuxer.size() >= n && demuxer.compare(demuxer.size() - n, n, tail) == 0;
  };
  // Decision: a picture is not a video, though libavformat opens one as a stream of one frame
  // (image2 for names such as .jpg, a *_pipe demuxer for the content of PNG, BMP, ...).
  static const std::set<std::string> images = {"image2", "image2pipe", "ico", "alias_pix",
                                               "brender_pix"};
  if (images.count(demuxer) || ends_with("_pipe")) {
    return "an image (" + demuxer + " demuxer), not a video";
  }
  // The tty demuxer and its kin open text (.nfo, .asc, ANSI art) and draw it as pictures.
  static const std::set<std::string> text = {"tty", "bin", "xbin", "adf", "idf"};
  if (text.count(demuxer)) {
    return "text (the " + demuxer + " demuxer draws it as pictures), not a video";
  }
  bool cover = false;
  int stream = find_video_stream(format.get(), &cover);
  // A container without a header (MPEG-TS, MPEG-PS, FLV) names its streams in its packets; one
  // with a header (MP3, WAV, FLAC, MP4) has named them all, so an audio file is read no further.
  const bool headerless = format->nb_streams == 0 || (format->ctx_flags & AVFMTCTX_NOHEADER) != 0;
  if ((stream < 0 && headerless) ||
      (stream >= 0 && format->streams[stream]->codecpar->width <= 0)) {
    rc = avformat_find_stream_info(format.get(), nullptr);
    if (rc < 0) return "cannot read stream info (" + av::error_string(rc) + ")";
    stream = find_video_stream(format.get(), &cover);
  }
  if (stream < 0) return no_video_reason(format.get(), cover);
  // Animated pictures are videos when they hold more than one frame.
  static const std::set<std::string> animated = {"gif", "apng", "webp"};
  if (animated.count(demuxer)) {
    av::PacketPtr packet = av::make_packet();
    int frames = 0;
    while (frames < 2 && av_read_frame(format.get(), packet.get()) >= 0) {
      frames += packet->stream_index == stream ? 1 : 0;
      av_packet_unref(packet.get());
    }
    if (frames < 2) return "a still image (" + demuxer + ", one frame), not a video";
  }
  return "";
}

ScanResult scan_videos(const std::vector<std::string>& paths,
                       const std::map<std::string, ProbeResult>* cache) {
  ScanResult out;
  std::vector<std::string> candidates;
  for (const auto& p : paths) {
    std::error_code ec;
    if (!fs::exists(p, ec)) throw IoError("no such file or folder: " + p);
    if (fs::is_directory(p, ec)) {
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
           it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (it->is_regular_file(ec)) {
          candidates.push_back(fs::absolute(it->path()).lexically_normal().string());
        }
      }
    } else {
      // A file given by name is probed whatever it is.
      out.videos.push_back(fs::absolute(p).lexically_normal().string());
    }
  }
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  const std::set<std::string> named(out.videos.begin(), out.videos.end());
  candidates.erase(std::remove_if(candidates.begin(), candidates.end(),
                                  [&](const std::string& c) { return named.count(c) > 0; }),
                   candidates.end());
  int64_t cached = 0;
  for (const auto& path : candidates) {
    std::error_code ec;
    ProbeResult entry;
    entry.path = path;
    entry.size = static_cast<int64_t>(fs::file_size(path, ec));
    entry.mtime = file_mtime(path);
    const ProbeResult* known = nullptr;
    if (cache != nullptr && !ec) {
      auto it = cache->find(path);
      if (it != cache->end() && it->second.size == entry.size &&
          it->second.mtime == entry.mtime) {
        known = &it->second;
      }
    }
    std::string reason;
    if (known != nullptr && (known->skipped || !known->codec.empty())) {
      // Skipped before, or opened by the decoder as a video, and unchanged since.
      ++cached;
      if (known->skipped) reason = known->status.empty() ? "not a video" : known->status;
    } else {
      reason = why_not_video(path);
    }
    if (reason.empty()) {
      out.videos.push_back(path);
      continue;
    }
    entry.status = reason;
    entry.skipped = true;
    if (has_video_extension(path)) {
      spdlog::warn("skipped {}: {}", path, reason);
    } else {
      spdlog::info("skipped {}: {}", path, reason);
    }
    out.skipped.push_back(std::move(entry));
  }
  std::sort(out.videos.begin(), out.videos.end());
  out.videos.erase(std::unique(out.videos.begin(), out.videos.end()), out.videos.end());
  if (!candidates.empty()) {
    spdlog::info(
        "scan: {} of {} files in the folders are videos, {} skipped as not videos{}",
        candidates.size() - out.skipped.size(), candidates.size(), out.skipped.size(),
        cached > 0 ? " (" + std::to_string(cached) + " judged by the manifest)" : std::string());
  }
  return out;
}

std::vector<std::string> find_videos(const std::vector<std::string>& paths) {
  return scan_videos(paths).videos;
}

std::vector<ProbeResult> probe_videos(const std::vector<std::string>& paths, int jobs, bool show_progress) {
  std::vector<ProbeResult> results(paths.size());
  const int n = jobs > 0 ? jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ProgressOptions po;
  po.label = "probe";
  po.total = static_cast<int64_t>(paths.size());
  po.unit = "videos";
  if (!show_progress) po.mode = ProgressOptions::Mode::kOff;
  Progress progress(po);
  std::atomic<size_t> next{0};
  std::mutex mutex;
  auto work = [&] {
    for (size_t i = next++; i < paths.size(); i = next++) {
      results[i] = probe_video(paths[i], 1);
      std::lock_guard<std::mutex> lock(mutex);
      progress.advance();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  progress.finish();
  return results;
}

void write_manifest(const std::string& file, const std::vector<ProbeResult>& results) {
  nlohmann::json videos = nlohmann::json::array();
  for (const auto& r : results) {
    videos.push_back({{"path", r.path},
                      {"size", r.size},
                      {"mtime", r.mtime},
                      {"hash", r.hash},
                      {"status", r.status},
                      {"frames", r.frames},
                      {"declared_frames", r.declared_frames},
                      {"warning", r.warning},
                      {"fps", r.fps},
                      {"duration", r.duration},
                      {"codec", r.codec},
                      {"width", r.width},
                      {"height", r.height},
                      {"variable_rate", r.variable_rate},
                      {"decodes_to_end", r.decodes_to_end},
                      {"skipped", r.skipped}});
  }
  const nlohmann::json doc = {{"version", 1}, {"videos", videos}};
  const fs::path target(file);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = file + ".part";
  {
    std::ofstream f(tmp);
    if (!f) throw IoError("cannot write " + tmp);
    f << doc.dump(1) << "\n";
    if (!f) throw IoError("cannot write " + tmp);
  }
  fs::rename(tmp, file);
}

std::map<std::string, ProbeResult> read_manifest(const std::string& file) {
  std::ifstream f(file);
  if (!f) throw IoError("cannot open the probe manifest " + file);
  nlohmann::json doc;
  try {
    f >> doc;
  } catch (const std::exception& e) {
    throw IoError(file + ": not a probe manifest (" + e.what() + ")");
  }
  // find(), not value(): value() throws nlohmann's own error for a version that is no number.
  if (!doc.is_object() || doc.find("version") == doc.end() || doc["version"] != 1 ||
      !doc.contains("videos") || !doc["videos"].is_array()) {
    throw IoError(file + ": not a version 1 probe manifest");
  }
  std::map<std::string, ProbeResult> out;
  int64_t n = 0;
  for (const auto& v : doc["videos"]) {
    ++n;
    if (!v.is_object() || !v.contains("path") || !v["path"].is_string()) {
      throw IoError(file + ": video entry " + std::to_string(n) + " has no \"path\"");
    }
    ProbeResult r;
    try {
      r.path = v.at("path").get<std::string>();
      r.size = json_number_or(v, "size", int64_t{0});
      r.mtime = json_number_or(v, "mtime", int64_t{0});
      r.hash = v.value("hash", std::string());
      r.status = v.value("status", std::string("ok"));
      r.frames = json_number_or(v, "frames", int64_t{0});
      r.declared_frames = json_number_or(v, "declared_frames", int64_t{0});
      r.warning = v.value("warning", std::string());
      r.fps = json_number_or(v, "fps", 0.0);
      r.duration = json_number_or(v, "duration", 0.0);
      r.codec = v.value("codec", std::string());
      r.width = json_number_or(v, "width", 0);
      r.height = json_number_or(v, "height", 0);
      r.variable_rate = v.value("variable_rate", false);
      r.decodes_to_end = v.value("decodes_to_end", false);
      r.skipped = v.value("skipped", false);
    } catch (const std::exception& e) {  // nlohmann's type errors, json_number_or's range errors
      throw IoError(file + ": video entry " + std::to_string(n) + " (" + r.path + "): " + e.what());
    }
    out[r.path] = r;
  }
  return out;
}

std::string format_probe_table(const std::vector<ProbeResult>& results) {
  std::ostringstream os;
  size_t name_w = 4;
  for (const auto& r : results) {
    if (!r.skipped) name_w = std::max(name_w, fs::path(r.path).filename().string().size());
  }
  name_w = std::min<size_t>(name_w, 48);
  size_t codec_w = 5;  // codec names such as mpeg2video are longer than the usual h264
  for (const auto& r : results) codec_w = std::max(codec_w, r.codec.size());
  codec_w = std::min<size_t>(codec_w, 16);
  char line[512];
  std::snprintf(line, sizeof line, "%-*s %7s %7s %-*s %-10s %s\n", static_cast<int>(name_w), "name", "frames", "fps",
                static_cast<int>(codec_w), "codec", "resolution", "status");
  os << line;
  int64_t ok = 0, vfr = 0, warned = 0, skipped = 0, frames = 0;
  double seconds = 0;
  for (const auto& r : results) {
    if (r.skipped) {
      ++skipped;  // logged by the scan, one line each
      continue;
    }
    std::string name = fs::path(r.path).filename().string();
    if (name.size() > name_w) name = name.substr(0, name_w - 3) + "...";
    const std::string res = r.width > 0 ? std::to_string(r.width) + "x" + std::to_string(r.height) : "-";
    std::string status = r.ok() ? (r.variable_rate ? "ok (vfr)" : "ok") : r.status;
    if (!r.warning.empty()) status += ", warning: " + r.warning;
    std::snprintf(line, sizeof line, "%-*s %7lld %7.2f %-*s %-10s ", static_cast<int>(name_w),
                  name.c_str(), static_cast<long long>(r.frames), r.fps, static_cast<int>(codec_w),
                  r.codec.empty() ? "-" : r.codec.c_str(), res.c_str());
    os << line << status << "\n";  // a status of any length
    if (r.ok()) {
      ++ok;
      frames += r.frames;
      seconds += r.duration;
      vfr += r.variable_rate;
      warned += r.warning.empty() ? 0 : 1;
    }
  }
  const auto probed = static_cast<int64_t>(results.size()) - skipped;
  os << probed << " files: " << ok << " ok (" << vfr << " with variable frame rate, " << warned
     << " with a warning), " << (probed - ok) << " quarantined; " << frames << " frames, "
     << static_cast<int64_t>(seconds) << " s";
  if (skipped > 0) os << "; " << skipped << " other files skipped as not videos";
  os << "\n";
  return os.str();
}

}  // namespace holo::pipeline
