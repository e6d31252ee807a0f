// holo model list | info RECIPE|NAME, holo bench model

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "core/recipe.h"
#include "core/registry.h"
#include "core/run_dir.h"
#include "launcher/cli.h"
#include "models/bench.h"
#include "models/flops.h"
#include "models/network.h"
#include "models/resnet2d.h"
#include "models/sgs.h"
#include "models/weights.h"
#include "pipeline/dataset.h"
#include "train/table.h"
#include "train/video_task.h"

namespace holo::cli {
namespace {

struct InfoArgs {
  std::string target;
  std::vector<std::string> overrides;
  int64_t classes = 0;
  int64_t frames = 0;
  int64_t size = 0;
  double width = 0;
  int64_t clips = 0;
  std::string weights;
  int64_t bins = 0;
};

std::string shape_text(const std::vector<int64_t>& s) {
  std::ostringstream o;
  for (size_t i = 1; i < s.size(); ++i) o << (i > 1 ? "x" : "") << s[i];  // batch dropped
  return s.empty() ? "-" : o.str();
}

/// Clip i of k: one still frame plus noise whose strength grows with i (0: a still clip).
torch::Tensor synthetic_clip(int64_t i, int64_t k, int64_t t, int64_t size) {
  auto still = torch::rand({1, 3, 1, size, size}).expand({1, 3, t, size, size});
  const double motion = k > 1 ? static_cast<double>(i) / static_cast<double>(k - 1) : 1.0;
  return still + motion * torch::randn({1, 3, t, size, size});
}

/// A network as `holo model info|forward` build it: from a recipe or a name, with the flags.
struct Built {
  std::shared_ptr<models::NetworkImpl> net;
  ModelOptions resolved;
  int64_t classes = 400, frames = 16, size = 112;
  std::vector<int64_t> heads;  ///< outputs of each head (one entry: `classes`)
  std::string heads_from;      ///< where the head sizes come from, for the header line
};

/// The heads a recipe's run builds: its task's sizes on its training split (classInd.txt,
/// HVU's categories, model.num_classes, transfer's two outputs, ...), as holo train would; when
/// the data cannot be read here (or is synthetic, which would be made first), model.num_classes,
/// then data.num_classes, then 400.
std::vector<int64_t> recipe_heads(const Recipe& r, std::string& from) {
  std::string why;
  if (r.data.dataset != "synth" && !r.data.dataset.empty()) {
    try {
      const auto dataset = pipeline::make_dataset(r, "train");
      const auto task = train::make_video_task(r, *dataset);
      from = "the recipe's training split";
      return task->head_sizes();
    } catch (const std::exception& e) {
      why = std::string(": the training split cannot be read here (") + e.what() + ")";
    }
  }
  if (r.model.num_classes > 0) {
    from = "model.num_classes" + why;
    return {r.model.num_classes};
  }
  if (r.data.num_classes > 0) {
    from = "data.num_classes" + why;
    return {r.data.num_classes};
  }
  from = "400, the default" + why;
  return {400};
}

Built build_target(const InfoArgs& a) {
  Built b;
  ModelOptions options;
  const bool is_file = std::filesystem::exists(a.target) ||
                       (a.target.size() > 5 && a.target.substr(a.target.size() - 5) == ".toml");
  if (is_file) {
    const Recipe r = load_recipe(a.target, a.overrides);
    options = r.model;
    if (a.classes <= 0) {
      b.heads = recipe_heads(r, b.heads_from);
      b.classes = b.heads.front();
    }
    b.frames = r.sampling.num_frames;
    b.size = r.transform.crop_size;
  } else {
    // A network name: --set model.KEY=VALUE applies to it as to a recipe's [model].
    options = parse_recipe("[model]\nname = \"" + a.target + "\"\n", a.target, a.overrides).model;
  }
  if (a.classes > 0) {
    b.classes = a.classes;
    b.heads_from = "--classes";
  }
  if (b.heads.empty()) b.heads = {b.classes};
  if (a.frames > 0) b.frames = a.frames;
  if (a.size > 0) b.size = a.size;
  if (a.width > 0) options.width = a.width;
  if (!is_file || a.frames > 0) options.frames = b.frames;
  b.resolved = models::resolve_model(options);
  torch::manual_seed(0);
  b.net = models::build_network(options, b.heads);
  if (!a.weights.empty()) {
    // A checkpoint (its newest good one, for a run directory) or a file of tensors.
    std::map<std::string, torch::Tensor> state;
    if (std::filesystem::is_directory(a.weights)) {
      for (auto& [name, t] : ckpt::Manager::load_newest_valid(a.weights, 0, 1).replicated) {
        if (name.rfind("model.", 0) == 0) state[name.substr(6)] = t;
      }
      models::load_state_dict(*b.net, state, a.weights);
    } else {
      // A weights file in any layout Holo reads (docs/weights.md); every tensor must match.
      const auto report = models::import_weights(*b.net, b.resolved.name, models::read_weights_file(a.weights), "auto");
      if (!report.unmatched.empty() || !report.classifier_kept.empty()) {
        throw UsageError("--weights '" + a.weights + "' does not fit " + a.target + " (" +
                         models::to_string(report.layout) + " names): " +
                         (report.unmatched.empty() ? "the classifier " + report.classifier_kept.front()
                                                   : report.unmatched.front()) +
                         (report.unmatched.size() > 1 ? " (and " + std::to_string(report.unmatched.size() - 1) + " more)" : ""));
      }
    }
  }
  b.net->eval();
  return b;
}

std::string heads_text(const std::vector<int64_t>& heads) {
  if (heads.size() == 1) return std::to_string(heads[0]) + " classes";
  std::string out = std::to_string(heads.size()) + " heads of ";
  for (size_t i = 0; i < heads.size(); ++i) out += (i ? "+" : "") + std::to_string(heads[i]);
  return out + " outputs";
}

void model_info(const InfoArgs& a) {
  if (segmentation_model_info(a.target, a.overrides, a.classes)) return;
  Built built = build_target(a);
  auto& net = built.net;
  const ModelOptions& resolved = built.resolved;
  const int64_t frames = built.frames, size = built.size;
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);

