// holo bench decode and the loader half of holo bench loader (pipeline/bench.h).

#include "pipeline/bench.h"

#include <spdlog/spdlog.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/env.h"
#include "core/error.h"
#include "core/registry.h"
#include "core/shell.h"
#include "core/time.h"
#include "pipeline/clip.h"
#include "pipeline/decode_floor.h"
#include "pipeline/decoder.h"
#include "pipeline/loader.h"
#include "pipeline/probe.h"
#include "pipeline/random.h"
#include "pipeline/synth.h"

namespace fs = std::filesystem;

namespace holo::pipeline {
namespace {
/// CPU seconds of a POSIX clock (CLOCK_THREAD_CPUTIME_ID: the calling thread's,
/// CLOCK_PROCESS_CPUTIME_ID: all threads of this process).
double cpu_seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

/// CPU seconds (user + system) of the child processes that have been waited for.
double children_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/// Runs a shell command, returning its stdout; throws when it fails.
std::string capture(const std::string& cmd) {
  const auto [status, out] = run_shell(cmd);
  if (status != 0) throw Error("command failed (" + std::to_string(status) + "): " + cmd + "\n" + out);
  return out;
}

/// Clip decoding on one decode device (decode.device: cpu or nvdec).
struct DeviceFigures {
  std::string device;
  bool available = false;
  std::string reason;      ///< why the device has no figure (when !available)
  int64_t clips = 0;       ///< clips decoded with all their frames
  int64_t frames = 0;      ///< frames decoded (and scaled) in those clips
  double seconds = 0;
  double clips_per_s = 0;
  double frames_per_s = 0;
  DecodeCounters work;  ///< summed over the files' decoders
};

/// Decodes the clips starting at `starts[i]` of `files[i]` (frames, stride and short side of
/// `a`) with decoders of `device`, one cached decoder per file as the loader keeps them, and
/// times it, opening the files included (as the earlier figures and the Python loaders do). The
/// decoders use a.threads threads each: CPU decoders split them between decoding and conversion
/// to RGB; NVDEC decodes on GPU 0 and converts the frames it returns in system memory with its
/// share of them (docs/pipeline.md, "Threads"), which is what is timed. A device that cannot be
/// used, or that hands a file to another backend (a codec NVDEC does not decode), gets no figure
/// and a reason.
DeviceFigures time_clips(const std::vector<std::string>& files, const std::vector<std::vector<int64_t>>& starts,
                         const std::string& device, const DecodeBenchOptions& a) {
  DeviceFigures f;
  f.device = device;
  if (device == "nvdec") {
    const NvdecAvailability nvdec = nvdec_availability(0);
    if (!nvdec.available) {
      f.reason = nvdec.reason;
      return f;
    }
  }
  DecoderCache cache(
      files.size(),
      DecoderOptions().set_device(device).set_threads(a.threads).set_conversion_threads(
          a.conversion_threads));
  const auto t0 = SteadyClock::now();
  try {
    for (size_t i = 0; i < files.size(); ++i) {
      VideoDecoder& d = cache.get(files[i]);
      for (int64_t s : starts[i]) {
        const auto idx = clip_frames(d.info().frames, s, a.frames, a.stride);
        auto t = frames_to_tensor(d.decode(idx, a.short_side));
        if (t.size(0) == a.frames) {
          ++f.clips;
          f.frames += t.size(0);
        }
      }
    }
  } catch (const std::exception& e) {
    f.reason = e.what();
    return f;
  }
  f.seconds = seconds_since(t0);
  for (const auto& file : files) {
    const VideoDecoder& d = cache.get(file);
    if (d.backend() != device) {
      f.reason = file + " decodes on " + d.backend() + ", not " + device;
      return f;
    }
    const DecodeCounters c = d.counters();
    f.work.seeks += c.seeks;
    f.work.flushes += c.flushes;
    f.work.stale += c.stale;
    f.work.dropped += c.dropped;
    f.work.packets += c.packets;
    f.work.discardable += c.discardable;
    f.work.decoded += c.decoded;
    f.work.converted += c.converted;
  }
  f.available = true;
  f.clips_per_s = f.clips / f.seconds;
  f.frames_per_s = f.frames / f.seconds;
  return f;
}

/// Runs a Python baseline script of bench/ on `plan` (passed as a JSON file) and returns the
/// figures: the last line of its output that is a JSON object (warnings may come before it).
/// When there is none, or the script fails, returns an empty object and sets `*error` to the
/// script, the exit status and the tail of its output.
nlohmann::json run_baseline(const std::string& python, const std::string& script, const nlohmann::json& plan,
                            std::string* error) {
  static int calls = 0;
  const fs::path plan_file = fs::temp_directory_path() / ("holo-bench-plan-" + std::to_string(::getpid()) + "-" +
                                                          std::to_string(calls++) + ".json");
  std::ofstream(plan_file) << plan.dump();
  const auto [status, output] =
      run_shell(shell_quote(python) + " " + shell_quote(script) + " " + shell_quote(plan_file.string()) + " 2>&1");
  fs::remove(plan_file);
  std::string last;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.front() == '{') last = line;
  }
  try {
    if (status != 0 || last.empty()) throw Error("exit status " + std::to_string(status));
    return nlohmann::json::parse(last);
  } catch (const std::exception& e) {
    std::string tail = output.size() > 300 ? output.substr(output.size() - 300) : output;
    std::replace(tail.begin(), tail.end(), '\n', ' ');
    *error = script + " failed (" + e.what() + "): " + tail;
  }
  return nlohmann::json::object();
}

}  // namespace

