#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "checkpoints/checkpoint.h"
#include "core/allocator.h"
#include "core/env.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/run_dir.h"
#include "core/time.h"
#include "dist/communicator.h"
#include "dist/reducer.h"
#include "dist/sync_batch_norm.h"
#include "dist/world.h"
#include "models/batch_norm.h"
#include "models/network.h"
#include "models/weights.h"
#include "pipeline/dataset.h"
#include "pipeline/feature_store.h"
#include "pipeline/loader.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "train/signals.h"
#include "train/table.h"
#include "train/task.h"
#include "train/tensorboard.h"

namespace holo::train {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

/// Everything a rank needs to run a network on a dataset.
struct Context {
  const dist::World* world = nullptr;
  torch::Device device = torch::kCPU;
  std::shared_ptr<dist::Communicator> comm;
  std::shared_ptr<pipeline::Dataset> dataset;
  std::unique_ptr<Task> task;
  std::shared_ptr<models::NetworkImpl> net;
};

torch::Device pick_device(const dist::World& world) {
  const int n = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  const int d = dist::select_device(world, n);
  return d >= 0 ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(d)) : torch::Device(torch::kCPU);
}

/// Checks what only makes sense together, before any work starts.
void check_runnable(const Recipe& r, const torch::Device& device) {
  if (r.train.precision == "fp16" && !device.is_cuda()) {
    throw RecipeError("--set/recipe", 0, 0, "train.precision",
                      "fp16 needs a CUDA device; use bf16 or fp32 on the CPU");
  }
}

/// run.deterministic: the same kernels, summing in the same order, on every run: cuDNN's
/// deterministic algorithms without autotuning, LibTorch's deterministic implementations where it
/// has them (a warning names an operation that has none), and full float32 on GPUs (no TF32, whose
/// results depend on the GPU generation). cuBLAS needs a fixed workspace for that, set before its
/// first handle exists unless the environment already chose one.
void use_deterministic_kernels() {
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  auto& context = at::globalContext();
  context.setDeterministicCuDNN(true);
  context.setBenchmarkCuDNN(false);
  context.setDeterministicAlgorithms(true, /*warn_only=*/true);
  context.setAllowTF32CuDNN(false);
  context.setAllowTF32CuBLAS(false);
}

Context make_context(const Recipe& recipe, const std::string& split) {
  Context ctx;
  ctx.world = &dist::init_world();
  if (recipe.run.deterministic) use_deterministic_kernels();
  ctx.device = pick_device(*ctx.world);
  check_runnable(recipe, ctx.device);
  if (env::num_threads() > 0) torch::set_num_threads(env::num_threads());
  ctx.comm = dist::make_communicator(recipe.dist, ctx.device);
  ctx.dataset = pipeline::make_dataset(recipe, split);
  ctx.task = make_task(recipe, *ctx.dataset);
  // Identical initial weights on every rank (and broadcast from rank 0 all the same).
  torch::manual_seed(static_cast<uint64_t>(recipe.run.seed));
  ctx.net = models::build_network(recipe.model, ctx.task->head_sizes());
  ctx.net->to(ctx.device);
  return ctx;
}

ckpt::NamedTensors model_state(models::NetworkImpl& net) {
  ckpt::NamedTensors out;
  for (const auto& p : net.named_parameters()) out.emplace_back("model." + p.key(), p.value());
  for (const auto& b : net.named_buffers()) out.emplace_back("model." + b.key(), b.value());
  return out;
}

/// Copies "model.*" tensors of a checkpoint into the network; every one must be there.
void load_model_state(models::NetworkImpl& net, const std::map<std::string, torch::Tensor>& state,
                      const std::string& from) {
  torch::NoGradGuard no_grad;
  auto load_one = [&](const std::string& name, torch::Tensor& dst) {
    auto it = state.find("model." + name);
    if (it == state.end() || it->second.sizes() != dst.sizes()) {
      throw IoError("'" + from + "' does not fit this model: tensor 'model." + name + "' " +
                    (it == state.end() ? "is missing" : "has another shape"));
    }
    dst.copy_(it->second.to(dst.device(), dst.scalar_type()));
  };
  for (auto& p : net.named_parameters()) load_one(p.key(), p.value());
  for (auto& b : net.named_buffers()) load_one(b.key(), b.value());
}

/// Copies "task.*" tensors into the task's module; every one must be there.
void load_task_state(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& state,
                     const std::string& from) {
  torch::NoGradGuard no_grad;
  auto load_one = [&](const std::string& name, torch::Tensor& dst) {
    auto it = state.find("task." + name);
    if (it == state.end() || it->second.sizes() != dst.sizes()) {
      throw IoError("'" + from + "' does not fit this task: tensor 'task." + name + "' " +
                    (it == state.end() ? "is missing" : "has another shape"));
    }
    dst.copy_(it->second.to(dst.device(), dst.scalar_type()));
  };
  for (auto& p : module.named_parameters()) load_one(p.key(), p.value());
  for (auto& b : module.named_buffers()) load_one(b.key(), b.value());
}

/// model.init: a checkpoint (directory or folder of checkpoints) or a single file of tensors
/// (a dict saved by torch.save: `holo ckpt export`, torchvision, PySlowFast, MMAction2), named as
/// model.init_layout says (models/weights.h). Anything left unmatched, apart from a classifier of
/// another class count, stops the run with exit 2 unless model.init_strict is false.
void init_from(models::NetworkImpl& net, const holo::ModelOptions& model) {
  const std::string& path = model.init;
  std::map<std::string, torch::Tensor> state;
  if (fs::is_directory(path)) {
    auto loaded = ckpt::Manager::load_newest_valid(path, 0, 1);
    for (auto& [k, v] : loaded.replicated) {
      if (k.rfind("model.", 0) == 0) state[k.substr(6)] = v;
    }
  } else {
    for (auto& [k, t] : models::read_weights_file(path)) state[k.rfind("model.", 0) == 0 ? k.substr(6) : k] = t;
  }
  const std::string family = models::resolve_model(model).name;
  const auto report = models::import_weights(net, family, state, model.init_layout);
  const auto initialised = [&] {
    spdlog::info("initialised {} tensors from {} ({} names){}", report.loaded, path, models::to_string(report.layout),
                 report.classifier_kept.empty() ? "" : "; the classifier keeps its fresh weights (another class count)");
    for (const auto& c : report.classifier_kept) spdlog::debug("model.init: classifier {}", c);
  };
  if (report.unmatched.empty()) return initialised();
  // Up to 10 lines of each side: what the network lacks, and what the file has in excess.
  std::string list;
  for (const bool network_side : {true, false}) {
    std::vector<std::string> side;
    for (const auto& u : report.unmatched) {
      if ((u.rfind("file tensor", 0) != 0) == network_side) side.push_back(u);
    }
    for (size_t i = 0; i < side.size() && i < 10; ++i) list += "\n  " + side[i];
    if (side.size() > 10) list += "\n  ... and " + std::to_string(side.size() - 10) + " more like these";
  }
  const std::string msg = std::to_string(report.unmatched.size()) + " tensor(s) of '" + path + "' (" +
                          models::to_string(report.layout) + " names) and the " + family +
                          " network did not match:" + list;
  if (model.init_strict) {
    throw RecipeError("[model]", 0, 0, "model.init",
                      msg + "\n(set model.init_strict = false to train with them left as initialised, or "
                            "model.init_layout to read other names)");
  }
  spdlog::warn("model.init: {}", msg);
  initialised();
}

