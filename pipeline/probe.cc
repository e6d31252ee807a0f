#include "pipeline/probe.h"

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/progress.h"
#include "pipeline/dataset.h"
#include "pipeline/decoder.h"

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

ProbeResult probe_video(const std::string& path, int threads) {
  ProbeResult r;
  r.path = fs::absolute(path).string();
  std::error_code ec;
  r.size = static_cast<int64_t>(fs::file_size(r.path, ec));
  if (ec) {
    r.status = "missing file";
    return r;
  }
  r.mtime = std::chrono::duration_cast<std::chrono::seconds>(fs::last_write_time(r.path, ec).time_since_epoch()).count();
  try {
    r.hash = file_hash(r.path);
    auto d = open_decoder(r.path, DecoderOptions().set_threads(threads));
    const VideoInfo& info = d->info();
    r.frames = info.frames;
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
    // Decode every frame, a GOP-sized batch at a time, at a small size (the check is whether
    // frames come out, not their pixels).
    for (int64_t start = 0; start < info.frames; start += 64) {
      std::vector<int64_t> idx;
      for (int64_t i = start; i < std::min(info.frames, start + 64); ++i) idx.push_back(i);
      d->decode(idx, 16);
    }
    r.decodes_to_end = true;
  } catch (const DecodeError& e) {
    r.status = e.reason();
  } catch (const Error& e) {
    r.status = e.what();
  }
  return r;
}

std::vector<std::string> find_videos(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
           it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (it->is_regular_file(ec) && is_video_file(it->path().string())) out.push_back(fs::absolute(it->path()).string());
      }
    } else {
      out.push_back(fs::absolute(p).string());  // a file given by name is probed whatever it is
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
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
    videos.push_back({{"path", r.path}, {"size", r.size}, {"mtime", r.mtime}, {"hash", r.hash}, {"status", r.status},
                      {"frames", r.frames}, {"fps", r.fps}, {"duration", r.duration}, {"codec", r.codec},
                      {"width", r.width}, {"height", r.height}, {"variable_rate", r.variable_rate},
                      {"decodes_to_end", r.decodes_to_end}});
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
  if (!doc.is_object() || doc.value("version", 0) != 1 || !doc.contains("videos")) {
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
      r.size = v.value("size", int64_t{0});
      r.mtime = v.value("mtime", int64_t{0});
      r.hash = v.value("hash", std::string());
      r.status = v.value("status", std::string("ok"));
      r.frames = v.value("frames", int64_t{0});
      r.fps = v.value("fps", 0.0);
      r.duration = v.value("duration", 0.0);
      r.codec = v.value("codec", std::string());
      r.width = v.value("width", 0);
      r.height = v.value("height", 0);
      r.variable_rate = v.value("variable_rate", false);
      r.decodes_to_end = v.value("decodes_to_end", false);
    } catch (const nlohmann::json::exception& e) {
      throw IoError(file + ": video entry " + std::to_string(n) + " (" + r.path + "): " + e.what());
    }
    out[r.path] = r;
  }
  return out;
}

std::string format_probe_table(const std::vector<ProbeResult>& results) {
  std::ostringstream os;
  size_t name_w = 4;
  for (const auto& r : results) name_w = std::max(name_w, fs::path(r.path).filename().string().size());
  name_w = std::min<size_t>(name_w, 48);
  size_t codec_w = 5;  // codec names such as mpeg2video are longer than the usual h264
  for (const auto& r : results) codec_w = std::max(codec_w, r.codec.size());
  codec_w = std::min<size_t>(codec_w, 16);
  char line[512];
  std::snprintf(line, sizeof line, "%-*s %7s %7s %-*s %-10s %s\n", static_cast<int>(name_w), "name", "frames", "fps",
                static_cast<int>(codec_w), "codec", "resolution", "status");
  os << line;
  int64_t ok = 0, vfr = 0, frames = 0;
  double seconds = 0;
  for (const auto& r : results) {
    std::string name = fs::path(r.path).filename().string();
    if (name.size() > name_w) name = name.substr(0, name_w - 3) + "...";
    const std::string res = r.width > 0 ? std::to_string(r.width) + "x" + std::to_string(r.height) : "-";
    std::string status = r.ok() ? (r.variable_rate ? "ok (vfr)" : "ok") : r.status;
    std::snprintf(line, sizeof line, "%-*s %7lld %7.2f %-*s %-10s %s\n", static_cast<int>(name_w), name.c_str(),
                  static_cast<long long>(r.frames), r.fps, static_cast<int>(codec_w),
                  r.codec.empty() ? "-" : r.codec.c_str(), res.c_str(), status.c_str());
    os << line;
    if (r.ok()) {
      ++ok;
      frames += r.frames;
      seconds += r.duration;
      vfr += r.variable_rate;
    }
  }
  os << results.size() << " files: " << ok << " ok (" << vfr << " with variable frame rate), "
     << (results.size() - ok) << " quarantined; " << frames << " frames, " << static_cast<int64_t>(seconds) << " s\n";
  return os.str();
}

}  // namespace holo::pipeline
