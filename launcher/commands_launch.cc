// holo launch | bench allreduce | bench scaling
#include <CLI/CLI.hpp>
#include <mpi.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "core/check.h"
#include "core/env.h"
#include "core/error.h"
#include "core/recipe.h"
#include "dist/communicator.h"
#include "dist/mpi_communicator.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "launcher/cli.h"
#include "launcher/launch.h"

namespace holo::cli {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

/// The job ran and failed: `holo` exits with the job's own code.
class JobExit : public Error {
 public:
  JobExit(int code, const std::string& what) : Error(what), code_(code) {}
  int exit_code() const override { return code_; }

 private:
  int code_;
};

// ---- holo launch -------------------------------------------------------------------------

struct LaunchArgs {
  RecipeArgs recipe;
  int np = 1;
  std::vector<std::string> hosts;
  std::string hostfile;
  std::string via = "auto";
  std::string command = "train";
  std::vector<std::string> extra;
  bool dry_run = false;
};

int run_launch_command(const LaunchArgs& a) {
  // A bad recipe stops here, before any worker starts: exit 2 naming the file and key.
  load_recipe(a.recipe.file, a.recipe.overrides);
  launch::LaunchOptions o;
  o.np = a.np;
  o.hosts = a.hosts;
  o.hostfile = a.hostfile;
  o.via = a.via;
  o.command = split_words(a.command);
  if (o.command.empty()) throw UsageError("launch: --command is empty");
  o.args.push_back(a.recipe.file);
  for (const auto& s : a.recipe.overrides) o.args.insert(o.args.end(), {"--set", s});
  o.args.insert(o.args.end(), a.extra.begin(), a.extra.end());
  o.holo_binary = launch::self_executable();
  // The workers' output reaches the user through the launcher, line by line: a progress bar
  // redrawn with carriage returns (mpirun gives workers a pseudo-terminal) would garble it.
  setenv("HOLO_PROGRESS", "lines", /*overwrite=*/0);
  const launch::LaunchPlan plan = launch::plan_launch(o, launch::this_machine());
  if (a.dry_run) {
    std::cout << launch::to_command_line(plan) << "\n";
    return 0;
  }
  spdlog::info("launch: {} workers via {}: {}", a.np, plan.via, launch::to_command_line(plan));
  return launch::run_launch(plan);
}

// ---- shared by the benchmarks -----------------------------------------------------------

/// True when this process is a worker of a launched job (mpirun/srun), false when a user ran
/// the benchmark by hand and it must start its workers itself.
bool launched() {
  return dist::discover_world([](const char* n) { return std::getenv(n); }).mpi;
}

/// Starts `np` copies of `holo <command> <args>` under MPI and returns their exit code.
int self_launch(int np, std::vector<std::string> command, std::vector<std::string> args) {
  launch::LaunchOptions o;
  o.np = np;
  o.via = launch::this_machine().in_slurm ? "srun" : "mpirun";
  o.command = std::move(command);
  o.args = std::move(args);
  o.holo_binary = launch::self_executable();
  return launch::run_launch(launch::plan_launch(o, launch::this_machine()));
}

double max_over_ranks(double x) {
  double out = x;
  HOLO_MPI_CHECK(MPI_Allreduce(&x, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return out;
}

std::string human_bytes(int64_t b) {
  const char* units[] = {"B", "KB", "MB", "GB"};
  int u = 0;
  double v = static_cast<double>(b);
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  std::ostringstream s;
  s << v << " " << units[u];
  return s.str();
}

// ---- holo bench allreduce ------------------------------------------------------------------

struct AllreduceArgs {
  int np = 2;
  int64_t min_bytes = 1024;
  int64_t max_bytes = int64_t{256} << 20;
  int rounds = 3;
  std::string json;
};

/// Bus bandwidth (nccl-tests' convention): what each rank's link carries, 2 (n - 1) / n of the
/// buffer per all-reduce, per second.
double bus_bandwidth(int64_t bytes, double seconds, int n) {
  return static_cast<double>(bytes) * 2.0 * (n - 1) / n / seconds;
}

void allreduce_worker(const AllreduceArgs& a) {
  const auto& w = dist::init_world();
  HOLO_CHECK(w.size >= 2, "holo bench allreduce needs at least 2 ranks (--np)");
  DistOptions opts;
  opts.backend = "mpi";
  auto comm = dist::make_communicator(opts, torch::kCPU);
  MPI_Comm raw = MPI_COMM_NULL;
  HOLO_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &raw));
  nlohmann::json rows = nlohmann::json::array();
  if (w.rank == 0) {
    std::cout << "all-reduce (sum, float32) over " << w.size << " ranks; bus bandwidth = bytes x "
              << "2(n-1)/n / time; best of " << a.rounds << " rounds, raw and holo interleaved\n"
              << std::left << std::setw(10) << "size" << std::right << std::setw(8) << "iters"
              << std::setw(12) << "raw us" << std::setw(12) << "raw GB/s" << std::setw(12)
              << "holo us" << std::setw(12) << "holo GB/s" << std::setw(8) << "ratio" << "\n";
  }
  for (int64_t bytes = a.min_bytes; bytes <= a.max_bytes; bytes *= 4) {
    const int64_t n = std::max<int64_t>(1, bytes / 4);
    torch::Tensor t = torch::ones({n});
    const int iters = static_cast<int>(std::clamp<int64_t>((int64_t{512} << 20) / bytes, 5, 1000));
    double best_raw = 1e30, best_holo = 1e30;
    for (int round = 0; round < a.rounds; ++round) {
      HOLO_MPI_CHECK(MPI_Barrier(raw));
      auto t0 = Clock::now();
      for (int i = 0; i < iters; ++i) {
        HOLO_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr<float>(), static_cast<int>(n),
                                     MPI_FLOAT, MPI_SUM, raw));
      }
      best_raw = std::min(best_raw, max_over_ranks(since(t0)) / iters);
      HOLO_MPI_CHECK(MPI_Barrier(raw));
      t0 = Clock::now();
      for (int i = 0; i < iters; ++i) comm->all_reduce(t, dist::ReduceOp::kSum);
      best_holo = std::min(best_holo, max_over_ranks(since(t0)) / iters);
    }
    const double raw_bw = bus_bandwidth(n * 4, best_raw, w.size);
    const double holo_bw = bus_bandwidth(n * 4, best_holo, w.size);
    rows.push_back({{"bytes", n * 4}, {"iters", iters}, {"raw_s", best_raw}, {"holo_s", best_holo},
                    {"raw_busbw", raw_bw}, {"holo_busbw", holo_bw}, {"ratio", holo_bw / raw_bw}});
    if (w.rank == 0) {
      std::cout << std::left << std::setw(10) << human_bytes(n * 4) << std::right << std::setw(8)
                << iters << std::fixed << std::setprecision(1) << std::setw(12) << best_raw * 1e6
                << std::setprecision(3) << std::setw(12) << raw_bw / 1e9 << std::setprecision(1)
                << std::setw(12) << best_holo * 1e6 << std::setprecision(3) << std::setw(12)
                << holo_bw / 1e9 << std::setprecision(2) << std::setw(8) << holo_bw / raw_bw
                << std::defaultfloat << "\n";
      std::cout.flush();
    }
  }
  if (w.rank == 0 && !a.json.empty()) {
    std::ofstream(a.json) << nlohmann::json{{"ranks", w.size}, {"rows", rows}}.dump(2) << "\n";
  }
  MPI_Comm_free(&raw);
  comm.reset();
  dist::finalize_world();
}