void freeze_stages(models::NetworkImpl& net, const std::vector<std::string>& stages) {
  int64_t frozen = 0;
  for (auto& p : net.named_parameters()) {
    for (const auto& s : stages) {
      if (p.key().rfind(s + ".", 0) == 0) {
        p.value().set_requires_grad(false);
        ++frozen;
      }
    }
  }
  if (!stages.empty()) spdlog::info("froze {} parameter tensors of stages {}", frozen, fmt::join(stages, ","));
}

/// Autocast for bf16/fp16 while it lives.
class AutocastGuard {
 public:
  AutocastGuard(const std::string& precision, const torch::Device& device) {
    if (precision == "fp32") return;
    const auto dtype = precision == "bf16" ? at::kBFloat16 : at::kHalf;
    active_ = true;
    cuda_ = device.is_cuda();
    if (cuda_) {
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(dtype);
    } else {
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(dtype);
    }
  }
  ~AutocastGuard() {
    if (!active_) return;
    if (cuda_) {
      at::autocast::set_enabled(false);
    } else {
      at::autocast::set_cpu_enabled(false);
    }
    at::autocast::clear_cache();
  }

 private:
  bool active_ = false;
  bool cuda_ = false;
};

/// Dynamic loss scaling for fp16: scale up after a run of finite steps, halve and skip the step
/// on overflow (decided by all ranks together).
class LossScaler {
 public:
  explicit LossScaler(bool enabled) : enabled_(enabled) {}
  torch::Tensor scale(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }
  /// Unscales gradients; returns false when the step must be skipped.
  bool unscale(const NamedTensors& params, dist::Communicator& comm, const torch::Device& dev) {
    if (!enabled_) return true;
    torch::NoGradGuard no_grad;
    torch::Tensor bad = torch::zeros({1}, torch::TensorOptions().device(dev));
    for (const auto& [n, p] : params) {
      if (!p.grad().defined()) continue;
      p.grad().div_(scale_);
      bad += (~torch::isfinite(p.grad())).any().to(torch::kFloat32);
    }
    comm.all_reduce(bad, dist::ReduceOp::kMax);
    if (bad.item<float>() > 0) {
      scale_ /= 2;
      good_ = 0;
      spdlog::warn("fp16 overflow: step skipped, loss scale now {}", scale_);
      return false;
    }
    if (++good_ % 2000 == 0) scale_ *= 2;
    return true;
  }
  double value() const { return scale_; }
  void set(double s) { scale_ = s; }
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  double scale_ = 65536.0;
  int64_t good_ = 0;
};

/// Sums `stats` over all ranks; keys are the same on every rank.
Stats all_reduce_stats(const Stats& stats, dist::Communicator& comm, const torch::Device& dev) {
  std::vector<double> values;
  for (const auto& [k, v] : stats) values.push_back(v);
  if (values.empty()) return stats;
  torch::Tensor t = torch::tensor(values, torch::kFloat64).to(dev);
  comm.all_reduce(t, dist::ReduceOp::kSum);
  t = t.cpu();
  Stats out;
  size_t i = 0;
  for (const auto& [k, v] : stats) out[k] = t[static_cast<int64_t>(i++)].item<double>();
  return out;
}

/// Targets of records, as the task's evaluate() expects them.
torch::Tensor record_targets(const pipeline::Dataset& ds, const std::vector<int64_t>& records,
                             bool multilabel, int64_t num_tags) {
  if (!multilabel) {
    std::vector<int64_t> l;
    for (int64_t r : records) l.push_back(ds.records()[r].label);
    return torch::tensor(l, torch::kInt64);
  }
  torch::Tensor t = torch::zeros({static_cast<int64_t>(records.size()), num_tags});
  for (size_t i = 0; i < records.size(); ++i) {
    for (int64_t tag : ds.records()[records[i]].tags) t[static_cast<int64_t>(i)][tag] = 1.0f;
  }
  return t;
}

/// Mean, min and max of each per-clip cost (models::ClipCosts) over the clips seen, summed over
/// the ranks by reduce(): "gflops", "active_bins" for SGS networks.
class CostStats {
 public:
  CostStats() = default;
  /// Every name the network reports, so that every rank reduces the same ones.
  explicit CostStats(const std::vector<std::string>& names) {
    for (const auto& n : names) stats_[n];
  }
  void add(const models::ClipCosts& costs) {
    for (const auto& [name, values] : costs) {
      auto& s = stats_[name];
      const auto v = values.to(torch::kFloat64);
      s.sum += v.sum().item<double>();
      s.count += static_cast<double>(v.numel());
      s.min = std::min(s.min, v.min().item<double>());
      s.max = std::max(s.max, v.max().item<double>());
    }
  }
  /// Over all ranks (every rank runs the same network, so the names agree).
  void reduce(dist::Communicator& comm, const torch::Device& dev) {
    if (stats_.empty()) return;
    std::vector<double> sums, maxes;
    for (const auto& [name, s] : stats_) {
      sums.insert(sums.end(), {s.sum, s.count});
      maxes.insert(maxes.end(), {s.max, -s.min});
    }
    torch::Tensor a = torch::tensor(sums, torch::kFloat64).to(dev), b = torch::tensor(maxes, torch::kFloat64).to(dev);
    comm.all_reduce(a, dist::ReduceOp::kSum);
    comm.all_reduce(b, dist::ReduceOp::kMax);
    a = a.cpu();
    b = b.cpu();
    int64_t i = 0;
    for (auto& [name, s] : stats_) {
      s.sum = a[2 * i].item<double>();
      s.count = a[2 * i + 1].item<double>();
      s.max = b[2 * i].item<double>();
      s.min = -b[2 * i + 1].item<double>();
      ++i;
    }
  }
  /// "<name>_mean", "<name>_min", "<name>_max" into `line`.
  void write(nlohmann::json& line) const {
    for (const auto& [name, s] : stats_) {
      if (s.count <= 0) continue;
      line[name + "_mean"] = s.sum / s.count;
      line[name + "_min"] = s.min;
      line[name + "_max"] = s.max;
    }
  }
  /// {"<name>": {"mean", "min", "max", "clips"}}.
  nlohmann::json to_json() const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [name, s] : stats_) {
      if (s.count > 0) j[name] = {{"mean", s.sum / s.count}, {"min", s.min}, {"max", s.max}, {"clips", s.count}};
    }
    return j;
  }
  void clear() { stats_.clear(); }
  bool empty() const { return stats_.empty(); }

 private:
  struct Stat {
    double sum = 0, count = 0;
    double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity();
  };
  std::map<std::string, Stat> stats_;
};