void run_decode_bench(const DecodeBenchOptions& a) {
  if (a.devices.empty()) throw UsageError("--devices needs at least one of cpu, nvdec");
  for (const auto& d : a.devices) {
    if (d != "cpu" && d != "nvdec") throw UsageError("--devices: '" + d + "' is not a decode device (cpu, nvdec)");
  }
  std::vector<std::string> files = a.files;
  if (files.empty()) {
    int w = 0, h = 0;
    if (std::sscanf(a.synth_size.c_str(), "%dx%d", &w, &h) != 2) throw UsageError("--synth-size must be WxH");
    const fs::path dir = fs::absolute(fs::path(env::cache_dir()) / "bench-decode" /
                                      (a.synth_size + "-" + std::to_string(a.synth_frames) + "-" + std::to_string(a.synth_videos) +
                                       (a.synth_gop == 8 && a.synth_bframes == 2
                                            ? std::string()
                                            : "-g" + std::to_string(a.synth_gop) + "b" + std::to_string(a.synth_bframes))));
    if (!fs::exists(dir / "dataset.toml")) {
      std::cout << "making " << a.synth_videos << " benchmark videos (" << a.synth_size << ", " << a.synth_frames
                << " frames, keyframe every " << a.synth_gop << ", up to " << a.synth_bframes << " B-frames) in "
                << dir.string() << "\n";
      synthesize(SynthOptions().set_kind("unlabeled").set_out(dir.string()).set_videos(a.synth_videos)
                     .set_frames(a.synth_frames).set_size(w, h).set_gop(a.synth_gop).set_bframes(a.synth_bframes)
                     .set_seed(1));
    }
    files = find_videos({(dir / "videos").string()});
  } else {
    files = find_videos(files);
  }
  if (files.empty()) throw UsageError("no video files to benchmark");

  // 1. Every frame, scaled to the short side, as RGB: Holo vs the ffmpeg command line.
  // Besides the wall time, the CPU time per frame: all of Holo's threads, the calling thread
  // alone (the serial part: reading, sending packets, receiving frames, handing them to the
  // conversion threads; it bounds the frame rate whatever the number of cores), and ffmpeg's
  // (its process's threads). Frames per second on a machine with more cores can be at most
  // 1 / serial and cores / total.
  int64_t frames = 0;
  auto t0 = SteadyClock::now();
  const double holo_cpu0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID),
               holo_serial0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
  for (const auto& f : files) {
    auto d = open_decoder(
        f, DecoderOptions().set_threads(a.threads).set_conversion_threads(a.conversion_threads));
    const int64_t n = d->info().frames;
    for (int64_t s = 0; s < n; s += 32) {
      std::vector<int64_t> idx;
      for (int64_t i = s; i < std::min(n, s + 32); ++i) idx.push_back(i);
      frames += d->decode(idx, a.short_side).count;
    }
  }
  const double holo_s = seconds_since(t0);
  const double holo_cpu = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - holo_cpu0;
  const double holo_serial = cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - holo_serial0;
  const std::string S = std::to_string(a.short_side);
  const std::string scale = "scale='if(lt(iw,ih),"+ S + ",-2)':'if(lt(iw,ih),-2," + S + ")',format=rgb24";
  t0 = SteadyClock::now();
  const double ffmpeg_cpu0 = children_cpu_seconds();
  for (const auto& f : files) {
    capture("ffmpeg -nostdin -hide_banner -loglevel error -threads " + std::to_string(a.threads) + " -i " + shell_quote(f) +
            " -vf " + shell_quote(scale) + " -f null - 2>&1");
  }
  const double ffmpeg_s = seconds_since(t0);
  const double ffmpeg_cpu = children_cpu_seconds() - ffmpeg_cpu0;
  const double holo_fps = frames / holo_s, ffmpeg_fps = frames / ffmpeg_s;

  // 2. Random clips (seek, decode num_frames with stride, scale): Holo vs PyAV / PySlowFast / torchvision.
  nlohmann::json plan = {{"frames", a.frames}, {"stride", a.stride}, {"short_side", a.short_side},
                         {"threads", a.threads}, {"files", nlohmann::json::array()}};
  const int64_t span = (a.frames - 1) * a.stride + 1;
  std::vector<std::vector<int64_t>> starts(files.size());
  int64_t clip_count = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    auto d = open_decoder(files[i], DecoderOptions());
    Rng rng(mix_seed(42, i));
    for (int c = 0; c < a.clips; ++c) starts[i].push_back(rng.uniform_int(std::max<int64_t>(0, d->info().frames - span) + 1));
    plan["files"].push_back({{"path", files[i]}, {"starts", starts[i]}});
    clip_count += static_cast<int64_t>(starts[i].size());
  }
  // The same clips on every decode device; the first device in --devices (cpu by default) is
  // the "holo" column of the baselines below.
  std::vector<DeviceFigures> devices;
  for (const auto& name : a.devices) devices.push_back(time_clips(files, starts, name, a));
  auto holo_it = std::find_if(devices.begin(), devices.end(), [](const DeviceFigures& d) { return d.available; });
  if (holo_it == devices.end()) throw Error("bench decode: no decode device can be used: " + devices.front().reason);
  const DeviceFigures& holo_device = *holo_it;
  const double holo_cps = holo_device.clips_per_s;
  // The decoding floor of the same clips (pipeline/decode_floor.h): libavcodec alone, one
  // thread, every frame from the keyframe before each clip to its last one, nothing converted.
  // Files that have none (their packets' timestamps are not their frames') leave it out.
  DecodeFloor floor;
  std::string floor_error;
  try {
    floor = time_decode_floor(files, starts, a.frames, a.stride);
  } catch (const DecodeError& e) {
    floor_error = e.what();
  }
  const double floor_cps = floor_error.empty() ? floor.clips / floor.seconds : 0.0;
  // "(F of the decode floor)" after a clips/s figure, or nothing without a floor.
  const auto of_floor = [&](double cps) {
    char text[64] = "";
    if (floor_cps > 0) std::snprintf(text, sizeof text, "   (%.2f of the decode floor)", cps / floor_cps);
    return std::string(text);
  };

  // The Python loaders: a column without a figure says why (no PyAV in that Python, a failed
  // script, ...) instead of failing the benchmark.
  nlohmann::json python = nlohmann::json::object();
  std::string python_error;
  if (a.python.empty()) {
    python_error = "no --python";
  } else if (!fs::exists(a.python) || !fs::exists(a.baseline)) {
    python_error = a.python + " or " + a.baseline + " not found";
  } else {
    python = run_baseline(a.python, a.baseline, plan, &python_error);
  }
  if (!python_error.empty()) spdlog::warn("bench decode: Python baselines not available: {}", python_error);

  std::printf("decode benchmark: %zu files, %lld frames, short side %d, %d threads%s\n",
              files.size(), static_cast<long long>(frames), a.short_side, a.threads,
              a.conversion_threads >= 0
                  ? (" (" + std::to_string(a.conversion_threads) + " converting)").c_str()
                  : "");
  std::printf("  full decode   holo %8.1f frames/s   ffmpeg -f null %8.1f frames/s   ratio %.2f\n", holo_fps, ffmpeg_fps,
              holo_fps / ffmpeg_fps);
  const double us = frames > 0 ? 1e6 / static_cast<double>(frames) : 0.0;
  std::printf(
      "  full decode CPU per frame: holo %.0f us (calling thread %.0f us, at most %.0f frames/s on "
      "any number of cores)   ffmpeg %.0f us (process start included)\n",
      holo_cpu * us, holo_serial * us, holo_serial > 0 ? frames / holo_serial : 0.0,
      ffmpeg_cpu * us);
  std::printf("  clips %dx%d    holo %8.1f clips/s   (decode.device %s)%s\n", a.frames, a.stride,
              holo_cps, holo_device.device.c_str(), of_floor(holo_cps).c_str());
  if (floor_error.empty()) {
    std::printf(
        "                decode floor %8.1f clips/s   (libavcodec alone, 1 thread, no conversion: "
        "%.2f frames decoded per clip frame, from the keyframe before each clip)\n",
        floor_cps,
        static_cast<double>(floor.frames_decoded) / static_cast<double>(floor.clips * a.frames));
  } else {
    std::printf("                decode floor not available: %s\n", floor_error.c_str());
  }
  nlohmann::json out = {{"files", files.size()},
                        {"frames", frames},
                        {"threads", a.threads},
                        {"conversion_threads", a.conversion_threads},
                        {"short_side", a.short_side},
                        {"holo_fps", holo_fps},
                        {"ffmpeg_fps", ffmpeg_fps},
                        {"ratio_ffmpeg", holo_fps / ffmpeg_fps},
                        {"holo_cpu_s", holo_cpu},
                        {"holo_serial_cpu_s", holo_serial},
                        {"ffmpeg_cpu_s", ffmpeg_cpu},
                        {"clip_frames", a.frames},
                        {"clip_stride", a.stride},
                        {"holo_clips_per_s", holo_cps},
                        {"holo_clips_device", holo_device.device},
                        {"floor_clips_per_s", floor_cps},
                        {"floor_frames_decoded", floor.frames_decoded}};
  if (!floor_error.empty()) out["floor_error"] = floor_error;
  for (const char* name : {"pyav", "pyslowfast", "torchvision"}) {
    std::string why = python_error;
    if (why.empty() && !python.contains(name)) why = "no figure from " + a.baseline;
    if (why.empty() && python[name].contains("error")) why = python[name]["error"].get<std::string>();
    if (!why.empty()) {
      std::printf("                %-12s not available: %s\n", name, why.c_str());
      out[std::string(name) + "_error"] = why;
      continue;
    }
    const double cps = python[name]["clips"].get<double>() / python[name]["seconds"].get<double>();
    std::printf("                %-12s %8.1f clips/s   holo / %s %.2f%s\n", name, cps, name,
                holo_cps / cps, of_floor(cps).c_str());
    out[std::string(name) + "_clips_per_s"] = cps;
    out[std::string("ratio_") + name] = holo_cps / cps;
  }

  // Clip decoding per device: frames/s (decoded and scaled to the short side, in system memory).
  std::printf("  clip decoding per device (%lld clips of %d frames, stride %d, short side %d):\n",
              static_cast<long long>(clip_count), a.frames, a.stride, a.short_side);
  nlohmann::json per_device = nlohmann::json::object();
  const DeviceFigures* cpu = nullptr;
  const DeviceFigures* nvdec = nullptr;
  for (const auto& d : devices) {
    if (d.device == "cpu") cpu = &d;
    if (d.device == "nvdec") nvdec = &d;
    if (d.available) {
      std::printf("    %-6s %10.1f frames/s %8.2f clips/s%s\n", d.device.c_str(), d.frames_per_s,
                  d.clips_per_s, (" (" + std::to_string(a.threads) + " decoder threads)").c_str());
      // What the decoder did for the clips: frames the codec decoded per frame returned
      // (unrequested non-reference frames are discarded, packets a seek landed on before the
      // keyframe are dropped unread).
      std::printf("           decoded %.2f frames per clip frame; %lld seeks (%lld reset the codec, %lld frames from "
                  "before a seek dropped), %lld packets before keyframes dropped, "
                  "%lld of %lld packets sent with non-reference frames discarded\n",
                  d.frames > 0 ? static_cast<double>(d.work.decoded) / static_cast<double>(d.frames) : 0.0,
                  static_cast<long long>(d.work.seeks), static_cast<long long>(d.work.flushes),
                  static_cast<long long>(d.work.stale), static_cast<long long>(d.work.dropped),
                  static_cast<long long>(d.work.discardable), static_cast<long long>(d.work.packets));
      per_device[d.device] = {{"available", true}, {"frames_per_s", d.frames_per_s}, {"clips_per_s", d.clips_per_s},
                              {"clips", d.clips}, {"frames", d.frames}, {"seconds", d.seconds},
                              {"decoded", d.work.decoded}, {"seeks", d.work.seeks}, {"flushes", d.work.flushes},
                              {"stale", d.work.stale}, {"dropped", d.work.dropped},
                              {"packets", d.work.packets}, {"discardable", d.work.discardable}};
    } else {
      std::printf("    %-6s not available: %s\n", d.device.c_str(), d.reason.c_str());
      per_device[d.device] = {{"available", false}, {"reason", d.reason}};
    }
  }
  out["devices"] = per_device;
  if (cpu != nullptr && nvdec != nullptr) {
    if (cpu->available && nvdec->available) {
      const double r = nvdec->frames_per_s / cpu->frames_per_s;
      std::printf("nvdec/cpu %.2f (%.1f / %.1f frames/s)\n", r, nvdec->frames_per_s, cpu->frames_per_s);
      out["ratio_nvdec_cpu"] = r;
    } else {
      std::printf("nvdec/cpu not available: %s\n", (nvdec->available ? cpu->reason : nvdec->reason).c_str());
    }
  }
  if (!a.json.empty()) std::ofstream(a.json) << out.dump(1) << "\n";
}

