// holo metrics segmentation --gt DIR --pred DIR --mapping FILE | holo bench segmentation | holo bench viterbi
// | holo model info mstcn|mucon|RECIPE
// Temporal action segmentation's commands (docs/segmentation.md).

#include <CLI/CLI.hpp>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include "core/recipe.h"
#include "launcher/cli.h"
#include "models/mstcn.h"
#include "models/mucon.h"
#include "models/sct.h"
#include "pipeline/segmentation_data.h"
#include "train/bench.h"
#include "train/registry.h"
#include "train/segmentation_metrics.h"
#include "train/table.h"

namespace holo::cli {

bool segmentation_model_info(const std::string& target, const std::vector<std::string>& overrides, int64_t classes) {
  const bool is_file = std::filesystem::exists(target);
  if (!is_file && train::segmentation_networks().find(target) == nullptr) return false;
  const Recipe r = is_file ? load_recipe(target, overrides)
                           : parse_recipe("[model]\nname = \"" + target + "\"\n", target, overrides);
  if (train::segmentation_networks().find(r.model.name) == nullptr) return false;
  int64_t in_dim = 2048, n = classes > 0 ? classes : 48;
  std::string from = classes > 0 ? "--classes" : "D = 2048 and 48 classes, the defaults";
  if (is_file && r.data.dataset == "mstcn" && classes <= 0) {
    try {
      pipeline::SegmentationDataOptions d;
      d.root = r.data.root;
      d.bundle = r.data.train;
      d.sample_rate = r.data.sample_rate;
      d.background = {r.data.background.begin(), r.data.background.end()};
      const pipeline::SegmentationDataset data(d);
      in_dim = data.feature_dim();
      n = static_cast<int64_t>(data.class_names().size());
      from = "the recipe's training split";
    } catch (const std::exception& e) {
      from += std::string(": the training split cannot be read here (") + e.what() + ")";
    }
  }
  if (r.model.name == "sct") {
    const models::SctNet net(models::sct_options(r.model, in_dim, n));
    std::cout << "model " << target << " (sct, " << r.model.sct_layers << " layers, hidden " << r.model.sct_hidden
              << ", " << r.model.sct_pool_after.size() << " poolings of 2), features D = " << in_dim << ", " << n
              << " classes (" << from << ")\n\n";
    TextTable table({"part", "params"});
    int64_t total = 0;
    for (const auto& child : net->named_children()) {
      int64_t params = 0;
      for (const auto& p : child.value()->parameters()) params += p.numel();
      if (params == 0) continue;
      table.add_row({child.key(), std::to_string(params)});
      total += params;
    }
    table.add_row({"total", std::to_string(total)});
    std::cout << table.str();
    return true;
  }
  if (r.model.name == "mucon") {
    const models::MuConOptions o = models::mucon_options(r.model, in_dim, n);
    std::cout << "model " << target << " (mucon, backbone of " << o.layers << " layers, hidden " << o.hidden << ", "
              << o.pool_after.size() << " poolings of 2), features D = " << in_dim << ", " << n << " classes (" << from
              << ")\n\n";
    TextTable table({"part", "params"});
    int64_t total = 0;
    for (const auto& p : models::mucon_sizes(o)) {
      table.add_row({p.name, std::to_string(p.params)});
      total += p.params;
    }
    table.add_row({"total", std::to_string(total)});
    std::cout << table.str();
    return true;
  }
  models::MultiStageTcnOptions o;
  o.stages = r.model.tcn_stages;
  o.layers = r.model.tcn_layers;
  o.channels = r.model.tcn_channels;
  o.in_dim = in_dim;
  o.classes = n;
  std::cout << "model " << target << " (mstcn, " << o.stages << " stages x " << o.layers << " layers x " << o.channels
            << " maps), features D = " << o.in_dim << ", " << o.classes << " classes (" << from
            << "); GFLOPs = multiply-accumulates / 1e9\n\n";
  TextTable table({"stage", "input", "params", "GFLOPs per 1000 frames"});
  int64_t total = 0;
  double total_gflops = 0;
  for (const auto& c : models::mstcn_costs(o)) {
    table.add_row({c.name, std::to_string(c.input), std::to_string(c.params), TextTable::number(c.gflops_per_1000_frames, 3)});
    total += c.params;
    total_gflops += c.gflops_per_1000_frames;
  }
  table.add_row({"total", "", std::to_string(total), TextTable::number(total_gflops, 3)});
  std::cout << table.str();
  return true;
}

void add_segmentation_commands(CLI::App& app) {
  auto* metrics = app.add_subcommand("metrics", "Metrics of predictions written by any tool");
  metrics->require_subcommand(1);
  struct SegArgs {
    std::string gt, pred, mapping, background, bundle;
  };
  auto seg = std::make_shared<SegArgs>();
  auto* segmentation = metrics->add_subcommand(
      "segmentation", "MoF, Edit, F1@{10,25,50}, IoD and matching score of frame-label files (groundTruth format)");
  segmentation->add_option("--gt", seg->gt, "Folder of ground-truth files, <video>.txt, one label per frame")
      ->required();
  segmentation->add_option("--pred", seg->pred, "Folder of predictions under the same names")->required();
  segmentation->add_option("--mapping", seg->mapping, "mapping.txt: '<id> <name>' lines")->required();
  segmentation->add_option("--bundle", seg->bundle,
                           "Only the videos of this split file (<video>.txt lines, e.g. splits/test.split1.bundle)");
  segmentation->add_option("--bg", seg->background,
                           "Background labels, comma-separated, left out of Edit, F1 and IoD (none by default)");
  segmentation->callback([seg] {
    std::set<std::string> background;
    std::stringstream list(seg->background);
    for (std::string label; std::getline(list, label, ',');) {
      if (!label.empty()) background.insert(label);
    }
    const auto meter = train::seg::evaluate_segmentation_dirs(seg->gt, seg->pred, seg->mapping, background, seg->bundle);
    TextTable table({"metric", "value"});
    table.add_row({"videos", std::to_string(meter.videos())});
    table.add_row({"frames", std::to_string(meter.frames())});
    table.add_row({"MoF", TextTable::number(meter.mof(), 2)});
    table.add_row({"Edit", TextTable::number(meter.edit(), 2)});
    for (const auto& [k, v] : meter.f1()) {
      table.add_row({"F1@" + std::to_string(static_cast<int>(std::lround(k * 100))), TextTable::number(v, 2)});
    }
    table.add_row({"IoD", TextTable::number(meter.iod(), 2)});
    table.add_row({"matching score", TextTable::number(meter.matching(), 2)});
    std::cout << table.str();
  });

  auto sb = std::make_shared<train::SegmentationBenchOptions>();
  auto* segb = app.get_subcommand("bench")->add_subcommand(
      "segmentation", "MS-TCN or MuCon training steps/s against PyTorch twins of their releases, same input and threads");
  segb->add_option("--model", sb->model, "mstcn or mucon")->check(CLI::IsMember({"mstcn", "mucon"}))->capture_default_str();
  segb->add_option("--frames", sb->frames, "Video lengths in frames (one video per step), one row each")
      ->delimiter(',')->capture_default_str();
  segb->add_option("--dim", sb->dim, "Feature dimension")->capture_default_str();
  segb->add_option("--classes", sb->classes, "Classes")->capture_default_str();
  segb->add_option("--stages", sb->stages, "MS-TCN stages")->capture_default_str();
  segb->add_option("--layers", sb->layers, "Dilated layers per stage")->capture_default_str();
  segb->add_option("--channels", sb->channels, "Feature maps")->capture_default_str();
  segb->add_option("--hidden", sb->mucon_hidden, "MuCon: hidden size D'")->capture_default_str();
  segb->add_option("--backbone-layers", sb->mucon_layers, "MuCon: dilated layers of the backbone")->capture_default_str();
  segb->add_option("--segments", sb->segments, "MuCon: segments of the video's transcript")->capture_default_str();
  segb->add_option("--threads", sb->threads, "Intra-op threads, both sides")->capture_default_str();
  segb->add_option("--iters", sb->iters, "Timed steps; the median is taken")->capture_default_str();
  segb->add_option("--warmup", sb->warmup, "Untimed steps first")->capture_default_str();
  segb->add_option("--python", sb->python, "Python with PyTorch for the baseline; empty: none")->capture_default_str();
  segb->add_option("--json", sb->json, "Also write the rows to this JSON file");
  segb->callback([sb] { train::run_segmentation_bench(*sb); });

  auto vb = std::make_shared<train::ViterbiBenchOptions>();
  auto* viterbi = app.get_subcommand("bench")->add_subcommand(
      "viterbi", "Viterbi alignment with a Poisson length model: frames/s against the same in numpy");
  viterbi->add_option("--frames", vb->frames, "Video lengths in frames, one row each")->delimiter(',')->capture_default_str();
  viterbi->add_option("--segments", vb->segments, "Transcript length")->capture_default_str();
  viterbi->add_option("--classes", vb->classes, "Classes of the frame scores")->capture_default_str();
  viterbi->add_option("--max-length", vb->max_length, "Longest segment of the length model (L)")->capture_default_str();
  viterbi->add_option("--repeat", vb->repeat, "Alignments per side; the median is taken")->capture_default_str();
  viterbi->add_option("--seed", vb->seed, "Seed of the frame scores")->capture_default_str();
  viterbi->add_option("--python", vb->python, "Python with numpy for the baseline; empty: none")->capture_default_str();
  viterbi->add_option("--json", vb->json, "Also write the rows to this JSON file");
  viterbi->callback([vb] { train::run_viterbi_bench(*vb); });
}

}  // namespace holo::cli