/// Video-level scores of every record of the loader's dataset: views averaged per video, then
/// gathered from all ranks. Returns (record indices, V x C scores, V x D features) and the
/// network's per-clip costs over every view, summed over the ranks.
struct VideoScores {
  std::vector<int64_t> records;
  torch::Tensor scores;
  torch::Tensor features;
  CostStats costs;
};

VideoScores score_videos(Context& ctx, pipeline::ClipLoader& loader, const std::string& precision,
                         const std::string& label) {
  torch::NoGradGuard no_grad;
  ctx.net->eval();
  std::map<int64_t, std::tuple<torch::Tensor, torch::Tensor, int64_t>> acc;  // record -> sums
  CostStats costs(ctx.net->clip_cost_names());
  holo::Progress progress({label, loader.batches_per_epoch(), "batches"});
  while (auto batch = loader.next()) {
    progress.advance();  // each rank counts its own batches (ranks other than 0: in their log file)
    if (batch->indices.empty()) continue;  // a rank's share of the views can end early
    models::NetworkOutput out;
    {
      AutocastGuard autocast(precision, ctx.device);
      out = ctx.net->forward_all(batch->clips.to(ctx.device));
    }
    costs.add(ctx.net->clip_costs(batch->clips, out));
    const torch::Tensor s = ctx.task->scores(out).cpu();
    const torch::Tensor f = out.features.to(torch::kFloat32).cpu();
    for (size_t i = 0; i < batch->indices.size(); ++i) {
      auto& [ss, fs_, n] = acc[batch->indices[i]];
      const auto row = static_cast<int64_t>(i);
      ss = ss.defined() ? ss + s[row] : s[row].clone();
      fs_ = fs_.defined() ? fs_ + f[row] : f[row].clone();
      ++n;
    }
  }
  progress.finish();
  ctx.net->train();
  // Every rank joins, with the names its network reports even when it saw no view.
  costs.reduce(*ctx.comm, ctx.device);
  // Rows: [record, views, score sums..., feature sums...], padded to the largest rank's count
  // with record -1. The views of one video can land on different ranks (the test loader shards
  // views, not videos), so sums travel and are merged per record before averaging.
  // A rank without videos contributes no rows; the score width is agreed with the others.
  int64_t cols_s = 0, cols_f = ctx.net->feature_dim();
  if (!acc.empty()) {
    cols_s = std::get<0>(acc.begin()->second).size(0);
    cols_f = std::get<1>(acc.begin()->second).size(0);
  }
  torch::Tensor dims = torch::tensor({static_cast<double>(acc.size()), static_cast<double>(cols_s)}, torch::kFloat64).to(ctx.device);
  ctx.comm->all_reduce(dims, dist::ReduceOp::kMax);
  const int64_t rows = static_cast<int64_t>(dims[0].item<double>());
  cols_s = static_cast<int64_t>(dims[1].item<double>());
  torch::Tensor local = torch::full({rows, 2 + cols_s + cols_f}, -1.0, torch::kFloat64);
  int64_t i = 0;
  for (const auto& [rec, v] : acc) {
    const auto& [ss, fs_, n] = v;
    local[i][0] = static_cast<double>(rec);
    local[i][1] = static_cast<double>(n);
    local[i].slice(0, 2, 2 + cols_s).copy_(ss.to(torch::kFloat64));
    local[i].slice(0, 2 + cols_s).copy_(fs_.to(torch::kFloat64));
    ++i;
  }
  std::vector<torch::Tensor> parts = ctx.comm->all_gather(local.to(ctx.device));
  torch::Tensor all = torch::cat(parts).cpu();
  all = all.index_select(0, torch::nonzero(all.select(1, 0) >= 0).squeeze(1));
  // Merge the rows of one record (sums of views from several ranks), in record order.
  const auto [uniq, inverse] = torch::_unique(all.select(1, 0), /*sorted=*/true, /*return_inverse=*/true);
  torch::Tensor merged = torch::zeros({uniq.size(0), all.size(1) - 1}, torch::kFloat64);
  merged.index_add_(0, inverse, all.slice(1, 1));
  const torch::Tensor views = merged.select(1, 0).unsqueeze(1);
  VideoScores out;
  for (int64_t r = 0; r < uniq.size(0); ++r) out.records.push_back(static_cast<int64_t>(uniq[r].item<double>()));
  out.scores = (merged.slice(1, 1, 1 + cols_s) / views).to(torch::kFloat32);
  out.features = (merged.slice(1, 1 + cols_s) / views).to(torch::kFloat32);
  out.costs = std::move(costs);
  return out;
}

/// Appends JSON lines to metrics.jsonl and their scalars to a new TensorBoard event file in
/// `events_dir` (rank 0 only).
class MetricsLog {
 public:
  MetricsLog(const std::string& path, const std::string& events_dir) : out_(path, std::ios::app), events_(events_dir) {
    if (!out_) throw IoError("cannot write '" + path + "'");
  }
  void write(const nlohmann::json& line) {
    out_ << line.dump() << "\n";
    out_.flush();
    events_.write_metrics(line);
  }

 private:
  std::ofstream out_;
  TensorBoardWriter events_;
};

nlohmann::json to_json(const pipeline::LoaderState& s) {
  return {{"epoch", s.epoch}, {"cursor", s.cursor}, {"seed", s.seed}, {"quarantined", s.quarantined}};
}

pipeline::LoaderState loader_state_from(const nlohmann::json& j) {
  pipeline::LoaderState s;
  s.epoch = j.at("epoch");
  s.cursor = j.at("cursor");
  s.seed = j.at("seed");
  s.quarantined = j.value("quarantined", int64_t{0});
  return s;
}

std::string attempt_id(dist::Communicator& comm, const torch::Device& dev) {
  std::random_device rd;
  torch::Tensor t = torch::tensor({static_cast<int64_t>((static_cast<uint64_t>(rd()) << 31) ^ rd())}, torch::kInt64).to(dev);
  comm.broadcast(t, 0);
  return std::to_string(t.cpu().item<int64_t>());
}

/// Where a run starts: the checkpoint it resumes (if any), the run it is, and the other runs'
/// checkpoints that checkpoint.existing = "overwrite" deletes.
struct Start {
  std::optional<ckpt::Loaded> resume;
  std::string run_id;
  std::vector<std::string> to_remove;
};