  std::cout << "model " << a.target << " (" << resolved.name << ", depth " << resolved.depth
            << ", width " << resolved.width << (resolved.sgs ? ", SGS" : "") << ")\n"
            << "input 3x" << frames << "x" << size << "x" << size << ", " << heads_text(built.heads)
            << (built.heads_from.empty() ? "" : " (" + built.heads_from + ")")
            << "; GFLOPs = multiply-accumulates / 1e9 (docs/models.md)\n\n";
  const bool varies = !net->clip_cost_names().empty();  // SGS, or a transformer's token reducer
  const int64_t clips = a.clips > 0 ? a.clips : (varies && a.bins == 0 ? 8 : 1);
  std::vector<double> per_clip;
  std::vector<int64_t> bins;
  std::map<std::string, std::vector<double>> tokens;  // tokens_<block> per clip
  std::vector<models::StageStats> first;
  for (int64_t i = 0; i < clips; ++i) {
    std::optional<models::SgsForcedBins> forced;
    if (a.bins > 0) forced.emplace(a.bins);  // the cost of a clip whose SGS keeps B' = a.bins
    models::FlopRecorder rec;
    auto out = net->forward_all(clips == 1 ? torch::randn({1, 3, frames, size, size})
                                           : synthetic_clip(i, clips, frames, size));
    rec.finish();
    per_clip.push_back(rec.total_macs());
    bins.push_back(out.reported("active_bins").defined() ? out.reported("active_bins").item<int64_t>() : -1);
    for (const auto& [name, v] : out.per_clip) {
      if (name.rfind("tokens_", 0) == 0) tokens[name].push_back(v[0].item<double>());
    }
    if (i == clips - 1) first = rec.stages();  // the table shows the most moving clip
  }
  std::cout << std::left << std::setw(14) << "stage" << std::setw(22) << "output" << std::right
            << std::setw(14) << "params" << std::setw(12) << "GFLOPs" << "\n";
  int64_t params_seen = 0;
  for (const auto& s : first) {
    const int64_t p = models::count_parameters(*net, s.name + ".");
    params_seen += p;
    std::cout << std::left << std::setw(14) << s.name << std::setw(22) << shape_text(s.shape)
              << std::right << std::setw(14) << p << std::setw(12) << std::fixed
              << std::setprecision(3) << s.macs / 1e9 << "\n";
  }
  const int64_t total = models::count_parameters(*net);
  std::cout << std::left << std::setw(36) << "total" << std::right << std::setw(14) << total
            << std::setw(12) << per_clip.back() / 1e9 << "\n";
  if (clips > 1) {
    std::cout << "\nper clip (motion from still to noise):\n";
    double sum = 0;
    for (int64_t i = 0; i < clips; ++i) {
      sum += per_clip[i];
      std::cout << "  clip " << i << ": " << std::setprecision(3) << per_clip[i] / 1e9 << " GFLOPs";
      if (bins[i] >= 0) std::cout << ", " << bins[i] << " active bins";
      for (const auto& [name, v] : tokens) std::cout << ", " << name << " " << std::setprecision(1) << v[static_cast<size_t>(i)];
      std::cout << "\n";
    }
    const auto [lo, hi] = std::minmax_element(per_clip.begin(), per_clip.end());
    std::cout << "  average: " << std::setprecision(3) << sum / clips / 1e9 << " GFLOPs over " << clips
              << " clips (min " << *lo / 1e9 << ", max " << *hi / 1e9 << ")\n";
    for (const auto& [name, v] : tokens) {
      const auto [tl, th] = std::minmax_element(v.begin(), v.end());
      double tsum = 0;
      for (double x : v) tsum += x;
      std::cout << "  " << name << " (tokens per frame after block " << name.substr(7) << ", CLS included): mean "
                << std::setprecision(1) << tsum / static_cast<double>(v.size()) << ", min " << *tl << ", max " << *th << "\n";
    }
  }
  if (varies) {
    std::cout << "\n" << (resolved.sgs ? "SGS's" : "Token reduction's") << " GFLOPs depend on the clip and on the weights: these are for "
              << (a.weights.empty() ? "random weights (--weights to measure trained ones)" : "the weights of " + a.weights)
              << " on synthetic clips. The thesis's figures average a trained network over a\n"
                 "dataset: `holo eval` and training record them (eval-<split>.json \"cost\", metrics.jsonl "
                 "gflops_mean/min/max).\n";
  }
}

struct ForwardArgs {
  InfoArgs net;
  std::string input, out;
};

/// `holo model forward`: the network's outputs for a given input, in eval mode, to compare with
/// another implementation (bench/model_baseline.py forward).
void model_forward(const ForwardArgs& a) {
  Built built = build_target(a.net);
  auto io = models::read_state_dict(a.input);
  if (!io.count("input")) throw UsageError(a.input + ": expected a dict with an \"input\" tensor (N x 3 x T x H x W)");
  torch::NoGradGuard no_grad;
  const torch::Tensor x = io.at("input").to(torch::kFloat32);
  const models::NetworkOutput out = built.net->forward_all(x);
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (size_t h = 0; h < out.logits.size(); ++h) {
    dict.insert(h == 0 ? std::string("logits") : "logits." + std::to_string(h), out.logits[h].contiguous());
  }
  dict.insert("features", out.features.contiguous());
  for (const auto& [name, values] : built.net->clip_costs(x, out)) dict.insert(name, values.contiguous());
  if (out.reported("active_bins").defined()) dict.insert("active_bins", out.reported("active_bins").to(torch::kLong).contiguous());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(a.out, std::string(bytes.begin(), bytes.end()));
  std::cout << "wrote logits" << (out.logits.size() > 1 ? " of " + std::to_string(out.logits.size()) + " heads" : "")
            << ", features" << (out.reported("active_bins").defined() ? ", active bins and GFLOPs per clip" : "") << " of "
            << x.size(0) << " clip" << (x.size(0) == 1 ? "" : "s") << " to " << a.out << "\n";
}

}  // namespace

