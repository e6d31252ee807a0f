#include "models/bench.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/serialize.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <unistd.h>

#include "core/error.h"
#include "core/shell.h"
#include "core/time.h"
#include "holo/build_config.h"
#include "models/flops.h"
#include "models/network.h"
#include "models/transformer.h"
#include "models/resnet2d.h"

namespace fs = std::filesystem;

namespace holo::models {
namespace {

using Clock = std::chrono::steady_clock;

/// Sets torch's intra-op threads for a scope.
class ThreadsScope {
 public:
  explicit ThreadsScope(int64_t n) : previous_(torch::get_num_threads()) {
    if (n > 0) torch::set_num_threads(static_cast<int>(n));
  }
  ~ThreadsScope() { torch::set_num_threads(previous_); }
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int previous_;
};

// LibTorch 2.4 replaced the per-device autocast calls by ones taking the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(at::DeviceType t) { return at::autocast::is_autocast_enabled(t); }
void set_autocast_enabled(at::DeviceType t, bool on) { at::autocast::set_autocast_enabled(t, on); }
at::ScalarType autocast_dtype(at::DeviceType t) { return at::autocast::get_autocast_dtype(t); }
void set_autocast_dtype(at::DeviceType t, at::ScalarType d) { at::autocast::set_autocast_dtype(t, d); }
#else
bool autocast_enabled(at::DeviceType t) {
  return t == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_autocast_enabled(at::DeviceType t, bool on) {
  if (t == at::kCUDA) {
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_cpu_enabled(on);
  }
}
at::ScalarType autocast_dtype(at::DeviceType t) {
  return t == at::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast_dtype(at::DeviceType t, at::ScalarType d) {
  if (t == at::kCUDA) {
    at::autocast::set_autocast_gpu_dtype(d);
  } else {
    at::autocast::set_autocast_cpu_dtype(d);
  }
}
#endif

/// Waits for the device's queued kernels (CUDA only: CPU work is done when the call returns).
void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

/// options.device() as a torch::Device (check_model_bench_options has accepted it).
torch::Device bench_device(const ModelBenchOptions& o) { return torch::Device(o.device()); }

/// A folder removed at the end of the scope.
class TempDir {
 public:
  explicit TempDir(const std::string& requested) {
    const fs::path root = requested.empty() ? fs::temp_directory_path() : fs::path(requested);
    path_ = root / ("holo-bench-model-" + std::to_string(::getpid()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

ModelOptions model_options(const std::string& name, const ModelBenchOptions& o) {
  ModelOptions m;
  m.name = name;
  m.width = o.width();
  m.frames = o.frames();
  m.num_classes = o.classes();
  m.image_size = o.size();  // the transformers' position embeddings
  return m;
}

void write_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const fs::path& path) {
  c10::impl::GenericDict d(c10::StringType::get(), c10::TensorType::get());
  for (const auto& kv : tensors) d.insert(kv.first, kv.second);
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(d));
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw IoError(path.string() + ": write failed");
}

std::string default_baseline() { return std::string(HOLO_SOURCE_DIR) + "/bench/model_baseline.py"; }

/// The median (mean of the middle two for an even count): steps slowed by other processes of
/// a shared machine do not move it.
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

}  // namespace

AutocastScope::AutocastScope(const std::string& precision, const torch::Device& device) {
  HOLO_CHECK(precision == "fp32" || precision == "bf16" || precision == "fp16",
             "autocast: precision " + precision + ": expected fp32, bf16 or fp16");
  if (precision == "fp32") return;
  type_ = device.is_cuda() ? at::kCUDA : at::kCPU;
  active_ = true;
  previous_enabled_ = autocast_enabled(type_);
  previous_dtype_ = autocast_dtype(type_);
  set_autocast_dtype(type_, precision == "bf16" ? at::kBFloat16 : at::kHalf);
  set_autocast_enabled(type_, true);
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  set_autocast_enabled(type_, previous_enabled_);
  set_autocast_dtype(type_, previous_dtype_);
  at::autocast::clear_cache();
}

std::string motion_kind_name(MotionKind kind) {
  switch (kind) {
    case MotionKind::kStill: return "still";
    case MotionKind::kSlow: return "slow";
    case MotionKind::kFast: return "fast";
  }
  return "?";
}

bool is_low_motion(MotionKind kind) { return kind == MotionKind::kStill || kind == MotionKind::kSlow; }

torch::Tensor motion_clip(MotionKind kind, int64_t index, int64_t frames, int64_t size, uint64_t seed) {
  HOLO_CHECK(frames >= 1 && size >= 8, "motion clips need frames >= 1 and size >= 8, got " +
                                           std::to_string(frames) + " x " + std::to_string(size));
  // The same scene and square for every kind at one (index, seed): the kinds differ only in motion.
  auto gen = at::detail::createCPUGenerator(seed * 1000003ULL + static_cast<uint64_t>(index));
  // A scene twice the crop in each direction, smooth (bilinear from 8 x 8 random colours).
  auto scene = torch::nn::functional::interpolate(
                   torch::rand({1, 3, 8, 8}, gen),
                   torch::nn::functional::InterpolateFuncOptions()
                       .size(std::vector<int64_t>{2 * size, 2 * size})
                       .mode(torch::kBilinear)
                       .align_corners(false))[0];
  const int64_t side = std::max<int64_t>(2, size / 4);
  auto colour = torch::rand({3, 1, 1}, gen);
  auto pick = [&](int64_t bound) { return torch::randint(bound, {1}, gen).item<int64_t>(); };
  const int64_t cy = pick(size), cx = pick(size);  // window of the scene
  const int64_t sy = pick(size - side), sx = pick(size - side);  // square
  auto clip = torch::empty({1, 3, frames, size, size});
  for (int64_t t = 0; t < frames; ++t) {
    int64_t wy = cy, wx = cx, qy = sy, qx = sx;
    if (kind == MotionKind::kSlow) qx = (sx + t) % (size - side);
    if (kind == MotionKind::kFast) {
      wy = pick(size);
      wx = pick(size);
      qy = pick(size - side);
      qx = pick(size - side);
    }
    auto frame = scene.narrow(1, wy, size).narrow(2, wx, size).clone();
    frame.narrow(1, qy, side).narrow(2, qx, side).copy_(colour.expand({3, side, side}));
    clip[0].select(1, t).copy_(frame);
  }
  return clip;
}

void check_model_bench_options(const ModelBenchOptions& o) {
  static const std::regex kDevice("cpu|cuda(:[0-9]+)?");
  if (!std::regex_match(o.device(), kDevice)) {
    throw UsageError("bench model: --device " + o.device() + ": expected cpu, cuda or cuda:N");
  }
  const std::string& p = o.precision();
  if (p != "fp32" && p != "bf16" && p != "fp16") {
    throw UsageError("bench model: --precision " + p + ": expected fp32, bf16 or fp16");
  }
  const torch::Device device(o.device());
  if (p == "fp16" && !device.is_cuda()) {
    throw UsageError("bench model: --precision fp16 needs a CUDA device (--device cuda); on " + o.device() +
                     " use fp32 or bf16");
  }
  if (device.is_cuda()) {
    if (!torch::cuda::is_available()) {
      throw UsageError("bench model: --device " + o.device() +
                       ": no CUDA device (this LibTorch has no CUDA, or the machine has no GPU)");
    }
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    if (device.has_index() && device.index() >= count) {
      throw UsageError("bench model: --device " + o.device() + ": only " + std::to_string(count) +
                       " CUDA device(s)");
    }
  }
  if (o.batch() < 1) throw UsageError("bench model: --batch must be >= 1, got " + std::to_string(o.batch()));
  if (o.iters() < 1) throw UsageError("bench model: --iters must be >= 1, got " + std::to_string(o.iters()));
  if (o.warmup() < 0) throw UsageError("bench model: --warmup must be >= 0, got " + std::to_string(o.warmup()));
}

ThroughputRow bench_throughput(const std::string& name, const ModelBenchOptions& o) {
  check_model_bench_options(o);
  const torch::Device device = bench_device(o);
  ThreadsScope threads(o.threads());
  torch::manual_seed(o.seed());
  auto net = build_network(model_options(name, o), {o.classes()});
  // Weights, input and labels come from the CPU generator, so one seed gives the same ones on
  // every device; the baseline is handed the CPU copies.
  const auto x_cpu = torch::randn({o.batch(), 3, o.frames(), o.size(), o.size()});
  const auto y_cpu = torch::randint(o.classes(), {o.batch()}, torch::kLong);
  net->to(device);
  net->train();
  const auto x = x_cpu.to(device), y = y_cpu.to(device);
  const bool fp16 = o.precision() == "fp16";

  ThroughputRow row;
  row.model = name;
  row.parameters = count_parameters(*net);
  std::vector<double> bins;
  auto step = [&] {
    NetworkOutput out;
    {
      AutocastScope autocast(o.precision(), device);
      out = net->forward_all(x);
    }
    auto loss = torch::nn::functional::cross_entropy(out.logits.at(0).to(torch::kFloat32), y);
    (fp16 ? loss * kBenchFp16LossScale : loss).backward();
    if (out.reported("active_bins").defined()) bins.push_back(out.reported("active_bins").to(torch::kDouble).mean().item<double>());
  };
  for (int64_t i = 0; i < o.warmup(); ++i) step();
  bins.clear();
  std::vector<double> seconds;
  for (int64_t i = 0; i < o.iters(); ++i) {
    synchronize(device);
    const auto t0 = Clock::now();
    net->zero_grad(/*set_to_none=*/true);
    step();
    synchronize(device);
    seconds.push_back(seconds_since(t0));
  }
  row.holo_clips_per_s = static_cast<double>(o.batch()) / median(seconds);
  if (!bins.empty()) row.holo_active_bins = mean(bins);

  if (o.python().empty()) return row;
  const std::string script = o.baseline().empty() ? default_baseline() : o.baseline();
  if (!fs::exists(o.python()) || !fs::exists(script)) {
    row.python_error = o.python() + " or " + script + " not found";
    spdlog::warn("bench model: PyTorch baseline of {} skipped: {}", name, row.python_error);
    return row;
  }
  // The same weights and the same input in Python, so that SGS sees the same clips.
  TempDir dir(o.work_dir());
  const fs::path weights = dir.path() / (name + ".pt"), input = dir.path() / "input.pt";
  save_state_dict(*net, weights.string());
  write_tensors({{"input", x_cpu}, {"target", y_cpu}}, input);
  std::ostringstream cmd;
  cmd << shell_quote(o.python()) << " " << shell_quote(script) << " bench " << shell_quote(name) << " --batch " << o.batch()
      << " --frames " << o.frames() << " --size " << o.size() << " --width " << o.width() << " --classes "
      << o.classes() << " --threads " << o.threads() << " --iters " << o.iters() << " --warmup " << o.warmup()
      << " --weights " << shell_quote(weights.string()) << " --input " << shell_quote(input.string())
      << " --device " << shell_quote(o.device()) << " --precision " << shell_quote(o.precision());
  const auto [status, output] = run_shell(cmd.str() + " 2>&1");
  const auto last = output.find_last_of('{');
  if (status != 0 || last == std::string::npos) {
    row.python_error = "exit status " + std::to_string(status) + ": " + output.substr(0, 2000);
    spdlog::warn("bench model: PyTorch baseline of {} failed: {}", name, row.python_error);
    return row;
  }
  const auto j = nlohmann::json::parse(output.substr(last));
  row.python_clips_per_s = j.at("clips_per_s").get<double>();
  if (j.contains("active_bins")) row.python_active_bins = j.at("active_bins").get<double>();
  if (j.contains("device_name")) row.device_name = j.at("device_name").get<std::string>();
  row.ratio = row.holo_clips_per_s / row.python_clips_per_s;
  return row;
}

SgsFlops bench_sgs_flops(const ModelBenchOptions& o) {
  check_model_bench_options(o);
  if (o.sgs_clips() < 1) {
    throw UsageError("bench model: --sgs-clips must be >= 1, got " + std::to_string(o.sgs_clips()));
  }
  const torch::Device device = bench_device(o);
  ThreadsScope threads(o.threads());
  torch::NoGradGuard no_grad;
  SgsFlops result;
  result.model = o.sgs_model();
  result.baseline_model = o.sgs_baseline_model();
  torch::manual_seed(o.seed());
  auto net = build_network(model_options(o.sgs_model(), o), {o.classes()});
  net->to(device);
  net->eval();
  std::vector<double> low, high, low_bins, high_bins;
  for (MotionKind kind : {MotionKind::kStill, MotionKind::kSlow, MotionKind::kFast}) {
    SgsRow row;
    row.kind = motion_kind_name(kind);
    row.low_motion = is_low_motion(kind);
    row.clips = o.sgs_clips();
    std::vector<double> gflops, bins;
    for (int64_t i = 0; i < o.sgs_clips(); ++i) {
      FlopRecorder rec;
      auto out = net->forward_all(motion_clip(kind, i, o.frames(), o.size(), o.seed()).to(device));
      rec.finish();
      if (!out.reported("active_bins").defined()) {
        throw RecipeError("[model]", 0, 0, "model.sgs", o.sgs_model() + " has no SGS layer");
      }
      const auto& stages = rec.stages();
      for (size_t s = 1; s < stages.size(); ++s) {
        if (stages[s].name == "sgs" && stages[s - 1].shape.size() == 5) result.bins = stages[s - 1].shape[2];
      }
      gflops.push_back(rec.total_macs() / 1e9);
      bins.push_back(static_cast<double>(out.reported("active_bins").item<int64_t>()));
    }
    row.gflops = mean(gflops);
    row.active_bins = mean(bins);
    row.min_bins = *std::min_element(bins.begin(), bins.end());
    row.max_bins = *std::max_element(bins.begin(), bins.end());
    auto& g = row.low_motion ? low : high;
    auto& b = row.low_motion ? low_bins : high_bins;
    g.insert(g.end(), gflops.begin(), gflops.end());
    b.insert(b.end(), bins.begin(), bins.end());
    result.rows.push_back(row);
  }
  result.low_gflops = mean(low);
  result.high_gflops = mean(high);
  result.low_bins = mean(low_bins);
  result.high_bins = mean(high_bins);
  if (!o.sgs_baseline_model().empty()) {
    torch::manual_seed(o.seed());
    auto plain = build_network(model_options(o.sgs_baseline_model(), o), {o.classes()});
    plain->to(device);
    plain->eval();
    FlopRecorder rec;
    plain->forward_all(motion_clip(MotionKind::kStill, 0, o.frames(), o.size(), o.seed()).to(device));
    rec.finish();
    result.baseline_gflops = rec.total_macs() / 1e9;
  }
  return result;
}

ModelBenchResult run_model_bench(const ModelBenchOptions& o) {
  check_model_bench_options(o);
  ModelBenchResult r;
  r.options = o;
  for (const auto& name : o.models()) {
    spdlog::info("bench model: {} ({} x 3 x {} x {} x {}, width {}, {} {})", name, o.batch(), o.frames(),
                 o.size(), o.size(), o.width(), o.device(), o.precision());
    r.throughput.push_back(bench_throughput(name, o));
    if (r.device_name.empty()) r.device_name = r.throughput.back().device_name;
  }
  if (!o.sgs_model().empty()) {
    r.sgs = bench_sgs_flops(o);
    r.has_sgs = true;
  }
  for (const auto& name : o.token_models()) {
    for (auto& row : bench_token_reduction(name, o)) r.tokens.push_back(row);
  }
  return r;
}

std::vector<TokenBenchRow> bench_token_reduction(const std::string& name, const ModelBenchOptions& o_in) {
  check_model_bench_options(o_in);
  ModelBenchOptions o = o_in;
  const ModelOptions plain = model_options(name, o);
  const bool images = resolve_model(plain).name == "deit";
  o.frames(images ? 1 : o.token_frames());
  ModelOptions base = model_options(name, o);
  const torch::Device device = bench_device(o);
  ThreadsScope threads(o.threads());
  torch::manual_seed(o.seed());
  const auto x = torch::randn({o.batch(), 3, o.frames(), o.size(), o.size()}).to(device);
  const auto y = torch::randint(o.classes(), {o.batch()}, torch::kLong).to(device);
  spdlog::info("bench model: token reduction of {} ({} x 3 x {} x {} x {}, {})", name, o.batch(), o.frames(), o.size(),
               o.size(), o.device());

  auto build = [&](const ModelOptions& m) {
    torch::manual_seed(o.seed());  // the same weights under every reducer
    auto net = build_network(m, {o.classes()});
    net->to(device);
    return net;
  };
  auto gflops_of = [&](NetworkImpl& net) {
    torch::NoGradGuard no_grad;
    net.eval();
    FlopRecorder rec;
    const auto out = net.forward_all(x);
    rec.finish();
    const auto g = out.reported("gflops");
    return g.defined() ? g.mean().item<double>() : rec.total_macs() / 1e9 / static_cast<double>(o.batch());
  };
  auto timed = [&](NetworkImpl& net, bool train) {
    std::vector<double> seconds;
    for (int64_t i = 0; i < o.warmup() + o.iters(); ++i) {
      synchronize(device);
      const auto t0 = Clock::now();
      if (train) {
        net.train();
        net.zero_grad(/*set_to_none=*/true);
        torch::nn::functional::cross_entropy(net.forward_all(x).logits.at(0), y).backward();
      } else {
        torch::NoGradGuard no_grad;
        net.eval();
        net.forward_all(x);
      }
      synchronize(device);
      if (i >= o.warmup()) seconds.push_back(seconds_since(t0));
    }
    return static_cast<double>(o.batch()) / median(seconds);
  };
  auto measure = [&](const ModelOptions& m, const std::string& reducer, const std::string& setting) {
    auto net = build(m);
    TokenBenchRow row;
    row.model = name;
    row.reducer = reducer;
    row.setting = setting;
    row.gflops = gflops_of(*net);
    row.infer_per_s = timed(*net, false);
    row.train_per_s = timed(*net, true);
    return row;
  };

  std::vector<TokenBenchRow> rows;
  rows.push_back(measure(base, "none", ""));
  ModelOptions ats = base;
  ats.token_reducer = "ats";
  ats.ats_rho = o.token_rho();
  char setting[96];
  std::snprintf(setting, sizeof setting, "K_n = max(%.2f N_n, 8)", o.token_rho());
  rows.push_back(measure(ats, "ats", setting));
  // ToMe: the r whose GFLOPs come closest to ATS's without exceeding them (GFLOPs fall as r grows).
  ModelOptions tome = base;
  tome.token_reducer = "tome";
  auto tome_gflops = [&](int64_t r) {
    tome.tome_r = r;
    auto net = build(tome);
    return gflops_of(*net);
  };
  const auto probe = build(base);
  const int64_t positions = static_cast<TransformerNetworkImpl&>(*probe).positions();
  int64_t lo = 1, hi = positions / 2;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (tome_gflops(mid) <= rows[1].gflops) hi = mid; else lo = mid + 1;
  }
  tome.tome_r = lo;
  rows.push_back(measure(tome, "tome", "r = " + std::to_string(lo)));
  for (auto& row : rows) {
    row.flops_reduction = rows[0].gflops / row.gflops;
    row.train_speedup = row.train_per_s / rows[0].train_per_s;
    row.infer_speedup = row.infer_per_s / rows[0].infer_per_s;
  }
  if (!o.python().empty()) {
    ModelBenchOptions py = o;
    py.iters(std::max<int64_t>(1, o.iters()));
    const ThroughputRow t = bench_throughput(name, py);
    rows[0].python_train_per_s = t.python_clips_per_s;
    rows[0].python_error = t.python_error;
  }
  return rows;
}

std::string format_model_bench(const ModelBenchResult& r) {
  const auto& o = r.options;
  std::ostringstream s;
  char line[512];
  std::snprintf(line, sizeof line,
                "training throughput (forward+backward, train mode): batch %lld x 3 x %lld x %lld x %lld, width %g, "
                "%lld classes, %lld threads, median of %lld timed steps after %lld\n",
                static_cast<long long>(o.batch()), static_cast<long long>(o.frames()),
                static_cast<long long>(o.size()), static_cast<long long>(o.size()), o.width(),
                static_cast<long long>(o.classes()), static_cast<long long>(o.threads()),
                static_cast<long long>(o.iters()), static_cast<long long>(o.warmup()));
  s << line;
  s << "device " << o.device();
  if (!r.device_name.empty()) s << " (" << r.device_name << ")";
  s << ", precision " << o.precision()
    << (o.precision() == "fp32" ? "" : " (forward under autocast, loss in float32)") << "\n";
  std::snprintf(line, sizeof line, "  %-16s %12s %14s %14s %8s  %s\n", "model", "params", "holo clips/s",
                "torch clips/s", "ratio", "SGS bins holo/torch");
  s << line;
  for (const auto& t : r.throughput) {
    std::string torch_cps = "-", ratio = "-", bins;
    char buf[64];
    if (t.python_clips_per_s > 0) {
      std::snprintf(buf, sizeof buf, "%.3f", t.python_clips_per_s);
      torch_cps = buf;
      std::snprintf(buf, sizeof buf, "%.2f", t.ratio);
      ratio = buf;
    }
    if (t.holo_active_bins >= 0) {
      std::snprintf(buf, sizeof buf, "%.2f / ", t.holo_active_bins);
      bins = buf;
      if (t.python_active_bins >= 0) {
        std::snprintf(buf, sizeof buf, "%.2f", t.python_active_bins);
        bins += buf;
      } else {
        bins += "-";
      }
    }
    std::snprintf(line, sizeof line, "  %-16s %12lld %14.3f %14s %8s  %s\n", t.model.c_str(),
                  static_cast<long long>(t.parameters), t.holo_clips_per_s, torch_cps.c_str(), ratio.c_str(),
                  bins.c_str());
    s << line;
    if (!t.python_error.empty()) s << "    (no PyTorch figure: " << t.python_error.substr(0, 200) << ")\n";
  }
  if (r.has_sgs) {
    const auto& g = r.sgs;
    std::snprintf(line, sizeof line,
                  "\nSGS: GFLOPs per clip of %s (eval, 1 x 3 x %lld x %lld x %lld, %lld synthetic clips per kind, "
                  "B = %lld bins)\n",
                  g.model.c_str(), static_cast<long long>(o.frames()), static_cast<long long>(o.size()),
                  static_cast<long long>(o.size()), static_cast<long long>(o.sgs_clips()),
                  static_cast<long long>(g.bins));
    s << line;
    const double base = g.baseline_gflops;
    auto ratio = [base](double x) {
      char b[32];
      std::snprintf(b, sizeof b, "%.3f", x / base);
      return base > 0 ? std::string(b) : std::string("-");
    };
    std::snprintf(line, sizeof line, "  %-26s %12s %10s %14s\n", "clips", "GFLOPs", "/ no SGS", "active bins");
    s << line;
    for (const auto& row : g.rows) {
      char bins[64];
      std::snprintf(bins, sizeof bins, "%.2f (%g-%g)", row.active_bins, row.min_bins, row.max_bins);
      std::snprintf(line, sizeof line, "  %-26s %12.4f %10s %14s\n",
                    (row.kind + (row.low_motion ? " (low motion)" : " (high motion)")).c_str(), row.gflops,
                    ratio(row.gflops).c_str(), bins);
      s << line;
    }
    std::snprintf(line, sizeof line, "  %-26s %12.4f %10s %14.2f\n", "low motion, mean", g.low_gflops,
                  ratio(g.low_gflops).c_str(), g.low_bins);
    s << line;
    std::snprintf(line, sizeof line, "  %-26s %12.4f %10s %14.2f\n", "high motion, mean", g.high_gflops,
                  ratio(g.high_gflops).c_str(), g.high_bins);
    s << line;
    if (!g.baseline_model.empty()) {
      std::snprintf(line, sizeof line, "  %-26s %12.4f %10s %14lld\n", (g.baseline_model + " (no SGS)").c_str(),
                    base, "1", static_cast<long long>(g.bins));
      s << line;
    }
  }
  return s.str();
}

std::string format_token_bench(const ModelBenchResult& r) {
  if (r.tokens.empty()) return "";
  std::ostringstream s;
  char line[512];
  s << "\ntoken reduction (random weights; per image for DeiT, per clip of " << r.options.token_frames()
    << " frames otherwise; speed-up and GFLOPs reduction against the same network without reduction):\n";
  std::snprintf(line, sizeof line, "  %-14s %-6s %-22s %8s %10s %10s %8s %8s %8s %12s %12s %14s\n", "network", "reducer",
                "setting", "GFLOPs", "train/s", "infer/s", "train x", "infer x", "GFLOPs /", "train x/GF /",
                "infer x/GF /", "PyTorch train/s");
  s << line;
  for (const auto& t : r.tokens) {
    char py[32] = "";
    if (t.python_train_per_s > 0) std::snprintf(py, sizeof py, "%.3f", t.python_train_per_s);
    std::snprintf(line, sizeof line, "  %-14s %-6s %-22s %8.3f %10.3f %10.3f %8.2f %8.2f %8.2f %12.2f %12.2f %14s\n",
                  t.model.c_str(), t.reducer.c_str(), t.setting.c_str(), t.gflops, t.train_per_s, t.infer_per_s,
                  t.train_speedup, t.infer_speedup, t.flops_reduction, t.train_speedup / t.flops_reduction,
                  t.infer_speedup / t.flops_reduction, py);
    s << line;
  }
  return s.str();
}

std::string model_bench_json(const ModelBenchResult& r) {
  const auto& o = r.options;
  nlohmann::json j = {{"batch", o.batch()},   {"frames", o.frames()},   {"size", o.size()},
                      {"width", o.width()},   {"classes", o.classes()}, {"threads", o.threads()},
                      {"iters", o.iters()},   {"warmup", o.warmup()},   {"device", o.device()},
                      {"precision", o.precision()}, {"models", nlohmann::json::array()}};
  if (!r.device_name.empty()) j["device_name"] = r.device_name;
  for (const auto& t : r.throughput) {
    nlohmann::json m = {{"model", t.model}, {"parameters", t.parameters}, {"holo_clips_per_s", t.holo_clips_per_s}};
    if (t.python_clips_per_s > 0) {
      m["torch_clips_per_s"] = t.python_clips_per_s;
      m["ratio"] = t.ratio;
    } else {
      m["torch_error"] = t.python_error;
    }
    if (t.holo_active_bins >= 0) m["holo_active_bins"] = t.holo_active_bins;
    if (t.python_active_bins >= 0) m["torch_active_bins"] = t.python_active_bins;
    j["models"].push_back(m);
  }
  if (r.has_sgs) {
    const auto& g = r.sgs;
    nlohmann::json s = {{"model", g.model},
                        {"baseline_model", g.baseline_model},
                        {"clips_per_kind", o.sgs_clips()},
                        {"bins", g.bins},
                        {"baseline_gflops", g.baseline_gflops},
                        {"low_gflops", g.low_gflops},
                        {"high_gflops", g.high_gflops},
                        {"low_active_bins", g.low_bins},
                        {"high_active_bins", g.high_bins},
                        {"kinds", nlohmann::json::array()}};
    for (const auto& row : g.rows) {
      s["kinds"].push_back({{"kind", row.kind}, {"low_motion", row.low_motion}, {"gflops", row.gflops},
                            {"active_bins", row.active_bins}, {"min_bins", row.min_bins},
                            {"max_bins", row.max_bins}});
    }
    j["sgs"] = s;
  }
  for (const auto& t : r.tokens) {
    nlohmann::json row = {{"model", t.model}, {"reducer", t.reducer}, {"setting", t.setting}, {"gflops", t.gflops},
                          {"train_per_s", t.train_per_s}, {"infer_per_s", t.infer_per_s},
                          {"train_speedup", t.train_speedup}, {"infer_speedup", t.infer_speedup},
                          {"gflops_reduction", t.flops_reduction}};
    if (t.python_train_per_s > 0) row["torch_train_per_s"] = t.python_train_per_s;
    j["token_reduction"].push_back(row);
  }
  return j.dump(1);
}

}  // namespace holo::models