/// Decides the start from the checkpoints under `root` (every rank alike, before anything is
/// removed). Throws holo::IoError (exit 1) when checkpoints exist and none loads under resume =
/// auto, and holo::UsageError (exit 2) naming another run's checkpoints unless
/// checkpoint.existing = overwrite (docs/checkpoint-format.md, "Nothing lost").
Start choose_start(const Recipe& recipe, const std::string& root, const dist::World& world,
                   const std::string& new_run_id) {
  Start start;
  const ckpt::Survey survey = ckpt::Manager::survey(root, "");
  const std::string& mode = recipe.checkpoint.resume;
  if (mode == "auto") {
    start.resume = ckpt::Manager::load_latest(root, world.rank, world.size);
  } else if (mode != "never") {
    start.resume = ckpt::Manager::load_newest_valid(mode, world.rank, world.size);
  }
  // A resumed checkpoint of this run directory continues its run; anything else starts one.
  const bool ours = start.resume && !start.resume->run_id.empty() &&
                    fs::weakly_canonical(fs::path(start.resume->path).parent_path()) == fs::weakly_canonical(root);
  start.run_id = ours ? start.resume->run_id : new_run_id;
  std::vector<std::string> others;
  for (const auto& e : survey.all()) {
    const bool foreign = mode == "never" || (!e.run_id.empty() && e.run_id != start.run_id);
    if (foreign) others.push_back(e.path + " (step " + std::to_string(e.step) + ", run " + (e.run_id.empty() ? "without an id" : e.run_id) + ")");
    if (foreign) start.to_remove.push_back(e.path);
  }
  if (mode == "never") {
    for (const auto& [dir, why] : survey.unreadable) {
      others.push_back(dir + " (" + why + ")");
      start.to_remove.push_back(dir);
    }
  }
  if (!others.empty() && recipe.checkpoint.existing != "overwrite") {
    std::string list;
    for (const auto& o : others) list += "\n  " + o;
    throw UsageError("the run directory's checkpoints belong to another run than this one (checkpoint.resume = \"" +
                     mode + "\"):" + list +
                     "\nset checkpoint.resume = \"auto\" to continue the run that saved the newest, "
                     "checkpoint.existing = \"overwrite\" to delete them first, or another run.dir or run.name");
  }
  return start;
}

/// Keeps the lines of metrics.jsonl that the resumed state includes: training lines up to its
/// step, validation lines up to its last validation. A fresh run starts the file anew; lines
/// that do not parse (a line torn by a kill) are dropped.
void trim_metrics(const std::string& path, int64_t step, int64_t last_val_step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  int64_t dropped = 0;
  while (std::getline(in, line)) {
    bool keep = false;
    try {
      const auto j = nlohmann::json::parse(line);
      const int64_t s = j.at("step").get<int64_t>();
      keep = j.value("split", "") == "train" ? s <= step : s <= last_val_step;
    } catch (const std::exception&) {
      keep = false;
    }
    if (keep) {
      kept += line + "\n";
    } else {
      ++dropped;
    }
  }
  in.close();
  if (dropped > 0) {
    write_file_atomic(path, kept);
    spdlog::info("metrics.jsonl: {} line{} after the resumed state removed (they are trained again)", dropped,
                 dropped == 1 ? "" : "s");
  }
}

Recipe validation_recipe(Recipe r) {
  // Periodic validation during training: one centre view per video, for speed.
  r.sampling.test_clips = 1;
  r.sampling.test_crops = 1;
  return r;
}

}  // namespace

