// holo data synth | probe, holo bench decode and holo bench loader.

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/time.h"
#include "launcher/cli.h"
#include "pipeline/bench.h"
#include "pipeline/probe.h"
#include "pipeline/segmentation_synth.h"
#include "pipeline/synth.h"
#include "train/bench.h"

namespace fs = std::filesystem;

namespace holo::cli {

void add_data_commands(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Synthetic datasets and probing of video files");
  data->require_subcommand(1);

  auto so = std::make_shared<pipeline::SynthOptions>();
  auto size = std::make_shared<std::string>("96x64");
  auto grammar = std::make_shared<std::string>("activities");
  auto amplitude = std::make_shared<double>(pipeline::SegmentationSynthOptions{}.amplitude);
  auto* synth = data->add_subcommand("synth", "Write a synthetic dataset: real encoded videos and annotation files");
  synth->add_option("--kind", so->kind, "motion (Kinetics CSV), hvu (HVU CSV + Tag,Category), unlabeled (a folder), "
                    "segmentation (per-frame features in MS-TCN's layout)")
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
  synth->add_option("--gop", so->gop, "Frames between keyframes (libx264's own default is 250)")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  synth->add_option("--bframes", so->bframes, "Most B-frames in a row (libx264's own default is 3)")
      ->check(CLI::Range(0, 16))->capture_default_str();
  synth->add_option("--threads", so->threads, "Encoding threads; 0: one per core")->capture_default_str();
  synth->add_option("--grammar", *grammar,
                    "segmentation: activities (three activities, each an order of actions) or subsets (every "
                    "video 2-4 of the actions drawn at random, so action sets vary)")
      ->check(CLI::IsMember({"activities", "subsets"}))->capture_default_str();
  synth->add_option("--amplitude", *amplitude,
                    "segmentation: length of a class's prototype against unit noise per feature dimension")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  synth->callback([so, size, grammar, amplitude] {
    if (std::sscanf(size->c_str(), "%dx%d", &so->width, &so->height) != 2) throw UsageError("--size must be WxH, e.g. 96x64");
    const auto t0 = SteadyClock::now();
    if (so->kind == "segmentation") {
      pipeline::SegmentationSynthOptions seg;
      seg.out = so->out;
      seg.seed = so->seed;
      seg.videos = so->videos;
      seg.grammar = *grammar;
      seg.amplitude = *amplitude;
      const auto s = pipeline::write_segmentation_synth(seg);
      std::cout << "wrote " << s.videos << " segmentation videos (" << s.frames << " frames of features) to "
                << fs::absolute(so->out).string() << " in " << std::fixed << std::setprecision(1) << seconds_since(t0)
                << " s\n";
      for (const auto& f : s.files) std::cout << "  " << f << "\n";
      return;
    }
    const auto s = pipeline::synthesize(*so);
    std::cout << "wrote " << s.videos << " " << so->kind << " videos (" << s.codec << ") to " << fs::absolute(so->out).string()
              << " in " << std::fixed << std::setprecision(1) << seconds_since(t0) << " s\n";
    for (const auto& f : s.annotations) std::cout << "  " << f << "\n";
  });

  auto paths = std::make_shared<std::vector<std::string>>();
  auto jobs = std::make_shared<int>(0);
  auto out = std::make_shared<std::string>();
  auto* probe = data->add_subcommand("probe", "Probe video files: frames, fps, codec, size, VFR, decodes to the end, hash");
  probe
      ->add_option("paths", *paths,
                   "Video files or folders (searched recursively; every file is judged by its "
                   "content, and the ones that are not videos are listed as skipped)")
      ->required();
  probe->add_option("--jobs", *jobs, "Parallel probes; 0: one per core")->capture_default_str();
  probe->add_option("--out", *out,
                    "Write the manifest (JSON) here, for data.manifest; an existing one tells the "
                    "folder scan which unchanged files are videos");
  probe->callback([paths, jobs, out] {
    std::map<std::string, pipeline::ProbeResult> cache;
    std::error_code ec;
    if (!out->empty() && fs::exists(*out, ec)) {
      try {
        cache = pipeline::read_manifest(*out);
      } catch (const IoError& e) {
        spdlog::warn("{}; the scan opens every file", e.what());
      }
    }
    const auto scan = pipeline::scan_videos(*paths, &cache);  // a missing path: IoError, exit 1
    if (scan.videos.empty()) throw UsageError("no video files under the given paths");
    auto results = pipeline::probe_videos(scan.videos, *jobs);
    results.insert(results.end(), scan.skipped.begin(), scan.skipped.end());
    std::cout << pipeline::format_probe_table(results);
    if (!out->empty()) {
      pipeline::write_manifest(*out, results);
      std::cout << "manifest: " << fs::absolute(*out).string() << "\n";
    }
  });

  auto ba = std::make_shared<pipeline::DecodeBenchOptions>();
  auto* bench = app.get_subcommand("bench")->add_subcommand(
      "decode", "Decode, sample and scale clips: Holo vs `ffmpeg -f null` and PyAV / PySlowFast / torchvision (bench/decode_baseline.py)");
  bench->add_option("files", ba->files, "Videos or folders; none: synthetic videos made once in $HOLO_CACHE_DIR");
  bench->add_option("--threads", ba->threads, "Decoder threads (Holo and ffmpeg alike)")->capture_default_str();
  bench
      ->add_option("--conversion-threads", ba->conversion_threads,
                   "Of Holo's decoder threads, those converting frames to RGB while the others "
                   "decode (0: none; -1: the decoder's split)")
      ->capture_default_str();
  bench->add_option("--devices", ba->devices,
                    "Comma-separated decode devices whose clip decoding is timed (cpu, nvdec); the "
                    "line `nvdec/cpu` gives the ratio of their frames/s")
      ->delimiter(',')
      ->capture_default_str();
  bench->add_option("--short-side", ba->short_side, "Scale frames to this short side")->capture_default_str();
  bench->add_option("--clips", ba->clips, "Random clips per file")->capture_default_str();
  bench->add_option("--frames", ba->frames, "Frames per clip")->capture_default_str();
  bench->add_option("--stride", ba->stride, "Frame stride in a clip")->capture_default_str();
  bench->add_option("--synth-videos", ba->synth_videos, "Synthetic videos when no files are given")->capture_default_str();
  bench->add_option("--synth-size", ba->synth_size, "Their size WxH")->capture_default_str();
  bench->add_option("--synth-frames", ba->synth_frames, "Their length in frames")->capture_default_str();
  bench->add_option("--synth-gop", ba->synth_gop, "Their frames between keyframes (libx264's default is 250)")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  bench->add_option("--synth-bframes", ba->synth_bframes, "Their most B-frames in a row (libx264's default is 3)")
      ->check(CLI::Range(0, 16))->capture_default_str();
  bench->add_option("--python", ba->python, "Python with PyAV, PyTorch and torchvision for the baselines")->capture_default_str();
  bench->add_option("--baseline", ba->baseline, "The baseline script")->capture_default_str();
  bench->add_option("--json", ba->json, "Also write the figures as JSON here");
  bench->callback([ba] { pipeline::run_decode_bench(*ba); });

  auto la = std::make_shared<pipeline::LoaderBenchOptions>();
  auto* loader = app.get_subcommand("bench")->add_subcommand(
      "loader", "Can the data pipeline feed the GPU: ClipLoader clips/s vs training clips/s of a network, and "
                "vs torch.utils.data.DataLoader (bench/loader_baseline.py)");
  loader->add_option("--device", la->device, "Where the network trains: cpu, cuda or cuda:N")->capture_default_str();
  loader->add_option("--precision", la->precision, "fp32, bf16 or fp16 (default: bf16 on CUDA, fp32 on the CPU)");
  loader->add_option("--model", la->model, "The network (`holo model list`)")->capture_default_str();
  loader->add_option("--width", la->width, "Its width multiplier")->capture_default_str();
  loader->add_option("--batch", la->batch, "Clips per batch (loader and training step)")->capture_default_str();
  loader->add_option("--frames", la->frames, "Frames per clip")->capture_default_str();
  loader->add_option("--stride", la->stride, "Frame stride in a clip")->capture_default_str();
  loader->add_option("--size", la->size, "Crop side")->capture_default_str();
  loader->add_option("--workers", la->workers, "Loader worker threads (and DataLoader processes); 0: one per core")
      ->capture_default_str();
  loader->add_option("--prefetch", la->prefetch, "Batches in flight; 0: twice the workers")->capture_default_str();
  loader->add_option("--batches", la->batches, "Timed loader batches; 0: max(16, 8 x workers)")->capture_default_str();
  loader->add_option("--warmup-batches", la->warmup_batches, "Untimed loader batches first; -1: one per worker")
      ->capture_default_str();
  loader->add_option("--iters", la->iters, "Timed training steps")->capture_default_str();
  loader->add_option("--warmup", la->warmup, "Untimed training steps first")->capture_default_str();
  loader->add_option("--decode", la->decode, "decode.device of the loader: cpu, nvdec or auto")->capture_default_str();
  loader->add_option("--decode-threads", la->decode_threads,
                     "decode.threads of the loader: decoder threads per video (0: HOLO_DECODE_THREADS, else FFmpeg's choice)")
      ->check(CLI::Range(0, 256))->capture_default_str();
  loader->add_option("--synth-videos", la->synth_videos, "Synthetic motion videos (made once in $HOLO_CACHE_DIR)")
      ->capture_default_str();
  loader->add_option("--synth-frames", la->synth_frames, "Their length in frames")->capture_default_str();
  loader->add_option("--synth-size", la->synth_size, "Their size WxH")->capture_default_str();
  loader->add_option("--python", la->python, "Python with PyTorch and PyAV for the DataLoader baseline; empty: none")
      ->capture_default_str();
  loader->add_option("--baseline", la->baseline, "The baseline script")->capture_default_str();
  loader->add_option("--json", la->json, "Also write the figures as JSON here");
  loader->callback([la] { holo::train::run_loader_bench(*la); });
}

}  // namespace holo::cli
