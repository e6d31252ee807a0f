#pragma once
/// The core of `holo bench model`: training throughput of networks of holo::models against the
/// same architectures in PyTorch eager (bench/model_baseline.py bench), and the GFLOPs SGS
/// spends on synthetic low- and high-motion clips. docs/benchmarks.md ("Models") shows how to
/// read the figures.

#include <torch/arg.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace holo::models {

struct ModelBenchOptions {
  /// Networks (presets or families of `holo model list`), measured in this order.
  TORCH_ARG(std::vector<std::string>, models) = {"r3d18", "stc_resnet18", "hatnet_r18", "atfr_resnet3d",
                                                 "r3d18_atfr"};
  /// Clips per step.
  TORCH_ARG(int64_t, batch) = 2;
  /// Clip length T and crop side S (input batch x 3 x T x S x S).
  TORCH_ARG(int64_t, frames) = 16;
  TORCH_ARG(int64_t, size) = 112;
  /// Width multiplier of every network.
  TORCH_ARG(double, width) = 1.0;
  /// Outputs of the head.
  TORCH_ARG(int64_t, classes) = 400;
  /// Intra-op threads of both sides (torch::set_num_threads / torch.set_num_threads); on CUDA
  /// they only affect the CPU side of each process.
  TORCH_ARG(int64_t, threads) = 2;
  /// Where both sides train and the SGS part runs: "cpu", "cuda" or "cuda:N" (`--device`).
  /// Network, input and labels live there; on CUDA the timed steps are bracketed by
  /// torch::cuda::synchronize so that each step's time covers its kernels.
  TORCH_ARG(std::string, device) = "cpu";
  /// "fp32", "bf16" or "fp16" (`--precision`; fp16 needs a CUDA device). bf16 and fp16 run the
  /// forward pass under autocast for the device, as the trainer does; the loss is computed in
  /// float32 and the backward pass runs outside autocast; fp16 scales the loss by
  /// kBenchFp16LossScale (fixed: no step is taken, so no gradient is ever unscaled).
  TORCH_ARG(std::string, precision) = "fp32";
  /// Timed forward+backward steps, after `warmup` untimed ones.
  TORCH_ARG(int64_t, iters) = 3;
  TORCH_ARG(int64_t, warmup) = 1;
  /// Python with PyTorch for the baseline; empty: no baseline.
  TORCH_ARG(std::string, python) = "/usr/bin/python3";
  /// bench/model_baseline.py.
  TORCH_ARG(std::string, baseline) = "";
  /// Where the weights and input handed to Python go (a subfolder, removed afterwards);
  /// empty: the system's temporary directory.
  TORCH_ARG(std::string, work_dir) = "";
  /// SGS part: the network with SGS, its twin without, and clips per motion kind.
  TORCH_ARG(std::string, sgs_model) = "r3d18_atfr";
  TORCH_ARG(std::string, sgs_baseline_model) = "atfr_resnet3d";
  TORCH_ARG(int64_t, sgs_clips) = 8;
  /// Seed of weights, inputs and synthetic clips.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Token-reduction part (`--token-models`): transformers measured without reduction, with ATS
  /// (K_n = max(token_rho * N_n, 8) in the thesis's blocks) and with ToMe at the r whose GFLOPs
  /// come closest to ATS's without exceeding them; empty: skip it.
  TORCH_ARG(std::vector<std::string>, token_models) = {};
  TORCH_ARG(double, token_rho) = 0.72;
  /// Frames of the video transformers' clips in that part (DeiT gets single images).
  TORCH_ARG(int64_t, token_frames) = 8;
};

