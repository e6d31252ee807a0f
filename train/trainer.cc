// The trainer as stages (train/trainer.h): setup, resume, step, validate, checkpoint, finish.
// What differs between tasks (model, loader, forward pass and loss, evaluation) comes from the
// Task (train/task.h); mixed precision is train/precision.h, what the ranks sum or gather is
// train/gather.h.
#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "checkpoints/checkpoint.h"
#include "core/allocator.h"
#include "core/env.h"
#include "core/error.h"
#include "core/json_numbers.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/run_dir.h"
#include "core/time.h"
#include "dist/communicator.h"
#include "dist/reducer.h"
#include "dist/sync_batch_norm.h"
#include "dist/world.h"
#include "models/batch_norm.h"
#include "train/optim.h"
#include "train/precision.h"
#include "train/schedule.h"
#include "train/signals.h"
#include "train/table.h"
#include "train/task.h"
#include "train/tensorboard.h"

namespace holo::train {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

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
      const int64_t s = json_number_at<int64_t>(j, "step");
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

/// The tensors of `module` under `prefix` ("model.", "task."), as a checkpoint keeps them.
void append_state(const std::string& prefix, torch::nn::Module& module, ckpt::NamedTensors& out) {
  for (const auto& p : module.named_parameters()) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : module.named_buffers()) out.emplace_back(prefix + b.key(), b.value());
}

/// One rank's training run. run() calls the stages in order; the step loop repeats step()
/// and the checks after it until the run ends or is stopped.
class Trainer {
 public:
  Trainer(const Recipe& recipe, Runtime rt, std::unique_ptr<Task> task)
      : recipe_(recipe), rt_(std::move(rt)), task_(std::move(task)), scaler_(recipe.train.precision == "fp16") {}

  TrainResult run() {
    setup();
    resume();
    train_steps();
    finish();
    return result_;
  }

 private:
  /// The run directory and logs, the model (built, initialised, broadcast, prepared), sync-BN,
  /// the optimiser, the gradient reducer, the loader and the number of steps.
  void setup();
  /// Where the run starts: a checkpoint to resume (model, optimiser, loader, RNG, loss scale) or
  /// a fresh start; other runs' checkpoints and leftovers of interrupted saves handled.
  void resume();
  /// The step loop: steps, epoch ends with their validations, logging, stopping and saving.
  void train_steps();
  /// One optimiser step over train.accumulate batches. Returns false when the loader's share
  /// of the epoch ended instead (nothing stepped); `diverged` is set when a loss was not finite.
  bool step(bool& diverged);
  /// After an epoch: the next epoch's order, and a validation when one is due.
  void end_epoch();
  /// Writes the training line of the steps since the last one (every rank reduces).
  void log_window(double lr);
  /// Every rank agrees on stopping (a signal), on divergence and on the bad samples met; a
  /// stop saves a checkpoint and returns true.
  bool agree_to_stop(bool diverged);
  /// Validates and writes the validation line; `completed` is the epochs completed as the line
  /// gives them (a whole number, or a fraction for a run that stops inside an epoch).
  void validate(const nlohmann::json& completed);
  /// A checkpoint of this step. Weights that are no longer finite are never saved.
  ckpt::Snapshot snapshot(std::optional<double> score);
  /// The final validation and checkpoint (unless preempted), peak memory, the summary.
  void finish();

  Recipe recipe_;
  Runtime rt_;
  std::unique_ptr<Task> task_;
  TrainResult result_;
  std::string ckpt_root_;
  std::string run_id_;

  std::shared_ptr<torch::nn::Module> task_module_;
  std::shared_ptr<dist::Communicator> bn_comm_;
  std::unique_ptr<Optimizer> optim_;
  NamedTensors trainable_;
  std::unique_ptr<dist::GradientReducer> reducer_;
  LossScaler scaler_;
  std::unique_ptr<StepLoader> loader_;
  std::unique_ptr<ckpt::Manager> manager_;

