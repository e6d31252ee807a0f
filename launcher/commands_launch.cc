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
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>
#include <unistd.h>

#include "core/check.h"
#include "core/env.h"
#include "core/error.h"
#include "core/recipe.h"
#include "core/run_dir.h"
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
  const Recipe recipe = load_recipe(a.recipe.file, a.recipe.overrides);
  launch::LaunchOptions o;
  o.srun_mpi = recipe.slurm.mpi;
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
  // Rank 0 alone prints info lines; every other rank keeps its whole log in the run directory
  // from its first line on (core/log.h), whatever command the workers run.
  const std::string logs = (std::filesystem::absolute(run_dir_path(recipe)) / "logs").string();
  setenv("HOLO_LOG_DIR", logs.c_str(), /*overwrite=*/0);
  const launch::LaunchPlan plan = launch::plan_launch(o, launch::this_machine());
  if (a.dry_run) {
    std::cout << launch::to_command_line(plan) << "\n";
    return 0;
  }
  spdlog::info("launch: {} workers via {}: {}", a.np, plan.via, launch::to_command_line(plan));
  if (a.np > 1) {
    spdlog::info("launch: rank 0 logs here; rank{} {} log{} to {}/rank-<N>.log and show{} only warnings and errors here",
                 a.np > 2 ? "s 1 to" : "", a.np - 1, a.np > 2 ? "" : "s", env::log_dir(), a.np > 2 ? "" : "s");
  }
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