TrainResult train(const Recipe& recipe) {
  install_stop_handlers();
  Context ctx = make_context(recipe, "train");
  const dist::World& world = *ctx.world;
  TrainResult result;
  result.run_dir = run_dir_path(recipe);
  if (world.rank == 0) prepare_run_dir(recipe);
  ctx.comm->barrier();
  // Rank 0's log is train.log; every other rank's whole log is logs/rank-<N>.log (core/log.h).
  if (world.rank == 0) log::add_file((fs::path(result.run_dir) / "train.log").string());
  log::set_rank_log_dir((fs::path(result.run_dir) / "logs").string());
  spdlog::info("training {} on {} ({} rank{}), device {}, collectives {}, run dir {}", recipe.model.name,
               recipe.task.kind, world.size, world.size == 1 ? "" : "s", ctx.device.str(), ctx.comm->backend(),
               result.run_dir);

  std::shared_ptr<pipeline::Dataset> val_ds;
  if (!recipe.data.val.empty() && recipe.train.val_every > 0 && ctx.task->validates()) val_ds = pipeline::make_dataset(recipe, "val");

  if (!recipe.model.init.empty()) init_from(*ctx.net, recipe.model);
  freeze_stages(*ctx.net, recipe.task.freeze);
  dist::broadcast_module(*ctx.net, *ctx.comm, 0);

  ctx.task->prepare(recipe, *ctx.dataset, *ctx.net, ctx.device, *ctx.comm);
  std::shared_ptr<torch::nn::Module> task_module = ctx.task->module();
  if (task_module) {
    task_module->to(ctx.device);
    dist::broadcast_module(*task_module, *ctx.comm, 0);
  }
  // train.sync_bn: every BatchNorm layer normalises in training with the statistics of the whole
  // global batch, over a communicator of its own (its backward collectives run beside the
  // reducer's communication thread). Eval mode keeps plain BatchNorm with running statistics.
  std::shared_ptr<dist::Communicator> bn_comm;
  if (recipe.train.sync_bn && world.size > 1) {
    bn_comm = dist::make_communicator(recipe.dist, ctx.device);
    const models::BatchNormTraining sync = [bn_comm](const torch::Tensor& x, const torch::Tensor& w,
                                                     const torch::Tensor& b, const torch::Tensor& rm,
                                                     const torch::Tensor& rv, double factor, double eps) {
      return dist::sync_batch_norm(x, w, b, rm, rv, factor, eps, bn_comm);
    };
    int64_t layers = models::set_batch_norm_training(*ctx.net, sync);
    if (task_module) layers += models::set_batch_norm_training(*task_module, sync);
    spdlog::info("sync_bn: {} BatchNorm layer{} normalise with the statistics of all {} ranks", layers,
                 layers == 1 ? "" : "s", world.size);
  }
  NamedTensors params;
  for (const auto& p : ctx.net->named_parameters()) params.emplace_back(p.key(), p.value());
  if (task_module) {
    for (const auto& p : task_module->named_parameters()) params.emplace_back("task." + p.key(), p.value());
  }
  Optimizer optim(recipe.optim, params);
  NamedTensors trainable;
  std::vector<torch::Tensor> trainable_list;
  for (const auto& [n, p] : params) {
    if (p.requires_grad()) {
      trainable.emplace_back(n, p);
      trainable_list.push_back(p);
    }
  }
  dist::GradientReducer reducer(trainable_list, ctx.comm, dist::ReducerOptions().bucket_mb(recipe.dist.bucket_mb));
  LossScaler scaler(recipe.train.precision == "fp16");

  pipeline::ClipLoader loader(ctx.dataset, recipe, pipeline::LoaderMode::kTrain, world.rank, world.size);
  // Each rank meets only its shard's bad videos: data.max_bad_fraction is checked against
  // their sum, taken at every step below, so that all ranks stop at the same step.
  if (world.size > 1) loader.defer_bad_fraction_check(true);
  const int64_t batches = loader.batches_per_epoch();
  const int64_t accumulate = recipe.train.accumulate;
  const int64_t steps_per_epoch = batches / accumulate;
  if (steps_per_epoch <= 0) {
    throw Error("the training set gives " + std::to_string(batches) + " batches per epoch on " +
                std::to_string(world.size) + " rank(s) with loader.batch_size = " +
                std::to_string(recipe.loader.batch_size) + " and train.accumulate = " +
                std::to_string(accumulate) + ": nothing to train on");
  }
  int64_t total_steps = recipe.train.epochs * steps_per_epoch;
  if (recipe.train.max_steps > 0) total_steps = std::min(total_steps, recipe.train.max_steps);
  ScheduleClock clock{steps_per_epoch, total_steps};
  check_schedule(recipe.schedule, clock);

  // Resume: which checkpoint, which run; other runs' checkpoints refused or removed, leftovers
  // of interrupted saves and cleanups removed (rank 0, while the others wait).
  const std::string ckpt_root = (fs::path(result.run_dir) / "checkpoints").string();
  ckpt::ManagerOptions mopts;
  mopts.rank = world.rank;
  mopts.world_size = world.size;
  mopts.keep = recipe.checkpoint.keep;
  mopts.background = recipe.checkpoint.background;
  mopts.attempt_id = attempt_id(*ctx.comm, ctx.device);
  Start start = choose_start(recipe, ckpt_root, world, mopts.attempt_id);
  mopts.run_id = start.run_id;
  std::optional<ckpt::Loaded>& resume = start.resume;
  int64_t last_val_step = -1;  // the step of the newest validation in the run's records
  if (resume) last_val_step = resume->meta.value("last_val_step", resume->step - 1);
  ctx.comm->barrier();
  if (world.rank == 0) {
    for (const auto& dir : start.to_remove) {
      std::error_code ec;
      fs::remove_all(dir, ec);
      spdlog::warn("checkpoint: removed {} of another run (checkpoint.existing = overwrite)", dir);
    }
    ckpt::Manager::remove_leftovers(ckpt::Manager::survey(ckpt_root, start.run_id));
    trim_metrics((fs::path(result.run_dir) / "metrics.jsonl").string(), resume ? resume->step : -1,
                 last_val_step);
    // A resumed run adds a new event file whose points replace, in TensorBoard, those of the
    // steps it trains again; a fresh run drops the old files as it drops the old lines.
    if (!resume) remove_event_files(tensorboard_dir(result.run_dir));
  }
  ctx.comm->barrier();
  ckpt::Manager manager(ckpt_root, mopts);
  int64_t step = 0;
  int64_t epoch = 0;
  loader.set_epoch(0);
  ctx.task->set_epoch(0);
  if (resume) {
    // Checkpoints from before the hash left the paths out hold the hash with the paths.
    if (!resume->dataset_hash.empty() && resume->dataset_hash != ctx.dataset->content_hash() &&
        resume->dataset_hash != ctx.dataset->content_hash_with_paths()) {
      throw Error("cannot resume from " + resume->path + ": the training set changed since it was saved (dataset hash " +
                  resume->dataset_hash + ", now " + ctx.dataset->content_hash() + ")");
    }
    load_model_state(*ctx.net, resume->replicated, resume->path);
    if (task_module) load_task_state(*task_module, resume->replicated, resume->path);
    optim.load_state(resume->replicated);
    step = resume->step;
    const auto ls = loader_state_from(resume->meta.at("loader"));
    epoch = ls.epoch;
    loader.set_epoch(epoch);
    ctx.task->set_epoch(epoch);
    loader.load_state(ls);
    // On another number of ranks the rest of this epoch is split anew: its last step takes
    // every sample left, so no sample of the epoch is skipped or trained twice.
    if (resume->world_size != world.size) loader.complete_epoch();
    if (resume->meta.contains("loss_scale")) scaler.set(resume->meta["loss_scale"]);
    if (resume->meta.contains("last_val")) {
      for (const auto& [k, v] : resume->meta["last_val"].items()) result.last_val[k] = v.get<double>();
    }
    if (resume->per_rank.count("rng.cpu")) {
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      gen.set_state(resume->per_rank.at("rng.cpu"));
      if (ctx.device.is_cuda() && resume->per_rank.count("rng.cuda")) {
        at::Generator cuda_gen = at::globalContext().defaultGenerator(ctx.device);
        cuda_gen.set_state(resume->per_rank.at("rng.cuda"));
      }
    } else {
      torch::manual_seed(static_cast<uint64_t>(recipe.run.seed) * 1000003u + world.rank * 7919u + step);
    }
    result.resumed_from = step;
    if (resume->world_size != world.size && recipe.train.max_steps == 0) {
      // Steps per epoch changed with the number of ranks: the run still ends after
      // train.epochs epochs, so the remaining steps are counted anew (the schedule's horizon
      // with them).
      total_steps = step + loader.batches_left() / accumulate +
                    std::max<int64_t>(0, recipe.train.epochs - epoch - 1) * steps_per_epoch;
      clock.total_steps = total_steps;
    }
    spdlog::info("resumed from {} at step {} (epoch {}, cursor {}), saved by {} rank(s), run {}", resume->path,
                 step, epoch, ls.cursor, resume->world_size, start.run_id);
  } else {
    torch::manual_seed(static_cast<uint64_t>(recipe.run.seed) * 1000003u + world.rank * 7919u);
  }

  std::unique_ptr<std::ofstream> sample_log;
  if (!env::sample_log().empty()) {
    sample_log = std::make_unique<std::ofstream>(env::sample_log() + ".rank" + std::to_string(world.rank),
                                                 std::ios::app);
  }

  std::unique_ptr<MetricsLog> metrics;
  if (world.rank == 0) {
    metrics = std::make_unique<MetricsLog>((fs::path(result.run_dir) / "metrics.jsonl").string(),
                                           tensorboard_dir(result.run_dir));
  }

  auto snapshot = [&](std::optional<double> score) {
    ckpt::Snapshot s;
    s.step = step;
    s.epoch = epoch;
    s.replicated = ckpt::NamedTensors(model_state(*ctx.net));
    if (task_module) {
      for (const auto& p : task_module->named_parameters()) s.replicated.emplace_back("task." + p.key(), p.value());
      for (const auto& b : task_module->named_buffers()) s.replicated.emplace_back("task." + b.key(), b.value());
    }
    for (auto& t : optim.state()) s.replicated.push_back(t);
    // Weights, statistics or optimiser state that are no longer finite (batch-norm variances
    // can overflow before the loss does) must not replace a good checkpoint: every rank
    // checks, all agree, none saves.
    {
      torch::NoGradGuard no_grad;
      // One flag per tensor, read back once (not one device sync per tensor).
      std::vector<torch::Tensor> flags;
      std::vector<const std::string*> names;
      for (const auto& [name, t] : s.replicated) {
        if (!t.is_floating_point()) continue;
        flags.push_back(torch::isfinite(t).all().to(ctx.device));
        names.push_back(&name);
      }
      std::string first_bad;
      if (!flags.empty()) {
        const torch::Tensor ok = torch::stack(flags).to(torch::kCPU);
        for (size_t i = 0; i < names.size() && first_bad.empty(); ++i) {
          if (!ok[static_cast<int64_t>(i)].item<bool>()) first_bad = *names[i];
        }
      }
      torch::Tensor bad = torch::tensor({first_bad.empty() ? 0.0f : 1.0f}).to(ctx.device);
      if (world.size > 1) ctx.comm->all_reduce(bad, dist::ReduceOp::kMax);
      if (bad.item<float>() > 0) {
        log::flush();
        throw Error(fmt::format(
            "training diverged: {} is not finite at step {} (optim.lr = {}); it is not saved, the last "
            "checkpoint in {} is kept. Lower optim.lr or set optim.clip_grad_norm, then resume",
            first_bad.empty() ? std::string("a tensor of another rank") : first_bad, step, recipe.optim.lr,
            ckpt_root));
      }
    }
    s.per_rank = {{"rng.cpu", at::detail::getDefaultCPUGenerator().get_state()}};
    // On a GPU, the device's generator too (dropout masks drawn there), for an exact resume.
    if (ctx.device.is_cuda()) s.per_rank.emplace_back("rng.cuda", at::globalContext().defaultGenerator(ctx.device).get_state());
    s.meta = {{"loader", to_json(loader.state())},
              {"loss_scale", scaler.value()},
              {"last_val_step", last_val_step},
              {"last_val", nlohmann::json(result.last_val)}};
    s.recipe_toml = to_toml(recipe);
    s.dataset_hash = ctx.dataset->content_hash();
    s.score = score;
    return s;
  };

  // `completed`: the epochs completed at this validation, as its metrics line says (a whole
  // number, or a fraction for a run that stops inside an epoch).
  auto validate = [&](const nlohmann::json& completed) -> Stats {
    Recipe vr = validation_recipe(recipe);
    pipeline::ClipLoader vloader(val_ds, vr, pipeline::LoaderMode::kTest, world.rank, world.size);
    // A rank alone must not stop in the middle of the ranks' collectives (the bad videos of
    // the validation set are dropped from its views and counted, not summed over ranks).
    if (world.size > 1) vloader.defer_bad_fraction_check(true);
    vloader.set_epoch(0);
    const auto vs = score_videos(ctx, vloader, recipe.train.precision, "validate");
    const bool multilabel = recipe.task.kind == "multilabel";
    const torch::Tensor targets = record_targets(*val_ds, vs.records, multilabel, vs.scores.size(1));
    Stats m = ctx.task->evaluate(vs.scores, targets);
    if (metrics) {
      nlohmann::json line = {{"step", step}, {"epoch", completed}, {"split", "val"}};
      for (const auto& [k, v] : m) line[k] = v;
      vs.costs.write(line);
      metrics->write(line);
    }
    spdlog::info("validation at step {}: {} = {:.4f} over {} videos", step, ctx.task->score_key(),
                 m[ctx.task->score_key()], static_cast<int64_t>(m["videos"]));
    return m;
  };

  std::unique_ptr<holo::Progress> progress;
  if (world.rank == 0) {
    holo::ProgressOptions po{"train", total_steps, "steps"};
    po.start = step;  // a resumed run: its rate counts the steps this process runs
    progress = std::make_unique<holo::Progress>(po);
  }

  Stats window;
  CostStats window_costs(ctx.net->clip_cost_names());  // per-clip costs of SGS networks
  int64_t window_steps = 0;
  auto window_start = Clock::now();
  const auto run_start = Clock::now();
  bool preempted = false;
  ctx.net->train();

  // Steps per epoch depend on the number of ranks, so a run resumed on another number stops
  // at the end of train.epochs as well.
  while (step < total_steps && epoch < recipe.train.epochs && !preempted) {
    // One optimiser step over `accumulate` batches.
    bool epoch_done = false;
    optim.zero_grad();
    // Batches left in this epoch on every rank; fewer than `accumulate` end the epoch early.
    if (loader.batches_left() < accumulate) epoch_done = true;
    bool diverged = false;
    for (int64_t micro = 0; micro < accumulate && !epoch_done; ++micro) {
      auto batch = loader.next();
      if (!batch) {
        epoch_done = true;
        break;
      }
      // A batch of weight 0 only keeps this rank in the step's collectives (an uneven last
      // step of a resumed epoch): not trained on, not counted.
      const bool trained = batch->weight > 0;
      if (sample_log && trained) {
        for (int64_t r : batch->indices) *sample_log << epoch << " " << step << " " << r << "\n";
        sample_log->flush();
      }
      reducer.prepare_for_backward(micro == accumulate - 1);
      models::NetworkOutput out;
      {
        AutocastGuard autocast(recipe.train.precision, ctx.device);
        out = ctx.net->forward_all(batch->clips.to(ctx.device));
      }
      Stats filler;
      torch::Tensor loss = ctx.task->loss(out, *batch, trained ? window : filler) *
                           (batch->weight / static_cast<double>(accumulate));
      if (trained && !scaler.enabled() && !std::isfinite(loss.item<double>())) diverged = true;
      scaler.scale(loss).backward();
      if (micro == accumulate - 1) reducer.finish();
      if (trained) window_costs.add(ctx.net->clip_costs(batch->clips, out));
    }
    if (epoch_done) {
      // The loader's share of this epoch ended (drop_last keeps ranks in step).
      optim.zero_grad();
      ++epoch;
      loader.set_epoch(epoch);
      ctx.task->set_epoch(epoch);
      // A validation the resumed records already hold (killed after it, before the next
      // checkpoint) is not run twice.
      if (val_ds && recipe.train.val_every > 0 && epoch % recipe.train.val_every == 0 &&
          last_val_step != step) {
        result.last_val = validate(epoch);
        last_val_step = step;
      }
      continue;
    }
    const bool ok = scaler.unscale(trainable, *ctx.comm, ctx.device);
    if (recipe.optim.clip_grad_norm > 0) clip_grad_norm(trainable, recipe.optim.clip_grad_norm);
    const double lr = learning_rate_at(recipe.schedule, recipe.optim.lr, step, clock);
    optim.set_lr(lr);
    if (ok) optim.step();
    ++step;
    ++window_steps;
    if (progress) {
      const double count = window.count("count") ? window["count"] : 0.0;
      if (count > 0) progress->set_postfix(fmt::format("loss {:.4f}", window["loss"] / count));
      progress->advance();
    }

    if (step % recipe.train.log_every == 0 || step == total_steps) {
      Stats s = all_reduce_stats(window, *ctx.comm, ctx.device);
      window_costs.reduce(*ctx.comm, ctx.device);
      const double secs = seconds_since(window_start);
      if (metrics) {
        nlohmann::json line = {{"step", step}, {"epoch", epoch}, {"split", "train"}, {"lr", lr}};
        const double count = s["count"] > 0 ? s["count"] : 1;
        for (const auto& k : ctx.task->mean_keys()) {
          if (s.count(k)) line[k] = s[k] / count;
        }
        line["clips_per_s"] = s["count"] / std::max(secs, 1e-9);
        line["time"] = seconds_since(run_start);
        window_costs.write(line);
        metrics->write(line);
      }
      window.clear();
      window_costs = CostStats(ctx.net->clip_cost_names());
      window_steps = 0;
      window_start = Clock::now();
    }

    // Every rank agrees on stopping, so they all save the same step; the same reduction sums
    // the bad videos the ranks met in this epoch (ClipLoader::epoch_quarantined).
    // A loss that is no longer finite (fp32: the fp16 scaler skips such steps itself) means the
    // weights are lost: stop on every rank, keep the last checkpoint, save nothing.
    torch::Tensor stop = torch::tensor({stop_requested() ? 1.0f : 0.0f, 0.0f, diverged ? 1.0f : 0.0f}).to(ctx.device);
    if (world.size > 1) {
      stop[1].fill_(static_cast<double>(loader.epoch_quarantined()));
      ctx.comm->all_reduce(stop, dist::ReduceOp::kSum);
      const torch::Tensor sums = stop.cpu();
      loader.set_world_quarantined(std::llround(sums[1].item<double>()));
    }
    if (stop[2].item<float>() > 0) {
      log::flush();
      throw Error(fmt::format(
          "training diverged: the loss is not finite at step {} (optim.lr = {}); nothing is saved from this step, "
          "the last checkpoint in {} is kept. Lower optim.lr or set optim.clip_grad_norm, then resume",
          step, recipe.optim.lr, ckpt_root));
    }
    if (stop[0].item<float>() > 0) {
      spdlog::warn("stop requested (signal {}): saving a checkpoint at step {}", stop_signal(), step);
      manager.save(snapshot(std::nullopt), /*wait=*/true);
      log::flush();
      preempted = true;
      break;
    }
    if (recipe.checkpoint.every_steps > 0 && step % recipe.checkpoint.every_steps == 0 && step < total_steps) {
      manager.save(snapshot(std::nullopt), /*wait=*/false);
      log::flush();
    }
  }
  if (progress) progress->finish();
  // Epochs completed: the last one ends with the run's last step, before the loop can see it.
  const int64_t completed =
      epoch + (epoch < recipe.train.epochs && loader.batches_left() < accumulate ? 1 : 0);

  if (!preempted) {
    if (val_ds && last_val_step != step) {
      // A run stopped inside an epoch (train.max_steps) is validated there: its line gives the
      // share of that epoch's batches done (2.5), not the epoch of the validation before it.
      nlohmann::json at = completed;
      const int64_t done = batches - loader.batches_left();
      if (epoch < recipe.train.epochs && loader.batches_left() >= accumulate && done > 0) {
        const double share = std::max(0.01, std::floor(100.0 * done / batches) / 100.0);
        at = static_cast<double>(completed) + share;
      }
      result.last_val = validate(at);
      last_val_step = step;
    }
    std::optional<double> score;
    if (!result.last_val.empty()) score = result.last_val[ctx.task->score_key()];
    manager.save(snapshot(score), /*wait=*/true);
  }
  manager.wait();
  // The most host memory (resident) a rank's process held, and the ranks' sum: what a node
  // needs for this recipe's model, loader threads and open decoders.
  double peak_rank = static_cast<double>(peak_resident_bytes()), peak_all = peak_rank;
  if (world.size > 1) {
    torch::Tensor largest = torch::tensor({peak_rank}, torch::kDouble).to(ctx.device);
    torch::Tensor sum = largest.clone();
    ctx.comm->all_reduce(largest, dist::ReduceOp::kMax);
    ctx.comm->all_reduce(sum, dist::ReduceOp::kSum);
    peak_rank = largest.cpu().item<double>();
    peak_all = sum.cpu().item<double>();
  }
  const double mib = 1024.0 * 1024.0;
  if (world.rank == 0)
    spdlog::info("peak host memory: {:.0f} MiB on the largest of {} rank{}, {:.0f} MiB in all",
                 peak_rank / mib, world.size, world.size == 1 ? "" : "s", peak_all / mib);
  result.step = step;
  result.epoch = completed;
  result.preempted = preempted;
  if (world.rank == 0 && !preempted) {
    nlohmann::json summary = {{"step", step},
                              {"epoch", result.epoch},
                              {"run_id", start.run_id},
                              {"resumed_from", result.resumed_from},
                              {"seconds", seconds_since(run_start)},
                              {"peak_host_memory_mib",
                               {{"largest_rank", std::round(peak_rank / mib)},
                                {"all_ranks", std::round(peak_all / mib)}}}};
    for (const auto& [k, v] : result.last_val) summary["val"][k] = v;
    write_file_atomic((fs::path(result.run_dir) / "summary.json").string(), summary.dump(2));
    TextTable table({"run", "steps", "epochs", "validation"});
    std::string val;
    for (const auto& [k, v] : result.last_val) {
      if (k != "videos") val += (val.empty() ? "" : ", ") + k + " " + TextTable::number(v, 4);
    }
    table.add_row({result.run_dir, std::to_string(step), std::to_string(result.epoch), val.empty() ? "-" : val});
    spdlog::info("training finished\n{}", table.str());
  }
  return result;
}

