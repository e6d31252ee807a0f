#pragma once
/// Benchmarks that train (docs/benchmarks.md):
///
/// - run_loader_bench(): `holo bench loader`, can the data pipeline feed training: the
///   ClipLoader's clips/s (pipeline/bench.h) against one network's training clips/s
///   (models/bench.h) and against torch.utils.data.DataLoader.
/// - run_scaling_bench() / run_scaling_worker(): `holo bench scaling`, training throughput of a
///   small 3D CNN on 1 rank against N ranks (same threads each) with the gradient reducer, and
///   the share of all-reduce time hidden behind backward.
/// - run_segmentation_bench(): `holo bench segmentation`, training steps per second of MS-TCN
///   (models/mstcn.h, its loss and Adam as `holo train` runs them) against its PyTorch release
///   (bench/segmentation_baseline.py) on the same input, same threads.
/// - run_viterbi_bench(): `holo bench viterbi`, frames per second of the Viterbi alignment
///   (train/viterbi.h) on long videos against the same dynamic programme in numpy
///   (bench/viterbi_baseline.py), with the results compared.

#include <functional>
#include <string>
#include <vector>

#include "pipeline/bench.h"

namespace holo::train {

/// Runs `holo bench loader` and prints its figures. Throws UsageError, before anything is made
/// or timed, for options either side cannot run (models::check_model_bench_options).
void run_loader_bench(const pipeline::LoaderBenchOptions& options);

/// Options of `holo bench scaling` (one field per flag).
struct ScalingBenchOptions {
  int np = 2;
  int threads = 1;
  int steps = 12;    ///< timed steps per mode and launch
  int rounds = 3;    ///< pairs of launches (1 rank, then N ranks)
  int warmup = 3;    ///< untimed steps before each mode's timed steps
  int worker_rounds = 2;  ///< worker: rounds of the three modes within one launch
  int batch = 4;
  int frames = 8;
  int size = 56;
  double bucket_mb = 1.0;
  std::string json;
  std::string result;  ///< worker: where rank 0 writes its figures
};

/// Starts `np` ranks of `holo bench scaling` with `args` and returns their exit code (the
/// launcher's part: mpirun or srun).
using ScalingLauncher = std::function<int(int np, const std::vector<std::string>& args)>;

/// The parent of the benchmark: `rounds` pairs of launches (1 rank, then options.np ranks,
/// each a run_scaling_worker() started by `launch` with one intra-op thread setting), then the
/// per-phase medians and the scaling efficiency with its spread. Throws Error when a launch
/// fails.
void run_scaling_bench(const ScalingBenchOptions& options, const ScalingLauncher& launch);

/// One rank of a timed run: the same steps in three modes (local, overlap, blocking),
/// interleaved round by round; rank 0 writes the figures to options.result.
void run_scaling_worker(const ScalingBenchOptions& options);

/// Options of `holo bench segmentation` (one field per flag).
struct SegmentationBenchOptions {
  std::string model = "mstcn";  ///< mstcn or mucon
  std::vector<int64_t> frames = {1000, 5000};  ///< video lengths (one video per step), one row each
  int64_t dim = 2048;        ///< feature dimension (I3D)
  int64_t classes = 48;      ///< Breakfast's 48 actions
  int64_t stages = 4, layers = 10, channels = 64;  ///< mstcn
  int64_t mucon_hidden = 128, mucon_layers = 11, segments = 8;  ///< mucon; segments of the transcript
  int threads = 1;           ///< intra-op threads, both sides
  int iters = 5, warmup = 2;
  std::string python = "/usr/bin/python3";  ///< empty: no baseline
  std::string json;
};

/// Runs `holo bench segmentation` and prints a row per video length: steps/s of Holo and of
/// PyTorch, and their ratio.
void run_segmentation_bench(const SegmentationBenchOptions& options);

/// Options of `holo bench viterbi` (one field per flag).
struct ViterbiBenchOptions {
  std::vector<int64_t> frames = {1000, 4000, 10000};  ///< video lengths, one row each
  int64_t segments = 10;      ///< transcript length N
  int64_t classes = 48;       ///< Breakfast's 48 actions
  int64_t max_length = 2000;  ///< the length model's bound L (NNViterbi's default)
  int repeat = 3;             ///< alignments per side and row; the median is taken
  uint64_t seed = 0;
  std::string python = "/usr/bin/python3";  ///< empty: no baseline
  std::string json;           ///< also write the rows here
};

/// Runs `holo bench viterbi` and prints a row per video length: Holo's and numpy's seconds per
/// alignment, frames per second, the ratio, and whether both found the same alignment (the
/// same score to 1e-6 relative, the same labels).
void run_viterbi_bench(const ViterbiBenchOptions& options);

}  // namespace holo::train