  int64_t batches_ = 0;  ///< per epoch on this rank
  int64_t steps_per_epoch_ = 0;
  int64_t total_steps_ = 0;
  ScheduleClock clock_;
  int64_t step_ = 0;
  int64_t epoch_ = 0;
  int64_t last_val_step_ = -1;  ///< the step of the newest validation in the run's records
  bool preempted_ = false;

  std::unique_ptr<std::ofstream> sample_log_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<holo::Progress> progress_;
  Stats window_;
  CostStats window_costs_;
  Clock::time_point window_start_, run_start_;
};

void Trainer::setup() {
  const dist::World& world = *rt_.world;
  // The model first: a recipe whose data cannot be read stops before the run directory exists.
  task_->setup(rt_);
  result_.run_dir = run_dir_path(recipe_);
  if (rt_.rank == 0) prepare_run_dir(recipe_);
  rt_.comm->barrier();
  // Rank 0's log is train.log; every other rank's whole log is logs/rank-<N>.log (core/log.h).
  if (rt_.rank == 0) log::add_file((fs::path(result_.run_dir) / "train.log").string());
  log::set_rank_log_dir((fs::path(result_.run_dir) / "logs").string());
  spdlog::info("training {} ({} rank{}), device {}, collectives {}, run dir {}", task_->describe(), world.size,
               world.size == 1 ? "" : "s", rt_.device.str(), rt_.comm->backend(), result_.run_dir);

  torch::nn::Module& model = task_->model();
  task_->initialise(rt_);
  dist::broadcast_module(model, *rt_.comm, 0);
  task_->prepare(rt_);
  task_module_ = task_->module();
  if (task_module_) {
    task_module_->to(rt_.device);
    dist::broadcast_module(*task_module_, *rt_.comm, 0);
  }
  // train.sync_bn: every BatchNorm layer normalises in training with the statistics of the whole
  // global batch, over a communicator of its own (its backward collectives run beside the
  // reducer's communication thread). Eval mode keeps plain BatchNorm with running statistics.
  if (recipe_.train.sync_bn && world.size > 1) {
    bn_comm_ = dist::make_communicator(recipe_.dist, rt_.device);
    const models::BatchNormTraining sync = [comm = bn_comm_](const torch::Tensor& x, const torch::Tensor& w,
                                                             const torch::Tensor& b, const torch::Tensor& rm,
                                                             const torch::Tensor& rv, double factor, double eps) {
      return dist::sync_batch_norm(x, w, b, rm, rv, factor, eps, comm);
    };
    int64_t layers = models::set_batch_norm_training(model, sync);
    if (task_module_) layers += models::set_batch_norm_training(*task_module_, sync);
    spdlog::info("sync_bn: {} BatchNorm layer{} normalise with the statistics of all {} ranks", layers,
                 layers == 1 ? "" : "s", world.size);
  }
  NamedTensors params;
  for (const auto& p : model.named_parameters()) params.emplace_back(p.key(), p.value());
  if (task_module_) {
    for (const auto& p : task_module_->named_parameters()) params.emplace_back("task." + p.key(), p.value());
  }
  optim_ = std::make_unique<Optimizer>(recipe_.optim, params);
  std::vector<torch::Tensor> trainable_list;
  for (const auto& [n, p] : params) {
    if (p.requires_grad()) {
      trainable_.emplace_back(n, p);
      trainable_list.push_back(p);
    }
  }
  reducer_ = std::make_unique<dist::GradientReducer>(trainable_list, rt_.comm,
                                                     dist::ReducerOptions().bucket_mb(recipe_.dist.bucket_mb));

  loader_ = task_->train_loader(rt_);
  // Each rank meets only its shard's bad samples: data.max_bad_fraction is checked against
  // their sum, taken at every step (agree_to_stop), so that all ranks stop at the same step.
  if (world.size > 1) loader_->defer_bad_fraction_check(true);
  batches_ = loader_->batches_per_epoch();
  const int64_t accumulate = recipe_.train.accumulate;
  steps_per_epoch_ = batches_ / accumulate;
  if (steps_per_epoch_ <= 0) {
    throw Error("the training set gives " + std::to_string(batches_) + " batches per epoch on " +
                std::to_string(world.size) + " rank(s) with loader.batch_size = " +
                std::to_string(recipe_.loader.batch_size) + " and train.accumulate = " +
                std::to_string(accumulate) + ": nothing to train on");
  }
  total_steps_ = recipe_.train.epochs * steps_per_epoch_;
  if (recipe_.train.max_steps > 0) total_steps_ = std::min(total_steps_, recipe_.train.max_steps);
  clock_ = ScheduleClock{steps_per_epoch_, total_steps_};
  check_schedule(recipe_.schedule, clock_);
}