namespace {

/// The synthetic motion dataset of the loader benchmark, made once in $HOLO_CACHE_DIR
/// (all videos in the training split), listed `repeat` times so that one epoch holds every
/// batch the benchmark reads: the loader's workers build whole batches, and an epoch of two
/// batches would leave most of them idle at every epoch boundary. The copies of a video are
/// separate records (ids `<id>#<copy>`), so each draws its own clip.
std::shared_ptr<Dataset> loader_bench_dataset(const LoaderBenchOptions& a, Recipe& recipe, int64_t clips_needed,
                                              int64_t* videos, int64_t* repeat) {
  int w = 0, h = 0;
  if (std::sscanf(a.synth_size.c_str(), "%dx%d", &w, &h) != 2) throw UsageError("--synth-size must be WxH");
  const fs::path dir = fs::absolute(fs::path(env::cache_dir()) / "bench-loader" /
                                    (a.synth_size + "-" + std::to_string(a.synth_frames) + "-" +
                                     std::to_string(a.synth_videos)));
  if (!fs::exists(dir / "train.csv")) {
    std::cout << "making " << a.synth_videos << " motion videos (" << a.synth_size << ", " << a.synth_frames
              << " frames) in " << dir.string() << "\n";
    SynthOptions so = SynthOptions().set_kind("motion").set_out(dir.string()).set_videos(a.synth_videos)
                          .set_frames(a.synth_frames).set_size(w, h).set_seed(1);
    so.val_fraction = 0;
    synthesize(so);
  }
  recipe.data.dataset = "kinetics";
  recipe.data.root = (dir / "videos").string();
  recipe.data.train = (dir / "train.csv").string();
  recipe.data.val = (dir / "val.csv").string();
  const auto base = make_dataset(recipe, "train");
  const int64_t n = static_cast<int64_t>(base->records().size());
  *videos = n;
  *repeat = std::max<int64_t>(1, (clips_needed + n - 1) / n);
  std::vector<VideoRecord> records;
  for (int64_t c = 0; c < *repeat; ++c) {
    for (auto r : base->records()) {
      r.id += "#" + std::to_string(c);
      records.push_back(std::move(r));
    }
  }
  return std::make_shared<Dataset>("bench-loader", std::move(records), base->class_names());
}

}  // namespace

