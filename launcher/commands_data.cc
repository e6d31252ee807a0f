// holo data synth | probe, and holo bench decode.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include <unistd.h>

#include "core/env.h"
#include "core/error.h"
#include "core/shell.h"
#include "launcher/cli.h"
#include "pipeline/clip.h"
#include "pipeline/decoder.h"
#include "pipeline/probe.h"
#include "pipeline/random.h"
#include "pipeline/synth.h"

namespace fs = std::filesystem;

namespace holo::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct BenchArgs {
  std::vector<std::string> files;
  int threads = 2;
  int short_side = 128;
  int clips = 8;
  int frames = 16;
  int stride = 2;
  int synth_videos = 6;
  std::string synth_size = "480x360";
  int synth_frames = 240;
  std::string python = "/usr/bin/python3";
  std::string baseline = "bench/decode_baseline.py";
  std::string json;
};

/// Runs a shell command, returning its stdout; throws when it fails.
std::string capture(const std::string& cmd) {
  const auto [status, out] = run_shell(cmd);
  if (status != 0) throw Error("command failed (" + std::to_string(status) + "): " + cmd + "\n" + out);
  return out;
}

void bench_decode(const BenchArgs& a) {
  using namespace holo::pipeline;
  std::vector<std::string> files = a.files;
  if (files.empty()) {
    int w = 0, h = 0;
    if (std::sscanf(a.synth_size.c_str(), "%dx%d", &w, &h) != 2) throw UsageError("--synth-size must be WxH");
    const fs::path dir = fs::absolute(fs::path(env::cache_dir()) / "bench-decode" /
                                      (a.synth_size + "-" + std::to_string(a.synth_frames) + "-" + std::to_string(a.synth_videos)));
    if (!fs::exists(dir / "dataset.toml")) {
      std::cout << "making " << a.synth_videos << " benchmark videos (" << a.synth_size << ", " << a.synth_frames
                << " frames) in " << dir.string() << "\n";
      synthesize(SynthOptions().set_kind("unlabeled").set_out(dir.string()).set_videos(a.synth_videos)
                     .set_frames(a.synth_frames).set_size(w, h).set_seed(1));
    }
    files = find_videos({(dir / "videos").string()});
  } else {
    files = find_videos(files);
  }
  if (files.empty()) throw UsageError("no video files to benchmark");

  // 1. Every frame, scaled to the short side, as RGB: Holo vs the ffmpeg command line.
  int64_t frames = 0;
  auto t0 = Clock::now();
  for (const auto& f : files) {
    auto d = open_decoder(f, DecoderOptions().set_threads(a.threads));
    const int64_t n = d->info().frames;
    for (int64_t s = 0; s < n; s += 32) {
      std::vector<int64_t> idx;
      for (int64_t i = s; i < std::min(n, s + 32); ++i) idx.push_back(i);
      frames += d->decode(idx, a.short_side).count;
    }
  }
  const double holo_s = seconds_since(t0);
  const std::string S = std::to_string(a.short_side);
  const std::string scale = "scale='if(lt(iw,ih),"+ S + ",-2)':'if(lt(iw,ih),-2," + S + ")',format=rgb24";
  t0 = Clock::now();
  for (const auto& f : files) {
    capture("ffmpeg -nostdin -hide_banner -loglevel error -threads " + std::to_string(a.threads) + " -i " + shell_quote(f) +
            " -vf " + shell_quote(scale) + " -f null - 2>&1");
  }
  const double ffmpeg_s = seconds_since(t0);
  const double holo_fps = frames / holo_s, ffmpeg_fps = frames / ffmpeg_s;

  // 2. Random clips (seek, decode num_frames with stride, scale): Holo vs PyAV / PySlowFast / torchvision.
  nlohmann::json plan = {{"frames", a.frames}, {"stride", a.stride}, {"short_side", a.short_side},
                         {"threads", a.threads}, {"files", nlohmann::json::array()}};
  const int64_t span = (a.frames - 1) * a.stride + 1;
  std::vector<std::vector<int64_t>> starts(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    auto d = open_decoder(files[i], DecoderOptions());
    Rng rng(mix_seed(42, i));
    for (int c = 0; c < a.clips; ++c) starts[i].push_back(rng.uniform_int(std::max<int64_t>(0, d->info().frames - span) + 1));
    plan["files"].push_back({{"path", files[i]}, {"starts", starts[i]}});
  }
  DecoderCache cache(files.size(), DecoderOptions().set_threads(a.threads));
  int64_t clips = 0;
  t0 = Clock::now();
  for (size_t i = 0; i < files.size(); ++i) {
    for (int64_t s : starts[i]) {
      ClipRequest r;
      r.frames = clip_frames(cache.get(files[i]).info().frames, s, a.frames, a.stride);
      r.short_side = a.short_side;
      auto t = frames_to_tensor(cache.get(files[i]).decode(r.frames, a.short_side));
      clips += t.size(0) == a.frames;
    }
  }
  const double holo_clip_s = seconds_since(t0);
  const double holo_cps = clips / holo_clip_s;

  nlohmann::json python;
  if (!a.python.empty() && fs::exists(a.python) && fs::exists(a.baseline)) {
    const fs::path plan_file = fs::temp_directory_path() / ("holo-bench-plan-" + std::to_string(::getpid()) + ".json");
    std::ofstream(plan_file) << plan.dump();
    try {
      python = nlohmann::json::parse(capture(shell_quote(a.python) + " " + shell_quote(a.baseline) + " " + shell_quote(plan_file.string())));
    } catch (const std::exception& e) {
      spdlog::warn("the Python baseline failed: {}", e.what());
    }
    fs::remove(plan_file);
  } else {
    spdlog::warn("Python baseline skipped ({} or {} not found)", a.python, a.baseline);
  }

  std::printf("decode benchmark: %zu files, %lld frames, short side %d, %d threads\n", files.size(),
              static_cast<long long>(frames), a.short_side, a.threads);
  std::printf("  full decode   holo %8.1f frames/s   ffmpeg -f null %8.1f frames/s   ratio %.2f\n", holo_fps, ffmpeg_fps,
              holo_fps / ffmpeg_fps);
  std::printf("  clips %dx%d    holo %8.1f clips/s\n", a.frames, a.stride, holo_cps);
  nlohmann::json out = {{"files", files.size()}, {"frames", frames}, {"threads", a.threads}, {"short_side", a.short_side},
                        {"holo_fps", holo_fps}, {"ffmpeg_fps", ffmpeg_fps}, {"ratio_ffmpeg", holo_fps / ffmpeg_fps},
                        {"clip_frames", a.frames}, {"clip_stride", a.stride}, {"holo_clips_per_s", holo_cps}};
  for (const char* name : {"pyav", "pyslowfast", "torchvision"}) {
    if (!python.contains(name)) continue;
    const double cps = python[name]["clips"].get<double>() / python[name]["seconds"].get<double>();
    std::printf("                %-12s %8.1f clips/s   holo / %s %.2f\n", name, cps, name, holo_cps / cps);
    out[std::string(name) + "_clips_per_s"] = cps;
    out[std::string("ratio_") + name] = holo_cps / cps;
  }
  if (!a.json.empty()) std::ofstream(a.json) << out.dump(1) << "\n";
}

}  // namespace