void Trainer::resume() {
  const dist::World& world = *rt_.world;
  // Which checkpoint, which run; other runs' checkpoints refused or removed, leftovers of
  // interrupted saves and cleanups removed (rank 0, while the others wait).
  ckpt_root_ = (fs::path(result_.run_dir) / "checkpoints").string();
  ckpt::ManagerOptions mopts;
  mopts.rank = world.rank;
  mopts.world_size = world.size;
  mopts.keep = recipe_.checkpoint.keep;
  mopts.background = recipe_.checkpoint.background;
  mopts.attempt_id = attempt_id(*rt_.comm, rt_.device);
  Start start = choose_start(recipe_, ckpt_root_, world, mopts.attempt_id);
  mopts.run_id = run_id_ = start.run_id;
  std::optional<ckpt::Loaded>& resume = start.resume;
  if (resume) last_val_step_ = resume->meta.value("last_val_step", resume->step - 1);
  rt_.comm->barrier();
  if (world.rank == 0) {
    for (const auto& dir : start.to_remove) {
      std::error_code ec;
      fs::remove_all(dir, ec);
      spdlog::warn("checkpoint: removed {} of another run (checkpoint.existing = overwrite)", dir);
    }
    ckpt::Manager::remove_leftovers(ckpt::Manager::survey(ckpt_root_, start.run_id));
    trim_metrics((fs::path(result_.run_dir) / "metrics.jsonl").string(), resume ? resume->step : -1,
                 last_val_step_);
    // A resumed run adds a new event file whose points replace, in TensorBoard, those of the
    // steps it trains again; a fresh run drops the old files as it drops the old lines.
    if (!resume) remove_event_files(tensorboard_dir(result_.run_dir));
  }
  rt_.comm->barrier();
  manager_ = std::make_unique<ckpt::Manager>(ckpt_root_, mopts);
  loader_->set_epoch(0);
  task_->set_epoch(0);
  if (!resume) {
    torch::manual_seed(static_cast<uint64_t>(recipe_.run.seed) * 1000003u + world.rank * 7919u);
    return;
  }
  if (!resume->dataset_hash.empty() && !task_->same_data(resume->dataset_hash)) {
    throw Error("cannot resume from " + resume->path + ": the training set changed since it was saved (dataset hash " +
                resume->dataset_hash + ", now " + task_->data_hash() + ")");
  }
  load_module_state("model.", task_->model(), resume->replicated, resume->path);
  if (task_module_) load_module_state("task.", *task_module_, resume->replicated, resume->path);
  optim_->load_state(resume->replicated);
  step_ = resume->step;
  const nlohmann::json& loader_state = resume->meta.at("loader");
  epoch_ = json_number_at<int64_t>(loader_state, "epoch");
  loader_->set_epoch(epoch_);
  task_->set_epoch(epoch_);
  loader_->load_state(loader_state);
  // On another number of ranks the rest of this epoch is split anew: its last step takes
  // every sample left, so no sample of the epoch is skipped or trained twice.
  if (resume->world_size != world.size) loader_->complete_epoch();
  if (resume->meta.contains("loss_scale")) scaler_.set(resume->meta["loss_scale"]);
  if (resume->meta.contains("last_val")) {
    for (const auto& [k, v] : resume->meta["last_val"].items()) result_.last_val[k] = v.get<double>();
  }
  if (resume->per_rank.count("rng.cpu")) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(resume->per_rank.at("rng.cpu"));
    if (rt_.device.is_cuda() && resume->per_rank.count("rng.cuda")) {
      at::Generator cuda_gen = at::globalContext().defaultGenerator(rt_.device);
      cuda_gen.set_state(resume->per_rank.at("rng.cuda"));
    }
  } else {
    torch::manual_seed(static_cast<uint64_t>(recipe_.run.seed) * 1000003u + world.rank * 7919u + step_);
  }
  result_.resumed_from = step_;
  if (resume->world_size != world.size && recipe_.train.max_steps == 0) {
    // Steps per epoch changed with the number of ranks: the run still ends after train.epochs
    // epochs, so the remaining steps are counted anew (the schedule's horizon with them).
    total_steps_ = step_ + loader_->batches_left() / recipe_.train.accumulate +
                   std::max<int64_t>(0, recipe_.train.epochs - epoch_ - 1) * steps_per_epoch_;
    clock_.total_steps = total_steps_;
  }
  spdlog::info("resumed from {} at step {} (epoch {}, loader {}), saved by {} rank(s), run {}", resume->path, step_,
               epoch_, loader_state.dump(), resume->world_size, start.run_id);
}