/// Median of `v` (0 when empty).
double median_of(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// One rank of a timed run: the same steps in three modes, interleaved round by round so that a
/// slow spell of the machine hits all three alike.
///   local:    forward, backward, optimiser, no communication at all (what the machine gives two
///             processes computing side by side);
///   overlap:  with the gradient reducer, all-reduces started during backward (training);
///   blocking: with the reducer, all-reduces started only after backward.
/// Every step is timed in phases: forward (with the loss), backward, finish() (waiting for the
/// all-reduces), optimiser (zero_grad and step). Medians over all timed steps of a mode, each the
/// slowest rank's.
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

  const std::vector<std::string> modes =
      w.size > 1 ? std::vector<std::string>{"local", "overlap", "blocking"}
                 : std::vector<std::string>{"local"};
  std::map<std::string, std::unique_ptr<dist::GradientReducer>> reducers;
  for (const auto& m : modes) {
    if (m == "local") continue;
    reducers[m] = std::make_unique<dist::GradientReducer>(
        model->parameters(), comm,
        dist::ReducerOptions().bucket_mb(a.bucket_mb).overlap(m == "overlap"));
  }
  struct Phases {
    std::vector<double> step, forward, backward, finish, optim;
  };
  std::map<std::string, Phases> timed;
  auto step = [&](const std::string& mode, Phases* t) {
    dist::GradientReducer* reducer = mode == "local" ? nullptr : reducers[mode].get();
    const auto t0 = Clock::now();
    if (reducer) reducer->prepare_for_backward(true);
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    const auto t1 = Clock::now();
    loss.backward();
    const auto t2 = Clock::now();
    if (reducer) reducer->finish();
    const auto t3 = Clock::now();
    optim.step();
    optim.zero_grad();
    const auto t4 = Clock::now();
    if (!t) return;
    auto s = [](Clock::time_point p, Clock::time_point q) {
      return std::chrono::duration<double>(q - p).count();
    };
    t->step.push_back(s(t0, t4));
    t->forward.push_back(s(t0, t1));
    t->backward.push_back(s(t1, t2));
    t->finish.push_back(s(t2, t3));
    t->optim.push_back(s(t3, t4));
  };
  const int per_round = std::max(1, (a.steps + a.worker_rounds - 1) / a.worker_rounds);
  for (int round = 0; round < a.worker_rounds; ++round) {
    for (const auto& mode : modes) {
      for (int i = 0; i < a.warmup; ++i) step(mode, nullptr);
      comm->barrier();  // every rank starts the timed steps together
      for (int i = 0; i < per_round; ++i) step(mode, &timed[mode]);
    }
  }
  auto slowest = [&](const std::vector<double>& v) {
    const double m = median_of(v);
    return w.mpi ? max_over_ranks(m) : m;
  };
  nlohmann::json out{{"ranks", w.size}, {"threads", a.threads}, {"batch_per_rank", a.batch},
                     {"input", {a.batch, 3, a.frames, a.size, a.size}}, {"params", params},
                     {"steps", per_round * a.worker_rounds}, {"bucket_mb", a.bucket_mb}};
  for (const auto& mode : modes) {
    const Phases& p = timed[mode];
    out[mode] = {{"step_s", slowest(p.step)},       {"forward_s", slowest(p.forward)},
                 {"backward_s", slowest(p.backward)}, {"finish_s", slowest(p.finish)},
                 {"optim_s", slowest(p.optim)}};
  }
  if (reducers.count("overlap")) out["buckets"] = reducers["overlap"]->bucket_layout().size();
  // What the process actually ran with: one intra-op thread, and the threads it has (main,
  // the reducers' communication threads, the watchdog, MPI's own).
  out["intra_op_threads"] = torch::get_num_threads();
  out["process_threads"] = std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                         std::filesystem::directory_iterator());
  reducers.clear();
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
  const std::string threads = std::to_string(a.threads);
  for (const char* v : {"HOLO_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}) {
    setenv(v, threads.c_str(), 1);
  }
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("holo-bench-scaling-" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);
  auto args = [&](const std::string& result) {
    return std::vector<std::string>{
        "--worker", "--threads", threads, "--steps", std::to_string(a.steps), "--warmup",
        std::to_string(a.warmup), "--worker-rounds", std::to_string(a.worker_rounds), "--batch",
        std::to_string(a.batch), "--frames", std::to_string(a.frames), "--size",
        std::to_string(a.size), "--bucket-mb", std::to_string(a.bucket_mb), "--result", result};
  };
  // Launches alternate (1 rank, N ranks, 1 rank, ...) so that the machine's slow spells fall on
  // both; each round gives one efficiency, and the median and spread are reported.
  nlohmann::json rounds = nlohmann::json::array();
  std::vector<double> efficiency, compute_efficiency, comm_efficiency, hidden;
  for (int round = 0; round < a.rounds; ++round) {
    nlohmann::json pair = nlohmann::json::array();
    for (int np : {1, a.np}) {
      const std::string result = dir + "/r" + std::to_string(round) + "-np" + std::to_string(np) + ".json";
      std::cout << "round " << round + 1 << "/" << a.rounds << ": " << np << " rank(s) x " << a.threads
                << " thread(s) ..." << std::endl;
      const int rc = self_launch(np, {"bench", "scaling"}, args(result));
      if (rc != 0) throw Error("bench scaling: the run with " + std::to_string(np) + " ranks failed (exit " + std::to_string(rc) + ")");
      pair.push_back(read_json(result));
    }
    const auto& one = pair[0];
    const auto& many = pair[1];
    const double t1 = one["local"]["step_s"].get<double>();
    efficiency.push_back(t1 / many["overlap"]["step_s"].get<double>());
    compute_efficiency.push_back(t1 / many["local"]["step_s"].get<double>());
    // Within one launch, the modes interleaved: what the communication costs, barely touched by
    // the machine's slow spells between launches.
    comm_efficiency.push_back(many["local"]["step_s"].get<double>() / many["overlap"]["step_s"].get<double>());
    const double blocking = many["blocking"]["finish_s"].get<double>();
    hidden.push_back(blocking > 0 ? 1.0 - many["overlap"]["finish_s"].get<double>() / blocking : 0.0);
    rounds.push_back(pair);
  }
  std::filesystem::remove_all(dir);
  // Per-phase medians over the rounds.
  auto phase = [&](int which, const std::string& mode, const std::string& key) {
    std::vector<double> v;
    for (const auto& pair : rounds) v.push_back(pair[which][mode][key].get<double>());
    return median_of(v);
  };
  auto spread = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    std::ostringstream o;
    o << std::fixed << std::setprecision(3) << median_of(v) << " (min " << v.front() << ", max "
      << v.back() << ", " << v.size() << " rounds)";
    return o.str();
  };
  const auto& first = rounds[0];
  std::cout << std::fixed << std::setprecision(1)
            << "model: small 3D CNN, " << first[0]["params"].get<int64_t>() << " parameters, "
            << first[1]["buckets"].get<int64_t>() << " buckets of <= " << a.bucket_mb << " MB; input "
            << a.batch << "x3x" << a.frames << "x" << a.size << "x" << a.size << " per rank; "
            << first[1]["steps"].get<int64_t>() << " timed steps per mode and launch\n"
            << "median ms per step (slowest rank)   step  forward  backward  finish  optimiser\n";
  const std::vector<std::tuple<std::string, int, std::string>> rows = {
      {"1 rank, no communication", 0, "local"},
      {std::to_string(a.np) + " ranks, no communication", 1, "local"},
      {std::to_string(a.np) + " ranks, overlapped (training)", 1, "overlap"},
      {std::to_string(a.np) + " ranks, all-reduce after backward", 1, "blocking"}};
  for (const auto& [label, which, mode] : rows) {
    std::cout << std::left << std::setw(36) << label << std::right << std::setw(5)
              << phase(which, mode, "step_s") * 1e3 << std::setw(9) << phase(which, mode, "forward_s") * 1e3
              << std::setw(10) << phase(which, mode, "backward_s") * 1e3 << std::setw(8)
              << phase(which, mode, "finish_s") * 1e3 << std::setw(11) << phase(which, mode, "optim_s") * 1e3
              << "\n";
  }
  std::cout << "scaling efficiency: " << spread(efficiency) << " (target >= 0.85)\n"
            << "  of which the machine (" << a.np << " processes computing, no communication): "
            << spread(compute_efficiency) << "\n"
            << "  of which the communication (same launch, overlapped vs none): "
            << spread(comm_efficiency) << "\n"
            << "fraction of all-reduce time hidden behind backward: " << spread(hidden) << "\n"
            << std::defaultfloat;
  if (!a.json.empty()) {
    std::ofstream(a.json) << nlohmann::json{{"rounds", rounds},
                                            {"efficiency", efficiency},
                                            {"compute_efficiency", compute_efficiency},
                                            {"communication_efficiency", comm_efficiency},
                                            {"hidden_fraction", hidden}}.dump(2) << "\n";
  }
}

}  // namespace