void add_data_commands(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Synthetic datasets and probing of video files");
  data->require_subcommand(1);

  auto so = std::make_shared<pipeline::SynthOptions>();
  auto size = std::make_shared<std::string>("96x64");
  auto* synth = data->add_subcommand("synth", "Write a synthetic dataset: real encoded videos and annotation files");
  synth->add_option("--kind", so->kind, "motion (Kinetics CSV), hvu (HVU CSV + Tag,Category), unlabeled (a folder)")
      ->capture_default_str();
  synth->add_option("--out", so->out, "Output folder")->required();
  synth->add_option("--seed", so->seed, "Seed; the output is a pure function of the options")->capture_default_str();
  synth->add_option("--videos", so->videos, "Number of videos")->capture_default_str();
  synth->add_option("--classes", so->classes, "motion: classes (2-8)")->capture_default_str();
  synth->add_option("--frames", so->frames, "Frames per video")->capture_default_str();
  synth->add_option("--size", *size, "Frame size WxH (even)")->capture_default_str();
  synth->add_option("--fps", so->fps, "Frames per second")->capture_default_str();
  synth->add_flag("!--no-frame-code", so->frame_code,
                  "Leave out the band in which every frame carries its index (it tells a frame-level "
                  "model the order of the frames)");
  synth->add_option("--codec", so->codec, "auto (libx264, else mpeg4), libx264 or mpeg4")->capture_default_str();
  synth->add_option("--threads", so->threads, "Encoding threads; 0: one per core")->capture_default_str();
  synth->callback([so, size] {
    if (std::sscanf(size->c_str(), "%dx%d", &so->width, &so->height) != 2) throw UsageError("--size must be WxH, e.g. 96x64");
    const auto t0 = Clock::now();
    const auto s = pipeline::synthesize(*so);
    std::cout << "wrote " << s.videos << " " << so->kind << " videos (" << s.codec << ") to " << fs::absolute(so->out).string()
              << " in " << std::fixed << std::setprecision(1) << seconds_since(t0) << " s\n";
    for (const auto& f : s.annotations) std::cout << "  " << f << "\n";
  });

  auto paths = std::make_shared<std::vector<std::string>>();
  auto jobs = std::make_shared<int>(0);
  auto out = std::make_shared<std::string>();
  auto* probe = data->add_subcommand("probe", "Probe video files: frames, fps, codec, size, VFR, decodes to the end, hash");
  probe->add_option("paths", *paths, "Video files or folders (searched recursively)")->required();
  probe->add_option("--jobs", *jobs, "Parallel probes; 0: one per core")->capture_default_str();
  probe->add_option("--out", *out, "Write the manifest (JSON) here, for data.manifest");
  probe->callback([paths, jobs, out] {
    const auto files = pipeline::find_videos(*paths);
    if (files.empty()) throw UsageError("no video files under the given paths");
    const auto results = pipeline::probe_videos(files, *jobs);
    std::cout << pipeline::format_probe_table(results);
    if (!out->empty()) {
      pipeline::write_manifest(*out, results);
      std::cout << "manifest: " << fs::absolute(*out).string() << "\n";
    }
  });

  auto ba = std::make_shared<BenchArgs>();
  auto* bench = app.get_subcommand("bench")->add_subcommand(
      "decode", "Decode, sample and scale clips: Holo vs `ffmpeg -f null` and PyAV / PySlowFast / torchvision (bench/decode_baseline.py)");
  bench->add_option("files", ba->files, "Videos or folders; none: synthetic videos made once in $HOLO_CACHE_DIR");
  bench->add_option("--threads", ba->threads, "Decoder threads (Holo and ffmpeg alike)")->capture_default_str();
  bench->add_option("--short-side", ba->short_side, "Scale frames to this short side")->capture_default_str();
  bench->add_option("--clips", ba->clips, "Random clips per file")->capture_default_str();
  bench->add_option("--frames", ba->frames, "Frames per clip")->capture_default_str();
  bench->add_option("--stride", ba->stride, "Frame stride in a clip")->capture_default_str();
  bench->add_option("--synth-videos", ba->synth_videos, "Synthetic videos when no files are given")->capture_default_str();
  bench->add_option("--synth-size", ba->synth_size, "Their size WxH")->capture_default_str();
  bench->add_option("--synth-frames", ba->synth_frames, "Their length in frames")->capture_default_str();
  bench->add_option("--python", ba->python, "Python with PyAV, PyTorch and torchvision for the baselines")->capture_default_str();
  bench->add_option("--baseline", ba->baseline, "The baseline script")->capture_default_str();
  bench->add_option("--json", ba->json, "Also write the figures as JSON here");
  bench->callback([ba] { bench_decode(*ba); });
}

}  // namespace holo::cli