// ---- holo bench scaling --------------------------------------------------------------------

struct ScalingArgs {
  int np = 2;
  int threads = 1;
  int steps = 10;
  int batch = 4;
  int frames = 8;
  int size = 56;
  double bucket_mb = 1.0;
  std::string json;
  std::string result;  ///< worker: where rank 0 writes its figures
};

/// The benchmark's model: a small 3D CNN (four conv-BN-ReLU stages, about 1.3 M parameters).
struct SmallCnnImpl : torch::nn::Module {
  explicit SmallCnnImpl(int64_t classes) {
    const int64_t widths[] = {3, 32, 64, 128, 256};
    for (int i = 0; i < 4; ++i) {
      features->push_back(torch::nn::Conv3d(
          torch::nn::Conv3dOptions(widths[i], widths[i + 1], 3).padding(1).bias(false)));
      features->push_back(torch::nn::BatchNorm3d(widths[i + 1]));
      features->push_back(torch::nn::ReLU(true));
      if (i < 2) {
        features->push_back(torch::nn::MaxPool3d(
            torch::nn::MaxPool3dOptions({i == 0 ? 1 : 2, 2, 2})));
      }
    }
    register_module("features", features);
    head = register_module("head", torch::nn::Linear(256, classes));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = features->forward(x);
    return head(torch::adaptive_avg_pool3d(y, {1, 1, 1}).flatten(1));
  }
  torch::nn::Sequential features;
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(SmallCnn);

void scaling_worker(const ScalingArgs& a) {
  const auto& w = dist::init_world();
  torch::set_num_threads(a.threads);
  DistOptions opts;
  opts.backend = "mpi";
  auto comm = dist::make_communicator(opts, torch::kCPU);
  torch::manual_seed(7);
  SmallCnn model(400);
  dist::broadcast_module(*model, *comm);
  torch::manual_seed(1000 + w.rank);
  auto x = torch::randn({a.batch, 3, a.frames, a.size, a.size});
  auto y = torch::randint(0, 400, {a.batch}, torch::kLong);
  torch::optim::SGD optim(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();

  // Medians over steps: this benchmark shares its machine, and a median shrugs off the steps
  // another process took time from.
  struct Timed {
    double total_s = 0;        ///< all timed steps, slowest rank
    double step_s = 0;         ///< median step
    double finish_s = 0;       ///< median time in finish(): the communication not hidden
  };
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  auto run = [&](dist::GradientReducer& reducer, int steps) {
    auto step = [&] {
      optim.zero_grad();
      reducer.prepare_for_backward(true);
      torch::nn::functional::cross_entropy(model->forward(x), y).backward();
      reducer.finish();
      optim.step();
    };
    for (int i = 0; i < 2; ++i) step();  // warm-up
    reducer.reset_stats();
    comm->barrier();
    std::vector<double> step_times, finish_times;
    const auto t0 = Clock::now();
    for (int i = 0; i < steps; ++i) {
      const auto s0 = Clock::now();
      const double f0 = reducer.stats().finish_s;
      step();
      step_times.push_back(since(s0));
      finish_times.push_back(reducer.stats().finish_s - f0);
    }
    Timed t;
    t.total_s = w.mpi ? max_over_ranks(since(t0)) : since(t0);
    t.step_s = w.mpi ? max_over_ranks(median(step_times)) : median(step_times);
    t.finish_s = w.mpi ? max_over_ranks(median(finish_times)) : median(finish_times);
    return t;
  };

  nlohmann::json out{{"ranks", w.size}, {"threads", a.threads}, {"batch_per_rank", a.batch},
                     {"input", {a.batch, 3, a.frames, a.size, a.size}}, {"params", params},
                     {"steps", a.steps}, {"bucket_mb", a.bucket_mb}};
  {
    dist::GradientReducer reducer(model->parameters(), comm,
                                  dist::ReducerOptions().bucket_mb(a.bucket_mb).overlap(true));
    const Timed t = run(reducer, a.steps);
    out["buckets"] = reducer.bucket_layout().size();
    out["step_s"] = t.step_s;
    out["samples_per_s"] = static_cast<double>(w.size) * a.batch / t.step_s;
    out["mean_samples_per_s"] = static_cast<double>(w.size) * a.batch * a.steps / t.total_s;
    out["finish_overlap_s"] = t.finish_s;
  }
  if (w.size > 1) {
    // The same all-reduces started only after backward: all of their time is exposed.
    dist::GradientReducer reducer(model->parameters(), comm,
                                  dist::ReducerOptions().bucket_mb(a.bucket_mb).overlap(false));
    const Timed t = run(reducer, a.steps);
    out["step_blocking_s"] = t.step_s;
    out["finish_blocking_s"] = t.finish_s;
  }
  if (w.rank == 0 && !a.result.empty()) std::ofstream(a.result) << out.dump(2) << "\n";
  comm.reset();
  dist::finalize_world();
}

}  // namespace

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("benchmark result " + path + " was not written (see the output above)");
  return nlohmann::json::parse(in);
}