LoaderBench plan_loader_bench(const LoaderBenchOptions& a) {
  LoaderBench b;
  b.cores = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  b.workers = a.workers > 0 ? a.workers : b.cores;
  b.prefetch = a.prefetch > 0 ? a.prefetch : 2 * b.workers;
  b.timed = a.batches > 0 ? a.batches : std::max<int64_t>(16, 8 * b.workers);
  b.warm = a.warmup_batches >= 0 ? a.warmup_batches : b.workers;
  b.cuda = a.device.rfind("cuda", 0) == 0;
  b.precision = !a.precision.empty() ? a.precision : (b.cuda ? "bf16" : "fp32");
  if (a.batch < 1 || a.frames < 1 || a.stride < 1 || a.size < 8) {
    throw UsageError("bench loader: --batch, --frames and --stride must be >= 1 and --size >= 8");
  }
  if (!is_decode_device(a.decode)) {
    throw UsageError("bench loader: --decode must be one of " + registered_list("decode.device") + ", not '" + a.decode + "'");
  }
  return b;
}

void time_loader(const LoaderBenchOptions& a, LoaderBench* b) {
  // By default one decoder thread per clip (the workers are the parallelism).
  Recipe& r = b->recipe;
  r.run.seed = 0;
  r.sampling.num_frames = a.frames;
  r.sampling.stride = a.stride;
  r.transform.crop_size = a.size;
  r.transform.train_scale_min = (a.size * 128 + 56) / 112;
  r.transform.train_scale_max = (a.size * 160 + 56) / 112;
  r.transform.flip = true;
  r.decode.device = a.decode;
  r.decode.threads = a.decode_threads;
  r.loader.batch_size = a.batch;
  r.loader.workers = b->workers;
  r.loader.prefetch = b->prefetch;
  r.loader.drop_last = true;
  b->dataset = loader_bench_dataset(a, r, (b->warm + b->timed) * a.batch, &b->videos, &b->repeat);

  const torch::Device device(a.device);
  ClipLoader loader(b->dataset, r, LoaderMode::kTrain, 0, 1);
  for (int64_t i = 0; i < b->warm; ++i) {
    if (!loader.next()) throw Error("bench loader: the epoch ended during the warm-up");
  }
  const auto t0 = SteadyClock::now();
  for (; b->batches < b->timed; ++b->batches) {
    auto batch = loader.next();
    if (!batch) throw Error("bench loader: the epoch ended after " + std::to_string(b->batches) + " timed batches");
    // Handed to the training device as the trainer does (a no-op on the CPU).
    auto x = batch->clips.to(device);
    if (b->cuda) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
    b->clips += x.size(0);
  }
  b->seconds = seconds_since(t0);
  b->clips_per_s = b->clips / b->seconds;
}