bool Trainer::step(bool& diverged) {
  const int64_t accumulate = recipe_.train.accumulate;
  optim_->zero_grad();
  // Batches left in this epoch on every rank; fewer than `accumulate` end the epoch early.
  if (loader_->batches_left() < accumulate) return false;
  for (int64_t micro = 0; micro < accumulate; ++micro) {
    std::unique_ptr<StepBatch> batch = loader_->next();
    if (!batch) return false;
    // A batch of weight 0 only keeps this rank in the step's collectives (an uneven last step
    // of a resumed epoch): not trained on, not counted.
    const bool trained = batch->weight > 0;
    if (sample_log_ && trained) {
      for (int64_t r : batch->samples) *sample_log_ << epoch_ << " " << step_ << " " << r << "\n";
      sample_log_->flush();
    }
    reducer_->prepare_for_backward(micro == accumulate - 1);
    Stats filler;
    torch::Tensor loss =
        task_->train_loss(*batch, rt_, trained ? window_ : filler) * (batch->weight / static_cast<double>(accumulate));
    if (trained && !scaler_.enabled() && !std::isfinite(loss.item<double>())) diverged = true;
    scaler_.scale(loss).backward();
    if (micro == accumulate - 1) reducer_->finish();
    if (trained) task_->add_costs(*batch, window_costs_);
  }
  const bool ok = scaler_.unscale(trainable_, *rt_.comm, rt_.device);
  if (recipe_.optim.clip_grad_norm > 0) clip_grad_norm(trainable_, recipe_.optim.clip_grad_norm);
  const double lr = learning_rate_at(recipe_.schedule, recipe_.optim.lr, step_, clock_);
  optim_->set_lr(lr);
  if (ok) optim_->step();
  ++step_;
  if (progress_) {
    const double count = window_.count("count") ? window_["count"] : 0.0;
    if (count > 0) progress_->set_postfix(fmt::format("loss {:.4f}", window_["loss"] / count));
    progress_->advance();
  }
  if (step_ % recipe_.train.log_every == 0 || step_ == total_steps_) log_window(lr);
  return true;
}

void Trainer::end_epoch() {
  // The loader's share of this epoch ended (drop_last keeps ranks in step).
  optim_->zero_grad();
  ++epoch_;
  loader_->set_epoch(epoch_);
  task_->set_epoch(epoch_);
  // A validation the resumed records already hold (killed after it, before the next
  // checkpoint) is not run twice.
  if (task_->validates() && epoch_ % recipe_.train.val_every == 0 && last_val_step_ != step_) validate(epoch_);
}

