// holo bench checkpoint

#include <CLI/CLI.hpp>
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "checkpoints/bench.h"
#include "core/env.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "launcher/cli.h"
#include "models/network.h"
#include "train/optim.h"
#include "train/table.h"

namespace holo::cli {
namespace {

namespace fs = std::filesystem;

struct CkptBenchArgs {
  std::string model = "r3d18";
  double width = 1.0;
  int64_t classes = 400;
  int64_t mb = 0;
  std::string dir;
  int64_t repeat = 3;
  int64_t every = 100;
  int64_t saves = 2;
  int64_t batch = 2;
  int64_t frames = 4;
  int64_t crop = 32;
  int writer_nice = ckpt::ManagerOptions{}.writer_nice;
  std::string part = "both";
  std::string json;
};

/// The benchmark's training state: a network of holo::models with SGD (Nesterov momentum,
/// weight decay) on one fixed synthetic batch, stepped as the trainer steps it.
struct TrainState {
  std::shared_ptr<models::NetworkImpl> net;
  std::unique_ptr<train::Optimizer> optim;
  torch::Tensor clips, labels;

  explicit TrainState(const CkptBenchArgs& a) {
    ModelOptions mo;
    mo.name = a.model;
    mo.width = a.width;
    mo.frames = a.frames;
    torch::manual_seed(0);
    net = models::build_network(mo, {a.classes});
    train::NamedTensors params;
    for (const auto& p : net->named_parameters()) params.emplace_back(p.key(), p.value());
    optim = std::make_unique<train::Optimizer>(OptimOptions{}, params);
    optim->set_lr(0.01);
    clips = torch::randn({a.batch, 3, a.frames, a.crop, a.crop});
    labels = torch::randint(a.classes, {a.batch}, torch::kLong);
    net->train();
  }

  void step() {
    optim->zero_grad();
    torch::nn::functional::cross_entropy(net->forward(clips), labels).backward();
    optim->step();
  }