void scaling_parent(const ScalingArgs& a) {
  HOLO_CHECK(a.np >= 2, "holo bench scaling compares 1 rank with --np >= 2 ranks");
  // One intra-op thread per rank: the comparison is of processes, not of thread pools.
  setenv("HOLO_NUM_THREADS", std::to_string(a.threads).c_str(), 1);
  setenv("OMP_NUM_THREADS", std::to_string(a.threads).c_str(), 1);
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("holo-bench-scaling-" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);
  auto args = [&](const std::string& result) {
    return std::vector<std::string>{
        "--worker", "--threads", std::to_string(a.threads), "--steps", std::to_string(a.steps),
        "--batch", std::to_string(a.batch), "--frames", std::to_string(a.frames), "--size",
        std::to_string(a.size), "--bucket-mb", std::to_string(a.bucket_mb), "--result", result};
  };
  nlohmann::json runs = nlohmann::json::array();
  for (int np : {1, a.np}) {
    const std::string result = dir + "/np" + std::to_string(np) + ".json";
    std::cout << "running " << np << " rank(s) x " << a.threads << " thread(s) ..." << std::endl;
    const int rc = self_launch(np, {"bench", "scaling"}, args(result));
    if (rc != 0) throw Error("bench scaling: the run with " + std::to_string(np) + " ranks failed (exit " + std::to_string(rc) + ")");
    runs.push_back(read_json(result));
  }
  std::filesystem::remove_all(dir);
  const auto& one = runs[0];
  const auto& many = runs[1];
  const double efficiency =
      many["samples_per_s"].get<double>() / (a.np * one["samples_per_s"].get<double>());
  const double exposed = many["finish_overlap_s"].get<double>();
  const double blocking = many["finish_blocking_s"].get<double>();
  const double hidden = blocking > 0 ? 1.0 - exposed / blocking : 0.0;
  std::cout << std::fixed << std::setprecision(3)
            << "model: small 3D CNN, " << one["params"].get<int64_t>() << " parameters, "
            << many["buckets"].get<int64_t>() << " buckets of <= " << a.bucket_mb << " MB; input "
            << a.batch << "x3x" << a.frames << "x" << a.size << "x" << a.size << " per rank\n"
            << "1 rank  x " << a.threads << " thread: " << one["samples_per_s"].get<double>()
            << " samples/s (median step " << one["step_s"].get<double>() << " s)\n"
            << a.np << " ranks x " << a.threads << " thread: " << many["samples_per_s"].get<double>()
            << " samples/s (median step " << many["step_s"].get<double>() << " s)\n"
            << "scaling efficiency: " << efficiency << " (target >= 0.85)\n"
            << "all-reduce after backward (overlap off): " << blocking * 1e3 << " ms/step exposed (median)\n"
            << "all-reduce overlapped with backward:     " << exposed * 1e3 << " ms/step exposed (median)\n"
            << "fraction of all-reduce time hidden behind backward: " << hidden << "\n"
            << std::defaultfloat;
  if (!a.json.empty()) {
    std::ofstream(a.json) << nlohmann::json{{"runs", runs}, {"efficiency", efficiency},
                                            {"hidden_fraction", hidden}}.dump(2) << "\n";
  }
}

}  // namespace

