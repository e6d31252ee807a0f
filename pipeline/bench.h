#pragma once
/// The core of `holo bench decode`, and the loader half of `holo bench loader` (docs/benchmarks.md):
///
/// - run_decode_bench(): Holo's decoders against `ffmpeg -f null` (every frame) and the Python
///   loaders of bench/decode_baseline.py (random clips), per decode device, with the decoding
///   floor of the same clips.
/// - plan_loader_bench(), time_loader(), run_dataloader_baseline(), report_loader_bench(): the
///   ClipLoader's clips/s on synthetic motion videos and torch.utils.data.DataLoader's
///   (bench/loader_baseline.py). The training figure they are compared with comes from
///   holo::models; train/bench.h (run_loader_bench) runs the steps in order.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "pipeline/dataset.h"

namespace holo::pipeline {

/// Options of `holo bench decode` (one field per flag).
struct DecodeBenchOptions {
  /// Videos or folders; empty: synthetic videos made once in $HOLO_CACHE_DIR/bench-decode.
  std::vector<std::string> files;
  int threads = 2;              ///< decoder threads (Holo and ffmpeg alike)
  int conversion_threads = -1;  ///< DecoderOptions::conversion_threads
  int short_side = 128;         ///< frames are scaled to this short side
  int clips = 8;                ///< random clips per file
  int frames = 16;              ///< frames per clip
  int stride = 2;               ///< frame stride in a clip
  /// The synthetic videos: count, size WxH, length, frames between keyframes, B-frames in a row.
  int synth_videos = 6;
  std::string synth_size = "480x360";
  int synth_frames = 240;
  int synth_gop = 8;
  int synth_bframes = 2;
  /// Python with PyAV, PyTorch and torchvision, and the baseline script; empty python: none.
  std::string python = "/usr/bin/python3";
  std::string baseline = "bench/decode_baseline.py";
  std::string json;  ///< also write the figures as JSON here (keys in docs/benchmarks.md)
  /// decode.device values whose clip decoding is timed, in order; the first one is the "holo"
  /// column of the Python baselines.
  std::vector<std::string> devices = {"cpu"};
};

/// Runs `holo bench decode` and prints its figures on stdout. Throws UsageError for an unknown
/// device, a bad --synth-size or no videos; Error when no decode device can be used or ffmpeg
/// fails. A Python column without a figure says why instead of failing the benchmark.
void run_decode_bench(const DecodeBenchOptions& options);

/// Options of `holo bench loader` (one field per flag).
struct LoaderBenchOptions {
  std::string device = "cpu";    ///< where the network trains: cpu, cuda, cuda:N
  std::string precision;         ///< empty: bf16 on CUDA, fp32 on the CPU
  std::string model = "stc_resnet18";
  double width = 1.0;
  int64_t batch = 32;
  int64_t frames = 16;
  int64_t stride = 2;
  int64_t size = 112;
  int64_t workers = 0;           ///< 0: one per core
  int64_t prefetch = 0;          ///< 0: twice the workers
  int64_t batches = 0;           ///< timed loader batches; 0: max(16, 8 x workers)
  int64_t warmup_batches = -1;   ///< untimed first; -1: one per worker
  int64_t iters = 5;             ///< timed training steps
  int64_t warmup = 2;            ///< untimed training steps
  std::string decode = "cpu";    ///< decode.device of the loader
  int decode_threads = 1;        ///< decode.threads of the loader (0: HOLO_DECODE_THREADS, else FFmpeg's choice)
  int64_t synth_videos = 64;
  int64_t synth_frames = 64;
  std::string synth_size = "320x240";
  std::string python = "/usr/bin/python3";
  std::string baseline = "bench/loader_baseline.py";
  std::string json;
};

/// One run of the loader benchmark: the options' defaults resolved, then its figures.
struct LoaderBench {
  int64_t cores = 1;     ///< hardware threads (the training side's intra-op threads)
  int64_t workers = 0;
  int64_t prefetch = 0;
  int64_t timed = 0;     ///< timed loader batches
  int64_t warm = 0;      ///< untimed loader batches
  bool cuda = false;     ///< the network trains on a CUDA device
  std::string precision; ///< fp32, bf16 or fp16
  /// Set by time_loader(): the loader's recipe, the dataset and its size.
  Recipe recipe;
  std::shared_ptr<Dataset> dataset;
  int64_t videos = 0, repeat = 0;
  int64_t clips = 0, batches = 0;
  double seconds = 0, clips_per_s = 0;
  /// Set by run_dataloader_baseline(): the script's figures, or why there are none.
  nlohmann::json python = nlohmann::json::object();
  std::string python_error;
};

/// Resolves the defaults of `options` (workers, prefetch, batches, precision). Throws
/// UsageError for a batch, frames or stride below 1, a size below 8 or an unknown decode device.
LoaderBench plan_loader_bench(const LoaderBenchOptions& options);

/// Sets up the loader as a training run does (recipe defaults: scale 128-160 for a 112 crop,
/// flip, Kinetics mean / std), on synthetic motion videos made once in $HOLO_CACHE_DIR, and
/// times `bench->timed` batches after `bench->warm`, each handed to options.device.
void time_loader(const LoaderBenchOptions& options, LoaderBench* bench);

/// The same loading with torch.utils.data.DataLoader (bench/loader_baseline.py): sets
/// bench->python, or bench->python_error when it has no figure.
void run_dataloader_baseline(const LoaderBenchOptions& options, LoaderBench* bench);

/// Prints the loader benchmark against `train_clips_per_s` (the network's training clips/s)
/// and writes options.json. Throws IoError when the JSON file cannot be written.
void report_loader_bench(const LoaderBenchOptions& options, const LoaderBench& bench, double train_clips_per_s);

}  // namespace holo::pipeline