/// Autocast of the device type of `device` to bf16 or fp16 while it lives, as the trainer runs
/// its forward passes (nothing for "fp32"); restores the previous autocast state of that device
/// type and clears the cast cache when it ends. Scope the forward pass only: the loss is taken
/// in float32 and backward runs outside.
class AutocastScope {
 public:
  AutocastScope(const std::string& precision, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType type_ = c10::DeviceType::CPU;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Float;
};

/// The fixed loss scale of fp16 steps on both sides.
inline constexpr double kBenchFp16LossScale = 1024.0;

/// Throws UsageError naming the option (`--device`, `--precision`, `--batch`, ...) when `options`
/// cannot run: an unknown device or precision, fp16 off CUDA, a CUDA device this build or
/// machine does not have, batch or iters below 1, warmup below 0.
void check_model_bench_options(const ModelBenchOptions& options);

/// Throughput of one network.
struct ThroughputRow {
  std::string model;
  int64_t parameters = 0;
  double holo_clips_per_s = 0;
  double python_clips_per_s = 0;  ///< 0 when the baseline did not run
  double ratio = 0;               ///< holo / python; 0 without baseline
  double holo_active_bins = -1;   ///< SGS: mean active bins per clip in the timed steps; -1 without
  double python_active_bins = -1;
  std::string python_error;       ///< why the baseline has no figure (empty when it has)
  std::string device_name;        ///< the GPU as the baseline names it (CUDA only; else empty)
};

/// Synthetic clip kinds of the SGS part, from still to fast motion.
enum class MotionKind { kStill, kSlow, kFast };
/// "still", "slow", "fast".
std::string motion_kind_name(MotionKind kind);
/// still and slow are low motion; fast is high motion.
bool is_low_motion(MotionKind kind);

/// One synthetic clip 1 x 3 x T x S x S in [0, 1], a pure function of (kind, index, seed); the
/// kinds share scene, square and first frame for one (index, seed):
///   - still: a smooth random scene (a window of a larger low-frequency texture) and a square
///     of side S/4, the same in every frame;
///   - slow: the same scene with the square moving one pixel per frame;
///   - fast: the window and the square jump to random positions every frame (camera shake
///     and fast object motion).
/// Independent noise frames are not offered: their spatial averages, all SGS's similarity
/// network sees, hardly differ, so SGS rightly treats them as similar (docs/benchmarks.md).
torch::Tensor motion_clip(MotionKind kind, int64_t index, int64_t frames, int64_t size, uint64_t seed);

/// GFLOPs per clip of one motion kind.
struct SgsRow {
  std::string kind;
  bool low_motion = false;
  int64_t clips = 0;
  double gflops = 0;        ///< mean over clips, SGS network
  double active_bins = 0;   ///< mean B' over clips
  double min_bins = 0, max_bins = 0;
};

struct SgsFlops {
  std::string model, baseline_model;
  int64_t bins = 0;             ///< B (the T at the SGS layer)
  double baseline_gflops = 0;   ///< the network without SGS, per clip (input independent)
  std::vector<SgsRow> rows;     ///< one per MotionKind
  double low_gflops = 0, high_gflops = 0;  ///< means over the low- / high-motion clips
  double low_bins = 0, high_bins = 0;
};

/// One network under one token reducer: images (DeiT) or clips per second.
struct TokenBenchRow {
  std::string model, reducer, setting;
  double gflops = 0;              ///< per image or clip, mean over the batch (eval mode)
  double train_per_s = 0;         ///< forward + backward, train mode
  double infer_per_s = 0;         ///< forward, eval mode, no gradients
  double train_speedup = 1, infer_speedup = 1;  ///< against the same network without reduction
  double flops_reduction = 1;     ///< GFLOPs without reduction / GFLOPs of this row
  double python_train_per_s = 0;  ///< the PyTorch twin without reduction (first row only)
  std::string python_error;
};

/// The token-reduction rows of one transformer (none, ats, tome), same weights and input.
std::vector<TokenBenchRow> bench_token_reduction(const std::string& name, const ModelBenchOptions& options);

struct ModelBenchResult {
  ModelBenchOptions options;
  std::vector<TokenBenchRow> tokens;
  std::vector<ThroughputRow> throughput;
  SgsFlops sgs;
  bool has_sgs = false;
  /// The GPU's name (torch.cuda.get_device_name of the baseline; LibTorch has no C++ call for
  /// it): empty on CPU or when no baseline ran.
  std::string device_name;
};

/// Forward+backward clips/s of `name` in Holo (train mode, cross-entropy on random labels,
/// gradients reset to none each step, as the baseline does; batch / median step time) on
/// options.device() in options.precision(), and, when options.python() is set, of the same
/// architecture with the same weights and input in PyTorch, measured the same way.
ThroughputRow bench_throughput(const std::string& name, const ModelBenchOptions& options);

/// Eval-mode GFLOPs (FlopRecorder: shapes actually seen; float32 on options.device(), as the
/// count does not depend on precision) of options.sgs_model() on
/// options.sgs_clips() clips of every MotionKind, one clip per forward pass, and of
/// options.sgs_baseline_model() on one clip.
SgsFlops bench_sgs_flops(const ModelBenchOptions& options);

/// Both parts (the SGS part skipped when sgs_model() is empty).
ModelBenchResult run_model_bench(const ModelBenchOptions& options);

/// The two tables as printed by `holo bench model`.
std::string format_model_bench(const ModelBenchResult& result);
/// The token-reduction table (empty without token rows).
std::string format_token_bench(const ModelBenchResult& result);
/// The figures as JSON (keys documented in docs/benchmarks.md).
std::string model_bench_json(const ModelBenchResult& result);

}  // namespace holo::models