void add_launch_commands(CLI::App& app) {
  auto la = std::make_shared<LaunchArgs>();
  auto* launch_cmd = app.add_subcommand(
      "launch", "Start N workers of a job (holo train by default) through mpirun, or srun inside "
                "a SLURM allocation");
  launch_cmd->add_option("--np", la->np, "Number of workers")->required()->check(CLI::PositiveNumber);
  launch_cmd->add_option("--hosts", la->hosts, "Hosts (h or h:slots), comma-separated")
      ->delimiter(',');
  launch_cmd->add_option("--hostfile", la->hostfile, "mpirun hostfile");
  launch_cmd->add_option("--via", la->via, "auto (srun in SLURM, else mpirun; one worker: direct), "
                         "mpirun, srun, direct")
      ->check(CLI::IsMember({"auto", "mpirun", "srun", "direct"}));
  launch_cmd->add_option("--command", la->command,
                         "holo subcommand the workers run, e.g. \"train\", \"eval\"");
  launch_cmd->add_flag("--dry-run", la->dry_run, "Print the command that would run, start nothing");
  add_recipe_args(launch_cmd, la->recipe);
  launch_cmd->add_option("worker_args", la->extra, "Further worker arguments, after --");
  launch_cmd->callback([la] {
    const int rc = run_launch_command(*la);
    if (rc != 0) throw JobExit(rc, "launch: the job exited with code " + std::to_string(rc));
  });

  auto* bench = app.get_subcommand("bench");

  auto ar = std::make_shared<AllreduceArgs>();
  auto* allreduce = bench->add_subcommand(
      "allreduce", "Bus bandwidth of Holo's MPI communicator vs a raw MPI_Allreduce loop");
  allreduce->add_option("--np", ar->np, "Ranks to start (when not already under mpirun/srun)")
      ->check(CLI::Range(2, 1024));
  allreduce->add_option("--min-bytes", ar->min_bytes, "Smallest buffer")->check(CLI::PositiveNumber);
  allreduce->add_option("--max-bytes", ar->max_bytes, "Largest buffer (sizes grow x4)")
      ->check(CLI::PositiveNumber);
  allreduce->add_option("--rounds", ar->rounds, "Rounds per size (best is kept)")
      ->check(CLI::Range(1, 100));
  allreduce->add_option("--json", ar->json, "Also write the figures to this JSON file");
  allreduce->callback([ar] {
    if (launched()) {
      allreduce_worker(*ar);
      return;
    }
    std::vector<std::string> args{"--min-bytes", std::to_string(ar->min_bytes), "--max-bytes",
                                  std::to_string(ar->max_bytes), "--rounds",
                                  std::to_string(ar->rounds)};
    if (!ar->json.empty()) {
      args.insert(args.end(), {"--json", std::filesystem::absolute(ar->json).string()});
    }
    const int rc = self_launch(ar->np, {"bench", "allreduce"}, args);
    if (rc != 0) throw JobExit(rc, "bench allreduce: the workers exited with code " + std::to_string(rc));
  });

  auto sc = std::make_shared<ScalingArgs>();
  auto worker = std::make_shared<bool>(false);
  auto* scaling = bench->add_subcommand(
      "scaling", "Training throughput of a small 3D CNN on 1 rank vs N ranks (same threads each), "
                 "and the all-reduce time hidden behind backward");
  scaling->add_option("--np", sc->np, "Ranks of the parallel run")->check(CLI::Range(2, 1024));
  scaling->add_option("--threads", sc->threads, "Intra-op threads per rank")->check(CLI::Range(1, 256));
  scaling->add_option("--steps", sc->steps, "Timed steps")->check(CLI::Range(2, 100000));
  scaling->add_option("--batch", sc->batch, "Clips per rank per step")->check(CLI::Range(1, 4096));
  scaling->add_option("--frames", sc->frames, "Frames per clip")->check(CLI::Range(1, 512));
  scaling->add_option("--size", sc->size, "Height and width")->check(CLI::Range(8, 1024));
  scaling->add_option("--bucket-mb", sc->bucket_mb, "Gradient bucket size")->check(CLI::Range(0.001, 4096.0));
  scaling->add_option("--json", sc->json, "Also write the figures to this JSON file");
  scaling->add_flag("--worker", *worker, "Run as one rank of a timed run (internal)");
  scaling->add_option("--result", sc->result, "Worker: JSON file rank 0 writes (internal)");
  scaling->callback([sc, worker] {
    if (*worker) {
      scaling_worker(*sc);
    } else {
      scaling_parent(*sc);
    }
  });
}

}  // namespace holo::cli