  /// What the trainer hands to Manager::save(): parameters, buffers, optimiser state, RNG.
  ckpt::Snapshot snapshot(int64_t step) const {
    ckpt::Snapshot s;
    s.step = step;
    for (const auto& p : net->named_parameters()) s.replicated.emplace_back("model." + p.key(), p.value());
    for (const auto& b : net->named_buffers()) s.replicated.emplace_back("model." + b.key(), b.value());
    for (auto& t : optim->state()) s.replicated.push_back(t);
    s.per_rank = {{"rng.cpu", at::detail::getDefaultCPUGenerator().get_state()}};
    s.meta = {{"loader", {{"epoch", 0}, {"cursor", step * clips.size(0)}}}};
    return s;
  }
};

/// `mb` megabytes (1e6 bytes) of float32 in 64 tensors, half "model.*", half "optim.*".
ckpt::NamedTensors synthetic_state(int64_t mb) {
  const int64_t n = 64;
  const int64_t per = std::max<int64_t>(1, mb * 1000000 / 4 / n);
  ckpt::NamedTensors out;
  torch::manual_seed(0);
  for (int64_t i = 0; i < n / 2; ++i) out.emplace_back("model.layer" + std::to_string(i) + ".weight", torch::randn({per}));
  for (int64_t i = 0; i < n / 2; ++i) {
    out.emplace_back("optim.layer" + std::to_string(i) + ".weight.momentum_buffer", torch::randn({per}));
  }
  return out;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

void bench_checkpoint(const CkptBenchArgs& a) {
  if (env::num_threads() > 0) torch::set_num_threads(env::num_threads());  // as holo train does
  const std::string dir = !a.dir.empty() ? a.dir
                                         : (fs::path(env::runs_dir()) / (".bench-checkpoint-" + std::to_string(::getpid())))
                                               .string();
  nlohmann::json report;
  std::unique_ptr<TrainState> ts;
  auto train_state = [&]() -> TrainState& {
    if (!ts) {
      ts = std::make_unique<TrainState>(a);
      ts->step();  // the optimiser's momentum buffers exist from the first step
    }
    return *ts;
  };

  if (a.part == "io" || a.part == "both") {
    const std::string what = a.mb > 0 ? std::to_string(a.mb) + " MB of float32 (64 tensors)"
                                      : a.model + " parameters, buffers and SGD momentum";
    const ckpt::NamedTensors state = a.mb > 0 ? synthetic_state(a.mb) : train_state().snapshot(1).replicated;
    const auto r = ckpt::bench_io(state, ckpt::IoBenchOptions((fs::path(dir) / "io").string()).repeat(a.repeat));
    std::cout << "checkpoint I/O: " << what << ", " << fixed(r.file_bytes / 1e6, 1) << " MB on disk, in "
              << dir << " (" << r.filesystem << "); median of " << r.rounds << " rounds, MB = 1e6 bytes\n";
    TextTable t({"operation", "Holo s", "Holo MB/s", "dd s", "dd MB/s", "Holo / dd"});
    t.add_row({"save (fsync) vs dd conv=fsync", fixed(r.save_s, 3), fixed(r.save_mb_s(), 0), fixed(r.dd_write_s, 3),
               fixed(r.dd_write_mb_s(), 0), fixed(r.save_mb_s() / r.dd_write_mb_s(), 2)});
    t.add_row({"load (cold cache) vs dd read", fixed(r.load_s, 3), fixed(r.load_mb_s(), 0), fixed(r.dd_read_s, 3),
               fixed(r.dd_read_mb_s(), 0), fixed(r.load_mb_s() / r.dd_read_mb_s(), 2)});
    std::cout << t.str();
    std::cout << "  save includes the snapshot copy (" << fixed(r.snapshot_s, 3)
              << " s), the shard's checksum, manifest and commit; load verifies the checksum\n"
              << "  a manager's first save, which allocates its staging buffers: " << fixed(r.first_save_s, 3)
              << " s, of which the snapshot " << fixed(r.first_snapshot_s, 3) << " s\n"
              << "  pages still cached before reading (after fadvise DONTNEED): Holo "
              << fixed(100 * r.cached_before_load, 1) << "%, dd " << fixed(100 * r.cached_before_dd_read, 1) << "%\n";
    report["io"] = {{"what", what},
                    {"dir", dir},
                    {"filesystem", r.filesystem},
                    {"rounds", r.rounds},
                    {"state_bytes", r.state_bytes},
                    {"file_bytes", r.file_bytes},
                    {"dd_bytes", r.dd_bytes},
                    {"save_s", r.save_s},
                    {"snapshot_s", r.snapshot_s},
                    {"first_save_s", r.first_save_s},
                    {"first_snapshot_s", r.first_snapshot_s},
                    {"load_s", r.load_s},
                    {"dd_write_s", r.dd_write_s},
                    {"dd_read_s", r.dd_read_s},
                    {"save_mb_s", r.save_mb_s()},
                    {"load_mb_s", r.load_mb_s()},
                    {"dd_write_mb_s", r.dd_write_mb_s()},
                    {"dd_read_mb_s", r.dd_read_mb_s()},
                    {"save_vs_dd", r.save_mb_s() / r.dd_write_mb_s()},
                    {"load_vs_dd", r.load_mb_s() / r.dd_read_mb_s()},
                    {"cached_before_load", r.cached_before_load},
                    {"cached_before_dd_read", r.cached_before_dd_read}};
  }

  if (a.part == "train" || a.part == "both") {
    TrainState& s = train_state();
    const auto r = ckpt::bench_stall([&] { s.step(); }, [&](int64_t step) { return s.snapshot(step); },
                                     ckpt::StallBenchOptions((fs::path(dir) / "train").string())
                                         .every(a.every)
                                         .saves(a.saves)
                                         .writer_nice(a.writer_nice));
    std::cout << "training stall: " << a.model << " (width " << a.width << "), " << torch::get_num_threads()
              << " intra-op thread(s), batch " << a.batch << " x 3 x "
              << a.frames << " x " << a.crop << " x " << a.crop << ", SGD momentum; "
              << fixed(r.state_bytes / 1e6, 1) << " MB per save, one background save per " << r.every
              << " steps; " << r.saves << " segments of " << r.every << " steps with a save, " << r.saves
              << " without, interleaved; writer thread at nice " << a.writer_nice << "\n";
    TextTable t({"figure", "value"});
    t.add_row({"mean step, no save", fixed(r.step_plain_s * 1e3, 1) + " ms"});
    t.add_row({"mean step, one save per " + std::to_string(r.every) + " steps", fixed(r.step_saving_s * 1e3, 1) + " ms"});
    t.add_row({"slowdown (target <= 5%)", fixed(100 * r.overhead(), 2) + "%"});
    t.add_row({"stall per save (step time lost)", fixed(r.stall_per_save_s() * 1e3, 1) + " ms = " +
                                                      fixed(r.stall_per_save_s() / r.step_plain_s, 2) + " steps"});
    t.add_row({"snapshot: training thread in save()", fixed(r.snapshot_s * 1e3, 1) + " ms (max " +
                                                          fixed(r.snapshot_max_s * 1e3, 1) + " ms) = " +
                                                          fixed(100 * r.snapshot_share(), 2) + "% of " +
                                                          std::to_string(r.every) + " steps"});
    t.add_row({"write still in flight after " + std::to_string(r.every) + " steps", fixed(r.drain_s * 1e3, 1) + " ms"});
    t.add_row({"first save's snapshot (allocates buffers; once)", fixed(r.first_snapshot_s * 1e3, 1) + " ms"});
    std::cout << t.str();
    report["train"] = {{"model", a.model},
                       {"width", a.width},
                       {"input", {a.batch, 3, a.frames, a.crop, a.crop}},
                       {"every", r.every},
                       {"saves", r.saves},
                       {"state_bytes", r.state_bytes},
                       {"step_plain_s", r.step_plain_s},
                       {"step_saving_s", r.step_saving_s},
                       {"overhead", r.overhead()},
                       {"stall_per_save_s", r.stall_per_save_s()},
                       {"snapshot_s", r.snapshot_s},
                       {"snapshot_max_s", r.snapshot_max_s},
                       {"snapshot_share", r.snapshot_share()},
                       {"drain_s", r.drain_s},
                       {"first_snapshot_s", r.first_snapshot_s},
                       {"writer_nice", a.writer_nice},
                       {"threads", torch::get_num_threads()}};
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!a.json.empty()) write_file_atomic(a.json, report.dump(2) + "\n");
}

}  // namespace

void add_checkpoint_commands(CLI::App& app) {
  auto a = std::make_shared<CkptBenchArgs>();
  auto* cmd = app.get_subcommand("bench")->add_subcommand(
      "checkpoint", "Checkpoint save/load throughput vs dd, and the training stall of background saves");
  cmd->add_option("--model", a->model, "Network (family or preset) trained in the stall part; its state is the "
                                       "I/O part's unless --mb is given")
      ->capture_default_str();
  cmd->add_option("--width", a->width, "Width multiplier of the network")->capture_default_str();
  cmd->add_option("--classes", a->classes, "Classes of its head")->capture_default_str();
  cmd->add_option("--mb", a->mb, "I/O part: this many MB (1e6 bytes) of float32 instead of the model's state")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--dir", a->dir, "Folder on the filesystem to measure (default: $HOLO_RUNS_DIR/.bench-checkpoint-PID; "
                                   "removed afterwards)");
  cmd->add_option("--repeat", a->repeat, "I/O rounds (median)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--every", a->every, "Stall part: steps per save")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--saves", a->saves, "Stall part: segments with a save (and as many without)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--batch", a->batch, "Stall part: clips per step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--frames", a->frames, "Stall part: frames per clip")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--crop", a->crop, "Stall part: clip height and width")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--writer-nice", a->writer_nice, "Stall part: nice value of the background writer thread (0: unchanged)")
      ->capture_default_str()
      ->check(CLI::Range(0, 19));
  cmd->add_option("--part", a->part, "io, train or both")->capture_default_str()->check(CLI::IsMember({"io", "train", "both"}));
  cmd->add_option("--json", a->json, "Also write the figures as JSON here");
  cmd->callback([a] { bench_checkpoint(*a); });
}

}  // namespace holo::cli