namespace {

/// The model of `checkpoint` run over every video of `split` with the test views.
struct ScoredSplit {
  Context ctx;
  std::string path;  ///< the checkpoint directory used
  int64_t step = 0;
  VideoScores videos;
};

ScoredSplit score_checkpoint(const Recipe& recipe, const std::string& checkpoint,
                             const std::string& split, const std::string& label) {
  ScoredSplit out{make_context(recipe, split), {}, 0, {}};
  Context& ctx = out.ctx;
  const auto loaded = ckpt::Manager::load_newest_valid(checkpoint, ctx.world->rank, ctx.world->size);
  out.path = loaded.path;
  load_model_state(*ctx.net, loaded.replicated, out.path);
  out.step = loaded.step;
  pipeline::ClipLoader loader(ctx.dataset, recipe, pipeline::LoaderMode::kTest, ctx.world->rank, ctx.world->size);
  if (ctx.world->size > 1) loader.defer_bad_fraction_check(true);  // as for validation
  loader.set_epoch(0);
  out.videos = score_videos(ctx, loader, recipe.train.precision, label + " " + split);
  return out;
}

}  // namespace

/// An .npy file (format 1.0) of a float32 matrix, as numpy.load reads it.
static std::string npy_float32(const torch::Tensor& m) {
  const torch::Tensor t = m.to(torch::kCPU, torch::kFloat32).contiguous();
  std::string shape = "(" + std::to_string(t.size(0)) + ", " + std::to_string(t.size(1)) + ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * sizeof(float));
  return out;
}