void Trainer::log_window(double lr) {
  Stats s = all_reduce_stats(window_, *rt_.comm, rt_.device);
  window_costs_.reduce(*rt_.comm, rt_.device);
  const double secs = seconds_since(window_start_);
  if (metrics_) {
    nlohmann::json line = {{"step", step_}, {"epoch", epoch_}, {"split", "train"}, {"lr", lr}};
    const double count = s["count"] > 0 ? s["count"] : 1;
    for (const auto& k : task_->mean_keys()) {
      if (s.count(k)) line[k] = s[k] / count;
    }
    line[task_->rate_key()] = s["count"] / std::max(secs, 1e-9);
    line["time"] = seconds_since(run_start_);
    window_costs_.write(line);
    metrics_->write(line);
  }
  window_.clear();
  window_costs_ = CostStats(task_->cost_names());
  window_start_ = Clock::now();
}

bool Trainer::agree_to_stop(bool diverged) {
  // Every rank agrees on stopping, so they all save the same step; the same reduction sums the
  // bad samples the ranks met in this epoch. A loss that is no longer finite (fp32: the fp16
  // scaler skips such steps itself) means the weights are lost: stop on every rank, keep the
  // last checkpoint, save nothing.
  torch::Tensor stop =
      torch::tensor({stop_requested() ? 1.0f : 0.0f, 0.0f, diverged ? 1.0f : 0.0f}).to(rt_.device);
  if (rt_.world_size > 1) {
    stop[1].fill_(static_cast<double>(loader_->epoch_quarantined()));
    rt_.comm->all_reduce(stop, dist::ReduceOp::kSum);
    const torch::Tensor sums = stop.cpu();
    loader_->set_world_quarantined(std::llround(sums[1].item<double>()));
  }
  if (stop[2].item<float>() > 0) {
    log::flush();
    throw Error(fmt::format(
        "training diverged: the loss is not finite at step {} (optim.lr = {}); nothing is saved from this step, "
        "the last checkpoint in {} is kept. Lower optim.lr or set optim.clip_grad_norm, then resume",
        step_, recipe_.optim.lr, ckpt_root_));
  }
  if (stop[0].item<float>() > 0) {
    spdlog::warn("stop requested (signal {}): saving a checkpoint at step {}", stop_signal(), step_);
    manager_->save(snapshot(std::nullopt), /*wait=*/true);
    log::flush();
    return true;
  }
  return false;
}

void Trainer::train_steps() {
  if (!env::sample_log().empty()) {
    sample_log_ = std::make_unique<std::ofstream>(env::sample_log() + ".rank" + std::to_string(rt_.rank),
                                                  std::ios::app);
  }
  if (rt_.rank == 0) {
    metrics_ = std::make_unique<MetricsLog>((fs::path(result_.run_dir) / "metrics.jsonl").string(),
                                            tensorboard_dir(result_.run_dir));
    holo::ProgressOptions po{"train", total_steps_, "steps"};
    po.start = step_;  // a resumed run: its rate counts the steps this process runs
    progress_ = std::make_unique<holo::Progress>(po);
  }
  window_costs_ = CostStats(task_->cost_names());
  window_start_ = run_start_ = Clock::now();
  task_->model().train();
  // Steps per epoch depend on the number of ranks, so a run resumed on another number stops at
  // the end of train.epochs as well.
  while (step_ < total_steps_ && epoch_ < recipe_.train.epochs) {
    bool diverged = false;
    if (!step(diverged)) {
      end_epoch();
      continue;
    }
    if (agree_to_stop(diverged)) {
      preempted_ = true;
      break;
    }
    if (recipe_.checkpoint.every_steps > 0 && step_ % recipe_.checkpoint.every_steps == 0 && step_ < total_steps_) {
      manager_->save(snapshot(std::nullopt), /*wait=*/false);
      log::flush();
    }
  }
  if (progress_) progress_->finish();
}