void add_model_commands(CLI::App& app) {
  auto* model = app.add_subcommand("model", "List the networks and show their size and cost");
  model->require_subcommand(1);
  model->add_subcommand("list", "Named networks and families, one line each")->callback([] {
    // Every model.name the registries hold, by group (core/registry.h, train/registry.h).
    const std::vector<std::pair<std::string, std::string>> groups = {
        {"preset", "presets (model.name):"},
        {"family", "families (model.name, depth from model.depth):"},
        {"segmentation", "segmentation (model.name with task.kind = segmentation, on per-frame features):"}};
    const auto choices = registered_choices("model.name");
    for (const auto& [group, heading] : groups) {
      std::cout << heading << "\n";
      for (const auto& c : choices) {
        if (c.group == group) std::cout << "  " << std::left << std::setw(18) << c.name << c.description << "\n";
      }
    }
  });
  auto args = std::make_shared<InfoArgs>();
  auto* info = model->add_subcommand("info", "Per-stage output shapes, parameters and GFLOPs");
  info->add_option("target", args->target, "Recipe file or network name (`holo model list`)")->required();
  info->add_option("--set", args->overrides, "Recipe override KEY=VALUE (model.* keys also apply to a network name)")
      ->take_all();
  info->add_option("--classes", args->classes, "Outputs of the head (default: recipe, else 400)");
  info->add_option("--frames", args->frames, "Clip length T (default: recipe, else 16)");
  info->add_option("--size", args->size, "Crop side S (default: recipe, else 112)");
  info->add_option("--width", args->width, "Width multiplier (default: recipe, else 1)");
  info->add_option("--clips", args->clips, "Clips to average GFLOPs over (default: 8 with SGS, else 1)");
  info->add_option("--bins", args->bins, "SGS networks: the cost when SGS keeps this many bins B' (the cost of a clip is a function of its B')");
  info->add_option("--weights", args->weights, "Weights: a file of tensors (torch.save, holo ckpt export) or a checkpoint/run directory");
  info->callback([args] { model_info(*args); });

  auto fargs = std::make_shared<ForwardArgs>();
  auto* forward = model->add_subcommand(
      "forward", "The network's outputs for an input, in eval mode (to compare with another implementation)");
  forward->add_option("target", fargs->net.target, "Recipe file or network name (`holo model list`)")->required();
  forward->add_option("--set", fargs->net.overrides, "Recipe override KEY=VALUE")->take_all();
  forward->add_option("--classes", fargs->net.classes, "Outputs of the head (default: recipe, else 400)");
  forward->add_option("--frames", fargs->net.frames, "Clip length T the network is built for");
  forward->add_option("--width", fargs->net.width, "Width multiplier");
  forward->add_option("--weights", fargs->net.weights, "Weights: a file of tensors or a checkpoint/run directory")
      ->required();
  forward->add_option("--input", fargs->input, "torch.save file of a dict with \"input\": N x 3 x T x H x W float")
      ->required();
  forward->add_option("--out", fargs->out, "Where to write a dict: logits (logits.K for more heads), features, "
                                           "and active_bins, gflops for SGS networks (torch.load reads it)")
      ->required();
  forward->callback([fargs] { model_forward(*fargs); });

  auto bo = std::make_shared<models::ModelBenchOptions>();
  auto names = std::make_shared<std::string>("r3d18,stc_resnet18,hatnet_r18,atfr_resnet3d,r3d18_atfr");
  auto json = std::make_shared<std::string>();
  auto* bench = app.get_subcommand("bench")->add_subcommand(
      "model", "Training clips/s: Holo vs the same networks in PyTorch (bench/model_baseline.py); "
               "SGS GFLOPs on low- vs high-motion clips");
  bench->add_option("--models", *names, "Comma-separated networks (`holo model list`)")->capture_default_str();
  bench->add_option("--batch", bo->batch(), "Clips per step")->capture_default_str();
  bench->add_option("--frames", bo->frames(), "Clip length T")->capture_default_str();
  bench->add_option("--size", bo->size(), "Crop side S")->capture_default_str();
  bench->add_option("--width", bo->width(), "Width multiplier of every network")->capture_default_str();
  bench->add_option("--classes", bo->classes(), "Outputs of the head")->capture_default_str();
  bench->add_option("--threads", bo->threads(), "Intra-op threads, both sides (the CPU side on CUDA)")
      ->capture_default_str();
  bench->add_option("--device", bo->device(), "Where both sides train: cpu, cuda or cuda:N")
      ->capture_default_str();
  bench->add_option("--precision", bo->precision(),
                    "fp32, or bf16 / fp16 (fp16 on CUDA only): forward under autocast, loss in float32")
      ->capture_default_str();
  bench->add_option("--iters", bo->iters(), "Timed steps")->capture_default_str();
  bench->add_option("--warmup", bo->warmup(), "Untimed steps first")->capture_default_str();
  bench->add_option("--python", bo->python(), "Python with PyTorch for the baseline; empty: none")
      ->capture_default_str();
  bench->add_option("--baseline", bo->baseline(), "The baseline script (default: the source tree's)");
  bench->add_option("--sgs-model", bo->sgs_model(), "Network with SGS for the GFLOPs part; empty: skip it")
      ->capture_default_str();
  bench->add_option("--sgs-baseline", bo->sgs_baseline_model(), "The same network without SGS")
      ->capture_default_str();
  bench->add_option("--sgs-clips", bo->sgs_clips(), "Synthetic clips per motion kind")->capture_default_str();
  bench->add_option("--seed", bo->seed(), "Seed of weights, inputs and clips")->capture_default_str();
  auto token_names = std::make_shared<std::string>();
  bench->add_option("--token-models", *token_names,
                    "Transformers to measure without token reduction, with ATS and with ToMe at matched GFLOPs "
                    "(e.g. deit_s,timesformer_s; --size is their frame side); empty: skip");
  bench->add_option("--token-rho", bo->token_rho(), "ATS's rho in that part: K_n = max(rho N_n, 8)")->capture_default_str();
  bench->add_option("--token-frames", bo->token_frames(), "Frames per clip of the video transformers in that part")
      ->capture_default_str();
  bench->add_option("--json", *json, "Also write the figures as JSON here");
  bench->callback([bo, names, token_names, json] {
    const auto split = [](const std::string& text) {
      std::vector<std::string> list;
      std::stringstream in(text);
      for (std::string n; std::getline(in, n, ',');) {
        if (!n.empty()) list.push_back(n);
      }
      return list;
    };
    bo->models(split(*names));
    bo->token_models(split(*token_names));
    const auto result = models::run_model_bench(*bo);
    std::cout << models::format_model_bench(result) << models::format_token_bench(result);
    if (!json->empty()) {
      std::ofstream out(*json);
      out << models::model_bench_json(result) << "\n";
      if (!out) throw IoError(*json + ": cannot write");
    }
  });
}

}  // namespace holo::cli