static std::string csv_cell(const std::string& cell) {
  if (cell.find_first_of(",\"\n") == std::string::npos) return cell;
  std::string q = "\"";
  for (char c : cell) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

EvalResult evaluate(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                    bool save_predictions) {
  const std::string split = recipe.eval.split;
  ScoredSplit scored = score_checkpoint(recipe, checkpoint, split, "eval");
  Context& ctx = scored.ctx;
  const VideoScores& vs = scored.videos;
  const std::string& path = scored.path;
  const bool multilabel = recipe.task.kind == "multilabel";
  EvalResult result;
  // A split whose videos carry no label at all (a test list): predictions, no metrics.
  result.labeled = false;
  for (int64_t r : vs.records) {
    const auto& rec = ctx.dataset->records()[r];
    if (multilabel ? !rec.tags.empty() : rec.label >= 0) result.labeled = true;
  }
  if (!result.labeled && !save_predictions) {
    throw UsageError("split " + split + " has no labels (" + std::to_string(vs.records.size()) +
                     " videos): nothing to score; add --save-predictions to write the predictions");
  }
  const torch::Tensor targets = record_targets(*ctx.dataset, vs.records, multilabel, vs.scores.size(1));
  if (result.labeled) result.metrics = ctx.task->evaluate(vs.scores, targets);
  if (save_predictions && ctx.world->rank == 0) {
    fs::create_directories(out_dir);
    const auto& names = ctx.dataset->class_names();
    const int64_t k = std::min<int64_t>(5, vs.scores.size(1));
    const auto top = vs.scores.to(torch::kFloat32).topk(k, 1);
    const torch::Tensor values = std::get<0>(top), indices = std::get<1>(top);
    const auto value = values.accessor<float, 2>();
    const auto index = indices.accessor<int64_t, 2>();
    std::string csv = "video,label";
    for (int64_t j = 1; j <= k; ++j) csv += ",pred_" + std::to_string(j) + ",score_" + std::to_string(j);
    csv += "\n";
    auto class_name = [&](int64_t c) {
      return c >= 0 && c < static_cast<int64_t>(names.size()) ? names[c] : std::to_string(c);
    };
    for (size_t i = 0; i < vs.records.size(); ++i) {
      const auto& rec = ctx.dataset->records()[vs.records[i]];
      std::string label;
      if (multilabel) {
        for (int64_t t : rec.tags) label += (label.empty() ? "" : "|") + class_name(t);
      } else if (rec.label >= 0) {
        label = class_name(rec.label);
      }
      csv += csv_cell(rec.id) + "," + csv_cell(label);
      for (int64_t j = 0; j < k; ++j) {
        csv += "," + csv_cell(class_name(index[static_cast<int64_t>(i)][j])) + "," +
               fmt::format("{:.6f}", value[static_cast<int64_t>(i)][j]);
      }
      csv += "\n";
    }
    result.predictions_csv = (fs::path(out_dir) / ("predictions-" + split + ".csv")).string();
    result.predictions_npy = (fs::path(out_dir) / ("predictions-" + split + ".npy")).string();
    write_file_atomic(result.predictions_csv, csv);
    write_file_atomic(result.predictions_npy, npy_float32(vs.scores));
  }
  if (!result.labeled) {
    result.table = "checkpoint " + path + " (step " + std::to_string(scored.step) + "), split " + split +
                   ": no labels, " + std::to_string(vs.records.size()) + " videos predicted\n";
    return result;
  }
  TextTable table({"metric", "value"});
  for (const auto& [k, v] : result.metrics) {
    table.add_row({k, k == "videos" ? std::to_string(static_cast<int64_t>(v))
                                    : k == "loss" ? TextTable::number(v, 4) : TextTable::percent(v, 2)});
  }
  if (!vs.costs.empty()) {
    const nlohmann::json costs = vs.costs.to_json();
    for (const auto& [name, c] : costs.items()) {
      table.add_row({name + " per view (mean, min, max)",
                     TextTable::number(c["mean"].get<double>(), 3) + ", " + TextTable::number(c["min"].get<double>(), 3) +
                         ", " + TextTable::number(c["max"].get<double>(), 3)});
    }
  }
  result.table = "checkpoint " + path + " (step " + std::to_string(scored.step) + "), split " + split + ", " +
                 std::to_string(recipe.sampling.test_clips) + " clips x " +
                 std::to_string(recipe.sampling.test_crops) + " crops\n" + table.str();
  if (ctx.world->rank == 0) {
    fs::create_directories(out_dir);
    nlohmann::json j = {{"checkpoint", path}, {"step", scored.step}, {"split", split},
                        {"clips", recipe.sampling.test_clips}, {"crops", recipe.sampling.test_crops}};
    for (const auto& [k, v] : result.metrics) j["metrics"][k] = v;
    // Networks whose cost varies per clip (SGS): GFLOPs and active bins over every view.
    if (!vs.costs.empty()) j["cost"] = vs.costs.to_json();
    write_file_atomic((fs::path(out_dir) / ("eval-" + split + ".json")).string(), j.dump(2));
    if (recipe.eval.per_class) {
      std::string csv;
      for (const auto& row : ctx.task->per_class(vs.scores, targets)) {
        for (size_t i = 0; i < row.size(); ++i) csv += (i ? "," : "") + csv_cell(row[i]);
        csv += "\n";
      }
      result.csv_path = (fs::path(out_dir) / ("eval-" + split + "-per-class.csv")).string();
      write_file_atomic(result.csv_path, csv);
    }
  }
  return result;
}

int64_t extract(const Recipe& recipe, const std::string& checkpoint, const std::string& split,
                const std::string& out) {
  ScoredSplit scored = score_checkpoint(recipe, checkpoint, split, "extract");
  Context& ctx = scored.ctx;
  const VideoScores& vs = scored.videos;
  // Every rank holds every video's features after the gather; each writes its share.
  if (ctx.world->rank == 0 && fs::exists(out)) fs::remove_all(out);
  ctx.comm->barrier();
  {
    pipeline::FeatureWriter writer(out, ctx.world->rank);
    for (size_t i = ctx.world->rank; i < vs.records.size(); i += ctx.world->size) {
      writer.write(ctx.dataset->records()[vs.records[i]].id, vs.features[static_cast<int64_t>(i)]);
    }
    writer.close();
  }
  ctx.comm->barrier();
  if (ctx.world->rank == 0) {
    pipeline::write_feature_index(out);
    std::string labels;
    for (int64_t r : vs.records) {
      const auto& rec = ctx.dataset->records()[r];
      labels += pipeline::feature_key(rec.id) + "," + std::to_string(rec.label) + "\n";
    }
    write_file_atomic((fs::path(out) / "labels.csv").string(), labels);
  }
  return static_cast<int64_t>(vs.records.size());
}

}  // namespace holo::train