void Trainer::validate(const nlohmann::json& completed) {
  Validation v = task_->validate(rt_);
  Stats& m = v.metrics;
  if (metrics_) {
    nlohmann::json line = {{"step", step_}, {"epoch", completed}, {"split", "val"}};
    for (const auto& [k, value] : m) line[k] = value;
    v.costs.write(line);
    metrics_->write(line);
  }
  const std::string key = task_->score_key();
  spdlog::info("validation at step {}: {} = {:.4f} over {} {}", step_, key, m[key],
               static_cast<int64_t>(m[task_->count_key()]), task_->count_key());
  result_.last_val = m;
  last_val_step_ = step_;
}

ckpt::Snapshot Trainer::snapshot(std::optional<double> score) {
  ckpt::Snapshot s;
  s.step = step_;
  s.epoch = epoch_;
  append_state("model.", task_->model(), s.replicated);
  if (task_module_) append_state("task.", *task_module_, s.replicated);
  for (auto& t : optim_->state()) s.replicated.push_back(t);
  // Weights, statistics or optimiser state that are no longer finite (batch-norm variances can
  // overflow before the loss does) must not replace a good checkpoint: every rank checks, all
  // agree, none saves.
  {
    torch::NoGradGuard no_grad;
    // One flag per tensor, read back once (not one device sync per tensor).
    std::vector<torch::Tensor> flags;
    std::vector<const std::string*> names;
    for (const auto& [name, t] : s.replicated) {
      if (!t.is_floating_point()) continue;
      flags.push_back(torch::isfinite(t).all().to(rt_.device));
      names.push_back(&name);
    }
    std::string first_bad;
    if (!flags.empty()) {
      const torch::Tensor ok = torch::stack(flags).to(torch::kCPU);
      for (size_t i = 0; i < names.size() && first_bad.empty(); ++i) {
        if (!ok[static_cast<int64_t>(i)].item<bool>()) first_bad = *names[i];
      }
    }
    torch::Tensor bad = torch::tensor({first_bad.empty() ? 0.0f : 1.0f}).to(rt_.device);
    if (rt_.world_size > 1) rt_.comm->all_reduce(bad, dist::ReduceOp::kMax);
    if (bad.item<float>() > 0) {
      log::flush();
      throw Error(fmt::format(
          "training diverged: {} is not finite at step {} (optim.lr = {}); it is not saved, the last "
          "checkpoint in {} is kept. Lower optim.lr or set optim.clip_grad_norm, then resume",
          first_bad.empty() ? std::string("a tensor of another rank") : first_bad, step_, recipe_.optim.lr,
          ckpt_root_));
    }
  }
  s.per_rank = {{"rng.cpu", at::detail::getDefaultCPUGenerator().get_state()}};
  // On a GPU, the device's generator too (dropout masks drawn there), for an exact resume.
  if (rt_.device.is_cuda()) {
    s.per_rank.emplace_back("rng.cuda", at::globalContext().defaultGenerator(rt_.device).get_state());
  }
  s.meta = {{"loader", loader_->state()},
            {"loss_scale", scaler_.value()},
            {"last_val_step", last_val_step_},
            {"last_val", nlohmann::json(result_.last_val)}};
  s.recipe_toml = to_toml(recipe_);
  s.dataset_hash = task_->data_hash();
  s.score = score;
  return s;
}