void add_launch_commands(CLI::App& app) {
  auto la = std::make_shared<LaunchArgs>();
  auto* launch_cmd = app.add_subcommand(
      "launch", "Start N workers of a job (holo train by default) through mpirun, or srun inside "
                "a SLURM allocation");
  launch_cmd->add_option("--np", la->np, "Number of workers (at least 1)")
      ->required()
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            try {
              size_t used = 0;
              const long n = std::stol(v, &used);
              if (used == v.size() && n >= 1) return "";
            } catch (const std::exception&) {
            }
            return "the number of workers must be a whole number of at least 1, got '" + v + "'";
          },
          "N>=1"));
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
  scaling->add_option("--steps", sc->steps, "Timed steps per mode and launch")->check(CLI::Range(2, 100000));
  scaling->add_option("--rounds", sc->rounds, "Pairs of launches (1 rank, then N); median and spread are reported")
      ->check(CLI::Range(1, 1000));
  scaling->add_option("--warmup", sc->warmup, "Untimed steps before each timed series")->check(CLI::Range(0, 1000));
  // Options the benchmark passes to its own workers: not shown in --help.
  scaling->add_option("--worker-rounds", sc->worker_rounds, "Worker: rounds of the three modes (internal)")
      ->check(CLI::Range(1, 1000))
      ->group("");
  scaling->add_option("--batch", sc->batch, "Clips per rank per step")->check(CLI::Range(1, 4096));
  scaling->add_option("--frames", sc->frames, "Frames per clip")->check(CLI::Range(1, 512));
  scaling->add_option("--size", sc->size, "Height and width")->check(CLI::Range(8, 1024));
  scaling->add_option("--bucket-mb", sc->bucket_mb, "Gradient bucket size")->check(CLI::Range(0.001, 4096.0));
  scaling->add_option("--json", sc->json, "Also write the figures to this JSON file");
  scaling->add_flag("--worker", *worker, "Run as one rank of a timed run (internal)")->group("");
  scaling->add_option("--result", sc->result, "Worker: JSON file rank 0 writes (internal)")->group("");
  scaling->callback([sc, worker] {
    if (*worker) {
      scaling_worker(*sc);
    } else {
      scaling_parent(*sc);
    }
  });
}

}  // namespace holo::cli