void run_dataloader_baseline(const LoaderBenchOptions& a, LoaderBench* b) {
  const Recipe& r = b->recipe;
  if (a.python.empty()) {
    b->python_error = "no --python";
  } else if (!fs::exists(a.python) || !fs::exists(a.baseline)) {
    b->python_error = a.python + " or " + a.baseline + " not found";
  } else {
    nlohmann::json plan = {{"files", nlohmann::json::array()}, {"frames", a.frames}, {"stride", a.stride},
                           {"crop", a.size}, {"scale_min", r.transform.train_scale_min},
                           {"scale_max", r.transform.train_scale_max}, {"mean", r.transform.mean},
                           {"std", r.transform.std}, {"batch", a.batch}, {"workers", b->workers},
                           {"prefetch", b->prefetch}, {"batches", b->timed}, {"warmup_batches", b->warm}, {"seed", 0}};
    for (const auto& rec : b->dataset->records()) plan["files"].push_back({{"path", rec.path}, {"label", rec.label}});
    b->python = run_baseline(a.python, a.baseline, plan, &b->python_error);
    if (b->python_error.empty() && b->python.contains("error")) b->python_error = b->python["error"].get<std::string>();
  }
}

void report_loader_bench(const LoaderBenchOptions& a, const LoaderBench& b, double train_cps) {
  const Recipe& r = b.recipe;
  const int64_t workers = b.workers, prefetch = b.prefetch, warm = b.warm, batches = b.batches;
  const int64_t videos = b.videos, repeat = b.repeat, clips = b.clips;
  const double loader_s = b.seconds, loader_cps = b.clips_per_s;
  const std::string& precision = b.precision;
  const double ratio = loader_cps / train_cps;
  std::printf("loader benchmark: %lld synthetic motion videos (%s, %lld frames) listed %lld times, batch %lld, "
              "%lld x %lld x %lld clips (stride %lld, scale %lld-%lld, flip, normalised)\n",
              static_cast<long long>(videos), a.synth_size.c_str(), static_cast<long long>(a.synth_frames),
              static_cast<long long>(repeat), static_cast<long long>(a.batch), static_cast<long long>(a.frames),
              static_cast<long long>(a.size), static_cast<long long>(a.size), static_cast<long long>(a.stride),
              static_cast<long long>(r.transform.train_scale_min), static_cast<long long>(r.transform.train_scale_max));
  std::printf("  loader  ClipLoader, %lld workers, prefetch %lld, decode.device %s, decode.threads %d: %10.2f clips/s "
              "(%lld batches timed after %lld, to %s)\n",
              static_cast<long long>(workers), static_cast<long long>(prefetch), a.decode.c_str(), a.decode_threads, loader_cps,
              static_cast<long long>(batches), static_cast<long long>(warm), a.device.c_str());
  std::printf("  train   %s (width %g), %s on %s: %10.2f clips/s (median of %lld steps after %lld)\n", a.model.c_str(),
              a.width, precision.c_str(), a.device.c_str(), train_cps, static_cast<long long>(a.iters),
              static_cast<long long>(a.warmup));
  std::printf("loader/train %.2f (%s)\n", ratio,
              ratio >= 1 ? "the loader keeps up with training" : "the loader does not keep up: training waits for data");
  nlohmann::json out = {{"videos", videos}, {"repeat", repeat}, {"batch", a.batch}, {"frames", a.frames},
                        {"stride", a.stride}, {"size", a.size}, {"workers", workers}, {"prefetch", prefetch},
                        {"decode_device", a.decode}, {"decode_threads", a.decode_threads}, {"batches", batches}, {"warmup_batches", warm},
                        {"loader_clips", clips}, {"loader_seconds", loader_s}, {"loader_clips_per_s", loader_cps},
                        {"model", a.model}, {"width", a.width}, {"device", a.device}, {"precision", precision},
                        {"train_iters", a.iters}, {"train_warmup", a.warmup}, {"train_clips_per_s", train_cps},
                        {"ratio_loader_train", ratio}};
  if (b.python_error.empty()) {
    const double cps = b.python["clips"].get<double>() / b.python["seconds"].get<double>();
    std::printf("  python  torch.utils.data.DataLoader, %lld worker processes, PyAV (PySlowFast decoding): %10.2f clips/s\n",
                static_cast<long long>(workers), cps);
    std::printf("holo/DataLoader %.2f\n", loader_cps / cps);
    out["dataloader_clips_per_s"] = cps;
    out["ratio_holo_dataloader"] = loader_cps / cps;
  } else {
    std::printf("  python  torch.utils.data.DataLoader: not available: %s\n", b.python_error.c_str());
    out["dataloader_error"] = b.python_error;
  }
  if (!a.json.empty()) {
    std::ofstream f(a.json);
    f << out.dump(1) << "\n";
    if (!f) throw IoError(a.json + ": cannot write");
  }
}

}  // namespace holo::pipeline