void Trainer::finish() {
  const dist::World& world = *rt_.world;
  const int64_t accumulate = recipe_.train.accumulate;
  // Epochs completed: the last one ends with the run's last step, before the loop can see it.
  const int64_t completed =
      epoch_ + (epoch_ < recipe_.train.epochs && loader_->batches_left() < accumulate ? 1 : 0);
  if (!preempted_) {
    if (task_->validates() && last_val_step_ != step_) {
      // A run stopped inside an epoch (train.max_steps) is validated there: its line gives the
      // share of that epoch's batches done (2.5), not the epoch of the validation before it.
      nlohmann::json at = completed;
      const int64_t done = batches_ - loader_->batches_left();
      if (epoch_ < recipe_.train.epochs && loader_->batches_left() >= accumulate && done > 0) {
        const double share = std::max(0.01, std::floor(100.0 * done / batches_) / 100.0);
        at = static_cast<double>(completed) + share;
      }
      validate(at);
    }
    std::optional<double> score;
    if (!result_.last_val.empty()) score = result_.last_val[task_->score_key()];
    manager_->save(snapshot(score), /*wait=*/true);
  }
  manager_->wait();
  // The most host memory (resident) a rank's process held, and the ranks' sum: what a node
  // needs for this recipe's model, loader threads and open decoders.
  double peak_rank = static_cast<double>(peak_resident_bytes()), peak_all = peak_rank;
  if (world.size > 1) {
    torch::Tensor largest = torch::tensor({peak_rank}, torch::kDouble).to(rt_.device);
    torch::Tensor sum = largest.clone();
    rt_.comm->all_reduce(largest, dist::ReduceOp::kMax);
    rt_.comm->all_reduce(sum, dist::ReduceOp::kSum);
    peak_rank = largest.cpu().item<double>();
    peak_all = sum.cpu().item<double>();
  }
  const double mib = 1024.0 * 1024.0;
  if (world.rank == 0) {
    spdlog::info("peak host memory: {:.0f} MiB on the largest of {} rank{}, {:.0f} MiB in all", peak_rank / mib,
                 world.size, world.size == 1 ? "" : "s", peak_all / mib);
  }
  result_.step = step_;
  result_.epoch = completed;
  result_.preempted = preempted_;
  if (world.rank != 0 || preempted_) return;
  nlohmann::json summary = {{"step", step_},
                            {"epoch", result_.epoch},
                            {"run_id", run_id_},
                            {"resumed_from", result_.resumed_from},
                            {"seconds", seconds_since(run_start_)},
                            {"peak_host_memory_mib",
                             {{"largest_rank", std::round(peak_rank / mib)}, {"all_ranks", std::round(peak_all / mib)}}}};
  for (const auto& [k, v] : result_.last_val) summary["val"][k] = v;
  write_file_atomic((fs::path(result_.run_dir) / "summary.json").string(), summary.dump(2));
  TextTable table({"run", "steps", "epochs", "validation"});
  std::string val;
  for (const auto& [k, v] : result_.last_val) {
    if (k != task_->count_key()) val += (val.empty() ? "" : ", ") + k + " " + TextTable::number(v, 4);
  }
  table.add_row({result_.run_dir, std::to_string(step_), std::to_string(result_.epoch), val.empty() ? "-" : val});
  spdlog::info("training finished\n{}", table.str());
}

}  // namespace

void load_module_state(const std::string& prefix, torch::nn::Module& module,
                       const std::map<std::string, torch::Tensor>& state, const std::string& from) {
  torch::NoGradGuard no_grad;
  auto load_one = [&](const std::string& name, torch::Tensor& dst) {
    auto it = state.find(prefix + name);
    if (it == state.end() || it->second.sizes() != dst.sizes()) {
      throw IoError("'" + from + "' does not fit this " + (prefix == "task." ? "task" : "model") + ": tensor '" +
                    prefix + name + "' " + (it == state.end() ? "is missing" : "has another shape"));
    }
    dst.copy_(it->second.to(dst.device(), dst.scalar_type()));
  };
  for (auto& p : module.named_parameters()) load_one(p.key(), p.value());
  for (auto& b : module.named_buffers()) load_one(b.key(), b.value());
}

TrainResult train(const Recipe& recipe, const TaskFactory& make_task) {
  install_stop_handlers();
  Runtime rt = start_runtime(recipe);
  // The same initial weights on every rank, whatever the task builds.
  torch::manual_seed(static_cast<uint64_t>(recipe.run.seed));
  return Trainer(recipe, std::move(rt), make_task(recipe)).run();
}

}  // namespace holo::train
