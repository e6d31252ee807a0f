// holo bench loader and holo bench scaling (train/bench.h).

#include "train/bench.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <tuple>

#include <unistd.h>

#include "core/check.h"
#include "core/error.h"
#include "core/recipe.h"
#include "core/run_dir.h"
#include "core/shell.h"
#include "core/time.h"
#include "dist/bench.h"
#include "dist/communicator.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "holo/build_config.h"
#include "models/bench.h"
#include "models/mstcn.h"
#include "models/mucon.h"
#include "pipeline/segmentation_data.h"
#include "train/mucon_task.h"
#include "train/optim.h"
#include "train/segmentation_task.h"
#include "train/table.h"
#include "train/viterbi.h"

namespace holo::train {
namespace {

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

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("benchmark result " + path + " was not written (see the output above)");
  return nlohmann::json::parse(in);
}

}  // namespace

void run_loader_bench(const pipeline::LoaderBenchOptions& a) {
  pipeline::LoaderBench b = pipeline::plan_loader_bench(a);
  // The training side is checked before anything is made or timed (an unknown device or
  // precision, CUDA without a GPU).
  models::ModelBenchOptions mo;
  mo.models({a.model}).batch(a.batch).frames(a.frames).size(a.size).width(a.width).threads(b.cores)
      .iters(a.iters).warmup(a.warmup).python("").sgs_model("").device(a.device).precision(b.precision);
  models::check_model_bench_options(mo);

  pipeline::time_loader(a, &b);
  // One training step as `holo bench model` times it (models/bench.h), without its baseline.
  const auto row = models::bench_throughput(a.model, mo);
  pipeline::run_dataloader_baseline(a, &b);
  pipeline::report_loader_bench(a, b, row.holo_clips_per_s);
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
void run_scaling_worker(const ScalingBenchOptions& a) {
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
    const auto t0 = SteadyClock::now();
    if (reducer) reducer->prepare_for_backward(true);
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    const auto t1 = SteadyClock::now();
    loss.backward();
    const auto t2 = SteadyClock::now();
    if (reducer) reducer->finish();
    const auto t3 = SteadyClock::now();
    optim.step();
    optim.zero_grad();
    const auto t4 = SteadyClock::now();
    if (!t) return;
    auto s = [](SteadyClock::time_point p, SteadyClock::time_point q) {
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
    return w.mpi ? dist::max_over_ranks(m) : m;
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

void run_scaling_bench(const ScalingBenchOptions& a, const ScalingLauncher& launch) {
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
      const int rc = launch(np, args(result));
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

}  // namespace holo::train

// ---- holo bench viterbi ---------------------------------------------------------------------

namespace holo::train {

void run_viterbi_bench(const ViterbiBenchOptions& o) {
  if (o.segments < 1 || o.classes < 2 || o.max_length < 2 || o.repeat < 1) {
    throw UsageError("bench viterbi: --segments >= 1, --classes >= 2, --max-length >= 2 and --repeat >= 1");
  }
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("holo-bench-viterbi-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string script = std::string(HOLO_SOURCE_DIR) + "/bench/viterbi_baseline.py";
  TextTable table({"frames", "segments", "L", "holo s", "holo frames/s", "numpy s", "numpy frames/s", "holo/numpy",
                   "same alignment"});
  nlohmann::json rows = nlohmann::json::array();
  for (const int64_t frames : o.frames) {
    if (frames < o.segments) throw UsageError("bench viterbi: " + std::to_string(frames) + " frames for " +
                                              std::to_string(o.segments) + " segments");
    // Log-probabilities of a noisy segmentation (softmax of Gaussian scores, the true segment's
    // class raised), a transcript of alternating classes, and mean lengths near the truth.
    std::mt19937_64 rng(o.seed + static_cast<uint64_t>(frames));
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<int64_t> transcript;
    for (int64_t n = 0; n < o.segments; ++n) transcript.push_back((n * 7 + static_cast<int64_t>(rng() % 3)) % o.classes);
    for (int64_t n = 1; n < o.segments; ++n) {
      if (transcript[n] == transcript[n - 1]) transcript[n] = (transcript[n] + 1) % o.classes;
    }
    std::vector<float> lp(static_cast<size_t>(frames * o.classes));
    for (int64_t t = 0; t < frames; ++t) {
      const int64_t truth = transcript[std::min<int64_t>(o.segments - 1, t * o.segments / frames)];
      float max = -1e30f, sum = 0;
      for (int64_t c = 0; c < o.classes; ++c) {
        float& v = lp[t * o.classes + c];
        v = normal(rng) + (c == truth ? 2.f : 0.f);
        max = std::max(max, v);
      }
      for (int64_t c = 0; c < o.classes; ++c) sum += std::exp(lp[t * o.classes + c] - max);
      for (int64_t c = 0; c < o.classes; ++c) lp[t * o.classes + c] -= max + std::log(sum);
    }
    std::vector<double> means(static_cast<size_t>(o.classes), static_cast<double>(frames) / o.segments);
    const seg::PoissonLengthModel lengths(means, o.max_length);

    std::vector<double> seconds;
    seg::Alignment ours;
    for (int r = 0; r < o.repeat; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      ours = seg::viterbi_align(lp.data(), frames, o.classes, transcript, lengths);
      seconds.push_back(seconds_since(t0));
    }
    std::sort(seconds.begin(), seconds.end());
    const double holo_s = seconds[seconds.size() / 2];
    nlohmann::json row = {{"frames", frames}, {"segments", o.segments}, {"classes", o.classes},
                          {"max_length", o.max_length}, {"holo_seconds", holo_s},
                          {"holo_frames_per_s", static_cast<double>(frames) / holo_s}};
    std::string numpy_s = "-", numpy_fps = "-", ratio = "-", same = "-";
    if (!o.python.empty()) {
      pipeline::NpyMatrix m{frames, o.classes, lp};
      const std::string lp_path = (dir / "log_probs.npy").string(), spec_path = (dir / "spec.json").string();
      pipeline::write_npy_matrix(lp_path, m);
      std::ofstream(spec_path) << nlohmann::json({{"transcript", transcript}, {"means", means},
                                                  {"max_length", o.max_length}})
                                      .dump();
      const auto [status, output] =
          run_shell(shell_quote(o.python) + " " + shell_quote(script) + " --log-probs " + shell_quote(lp_path) +
                    " --spec " + shell_quote(spec_path) + " --repeat " + std::to_string(o.repeat) + " 2>&1");
      if (status != 0) {
        row["numpy_error"] = output.substr(0, 1000);
        numpy_s = "failed";
      } else {
        const auto j = nlohmann::json::parse(output.substr(output.find('{')));
        const double py_s = j.at("seconds").get<double>();
        const auto labels = j.at("labels").get<std::vector<int64_t>>();
        const double py_score = j.at("score").get<double>();
        const bool equal = labels == ours.labels && std::abs(py_score - ours.score) <= 1e-6 * std::max(1.0, std::abs(ours.score));
        row["numpy_seconds"] = py_s;
        row["numpy_frames_per_s"] = static_cast<double>(frames) / py_s;
        row["ratio"] = py_s / holo_s;
        row["same_alignment"] = equal;
        numpy_s = TextTable::number(py_s, 3);
        numpy_fps = TextTable::number(static_cast<double>(frames) / py_s, 0);
        ratio = TextTable::number(py_s / holo_s, 1);
        same = equal ? "yes" : "NO";
      }
    }
    table.add_row({std::to_string(frames), std::to_string(o.segments), std::to_string(o.max_length),
                   TextTable::number(holo_s, 4), TextTable::number(static_cast<double>(frames) / holo_s, 0), numpy_s,
                   numpy_fps, ratio, same});
    rows.push_back(row);
  }
  fs::remove_all(dir);
  std::cout << "Viterbi alignment of a transcript with a Poisson length model, " << o.classes
            << " classes, median of " << o.repeat << " (one thread each side)\n"
            << table.str();
  if (!o.json.empty()) write_file_atomic(o.json, rows.dump(2));
}

}  // namespace holo::train

// ---- holo bench segmentation ----------------------------------------------------------------

namespace holo::train {

namespace {

/// One timed training step of `o.model` on one video of features `x` (1 x D x T) and frame
/// labels `y` (1 x T): the step function, after building the network and its optimiser (MS-TCN:
/// Adam at 5e-4 as its release; MuCon: SGD at 0.01, weight decay 0.005, the weak losses).
std::function<void()> segmentation_step(const SegmentationBenchOptions& o, const torch::Tensor& x,
                                        const torch::Tensor& y) {
  const torch::Tensor mask = torch::ones({1, x.size(2)});
  OptimOptions oo;
  std::shared_ptr<torch::nn::Module> net;
  if (o.model == "mucon") {
    models::MuConOptions mo;
    mo.in_dim = o.dim;
    mo.classes = o.classes;
    mo.hidden = o.mucon_hidden;
    mo.layers = o.mucon_layers;
    net = models::MuConNet(mo).ptr();
    oo.name = "sgd";
    oo.lr = 0.01;
    oo.momentum = 0.0;
    oo.weight_decay = 0.005;
    oo.decay_norm_bias = true;
  } else {
    models::MultiStageTcnOptions mo;
    mo.stages = o.stages;
    mo.layers = o.layers;
    mo.channels = o.channels;
    mo.in_dim = o.dim;
    mo.classes = o.classes;
    net = models::MultiStageTcn(mo).ptr();
    oo.name = "adamw";
    oo.lr = 0.0005;
    oo.weight_decay = 0.0;
  }
  net->train();
  NamedTensors params;
  for (const auto& p : net->named_parameters()) params.emplace_back(p.key(), p.value());
  auto optim = std::make_shared<Optimizer>(oo, params);
  std::vector<int64_t> labels(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + y.numel()), transcript;
  for (size_t t = 0; t < labels.size(); ++t) {
    if (t == 0 || labels[t] != labels[t - 1]) transcript.push_back(labels[t]);
  }
  return [=] {
    optim->zero_grad();
    torch::Tensor loss;
    if (auto* mucon = dynamic_cast<models::MuConNetImpl*>(net.get())) {
      const torch::Tensor z = mucon->encode(x);
      const torch::Tensor logits = mucon->classify(z, x.size(2));
      const auto l = mucon::losses(logits, mucon->decode_teacher(z, transcript), transcript, {}, mucon::LossOptions{});
      loss = l.consistency + l.transcript + 0.1 * l.length + 0.1 * l.smoothing;
    } else {
      auto* tcn = dynamic_cast<models::MultiStageTcnImpl*>(net.get());
      loss = mstcn_loss(tcn->forward(x, mask), y, mask, 0.15);
    }
    loss.backward();
    optim->step();
  };
}

}  // namespace

void run_segmentation_bench(const SegmentationBenchOptions& o) {
  if (o.dim < 1 || o.classes < 2 || o.iters < 1 || o.warmup < 0 || o.threads < 1 || o.segments < 1) {
    throw UsageError(
        "bench segmentation: --dim >= 1, --classes >= 2, --iters >= 1, --warmup >= 0, --threads >= 1, --segments >= 1");
  }
  if (o.model != "mstcn" && o.model != "mucon") throw UsageError("bench segmentation: --model is mstcn or mucon");
  namespace fs = std::filesystem;
  torch::set_num_threads(o.threads);
  const fs::path dir = fs::temp_directory_path() / ("holo-bench-segmentation-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const bool mucon = o.model == "mucon";
  const std::string script =
      std::string(HOLO_SOURCE_DIR) + (mucon ? "/bench/mucon_baseline.py" : "/bench/segmentation_baseline.py");
  TextTable table({"frames", "D", "classes", "holo steps/s", "torch steps/s", "holo/torch"});
  nlohmann::json rows = nlohmann::json::array();
  for (const int64_t frames : o.frames) {
    torch::manual_seed(0);
    const torch::Tensor x = torch::randn({1, o.dim, frames});
    torch::Tensor y;
    if (mucon) {
      // `segments` equal segments, consecutive classes different: the transcript.
      y = torch::empty({1, frames}, torch::kInt64);
      for (int64_t t = 0; t < frames; ++t) y[0][t] = (t * o.segments / frames * 7) % o.classes;
    } else {
      y = torch::randint(0, o.classes, {1, frames}, torch::kInt64);
    }
    const auto step = segmentation_step(o, x, y);
    for (int i = 0; i < o.warmup; ++i) step();
    std::vector<double> seconds;
    for (int i = 0; i < o.iters; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      step();
      seconds.push_back(seconds_since(t0));
    }
    std::sort(seconds.begin(), seconds.end());
    const double holo_sps = 1.0 / seconds[seconds.size() / 2];
    nlohmann::json row = {{"model", o.model}, {"frames", frames}, {"dim", o.dim}, {"classes", o.classes},
                          {"threads", o.threads}, {"holo_steps_per_s", holo_sps}};
    std::string torch_sps = "-", ratio = "-";
    if (!o.python.empty()) {
      const std::string xf = (dir / "x.npy").string(), yf = (dir / "y.npy").string();
      pipeline::NpyMatrix xm{o.dim, frames, {}}, ym{1, frames, {}};
      const torch::Tensor xc = x[0].contiguous();
      xm.values.assign(xc.data_ptr<float>(), xc.data_ptr<float>() + xc.numel());
      const torch::Tensor yc = y.to(torch::kFloat32).contiguous();
      ym.values.assign(yc.data_ptr<float>(), yc.data_ptr<float>() + yc.numel());
      pipeline::write_npy_matrix(xf, xm);
      pipeline::write_npy_matrix(yf, ym);
      const std::string sizes =
          mucon ? " --hidden " + std::to_string(o.mucon_hidden) + " --layers " + std::to_string(o.mucon_layers)
                : " --stages " + std::to_string(o.stages) + " --layers " + std::to_string(o.layers) + " --channels " +
                      std::to_string(o.channels);
      const auto [status, output] = run_shell(
          "OMP_NUM_THREADS=" + std::to_string(o.threads) + " MKL_NUM_THREADS=" + std::to_string(o.threads) + " " +
          shell_quote(o.python) + " " + shell_quote(script) + " --features " + shell_quote(xf) + " --labels " +
          shell_quote(yf) + " --classes " + std::to_string(o.classes) + sizes + " --threads " +
          std::to_string(o.threads) + " --iters " + std::to_string(o.iters) + " --warmup " + std::to_string(o.warmup) +
          " 2>&1");
      if (status != 0 || output.find('{') == std::string::npos) {
        row["torch_error"] = output.substr(0, 1000);
        torch_sps = "failed";
      } else {
        const double t = nlohmann::json::parse(output.substr(output.find('{'))).at("steps_per_s").get<double>();
        row["torch_steps_per_s"] = t;
        row["ratio"] = holo_sps / t;
        torch_sps = TextTable::number(t, 3);
        ratio = TextTable::number(holo_sps / t, 2);
      }
    }
    table.add_row({std::to_string(frames), std::to_string(o.dim), std::to_string(o.classes),
                   TextTable::number(holo_sps, 3), torch_sps, ratio});
    rows.push_back(row);
  }
  fs::remove_all(dir);
  if (mucon) {
    std::cout << "MuCon training steps (one video per step; backbone of " << o.mucon_layers << " layers, hidden "
              << o.mucon_hidden << ", a transcript of " << o.segments << " segments, weak losses, SGD)";
  } else {
    std::cout << "MS-TCN training steps (one video per step; " << o.stages << " stages x " << o.layers << " layers x "
              << o.channels << " maps, Adam)";
  }
  std::cout << ", median of " << o.iters << ", " << o.threads << " thread(s) each side\n" << table.str();
  if (!o.json.empty()) write_file_atomic(o.json, rows.dump(2));
}

}  // namespace holo::train
