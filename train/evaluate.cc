// Evaluation with multi-view testing and feature extraction (train/trainer.h): a trained video
// network over every video of a split.
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/run_dir.h"
#include "dist/communicator.h"
#include "core/progress.h"
#include "pipeline/clip.h"
#include "pipeline/decoder.h"
#include "pipeline/feature_store.h"
#include "pipeline/sampling.h"
#include "pipeline/segmentation_data.h"
#include "train/precision.h"
#include "pipeline/loader.h"
#include "train/table.h"
#include "train/trainer.h"
#include "train/video_task.h"

namespace holo::train {
namespace fs = std::filesystem;
namespace {

/// The model of `checkpoint` run over every video of `split` with the test views.
struct ScoredSplit {
  VideoModel model;
  VideoScores videos;
};

ScoredSplit score_checkpoint(const Recipe& recipe, const std::string& checkpoint, const std::string& split,
                             const std::string& label) {
  ScoredSplit out{load_video_model(recipe, checkpoint, split), {}};
  VideoModel& m = out.model;
  pipeline::ClipLoader loader(m.dataset, recipe, pipeline::LoaderMode::kTest, m.rt.rank, m.rt.world_size);
  if (m.rt.world_size > 1) loader.defer_bad_fraction_check(true);  // as for validation
  loader.set_epoch(0);
  out.videos = score_videos(*m.net, *m.task, loader, m.rt, label + " " + split);
  return out;
}

/// An .npy file of a float32 matrix, as numpy.load reads it.
std::string npy_float32(const torch::Tensor& m) {
  const torch::Tensor t = m.to(torch::kCPU, torch::kFloat32).contiguous();
  pipeline::NpyMatrix out{t.size(0), t.size(1), {}};
  out.values.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  return pipeline::npy_bytes(out);
}

std::string csv_cell(const std::string& cell) {
  if (cell.find_first_of(",\"\n") == std::string::npos) return cell;
  std::string q = "\"";
  for (char c : cell) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

EvalResult evaluate_videos(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                    bool save_predictions) {
  const std::string split = recipe.eval.split;
  ScoredSplit scored = score_checkpoint(recipe, checkpoint, split, "eval");
  VideoModel& ctx = scored.model;
  const VideoScores& vs = scored.videos;
  const std::string& path = ctx.path;
  const bool multilabel = ctx.task->multilabel();
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
  if (save_predictions && ctx.rt.rank == 0) {
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
    result.table = "checkpoint " + path + " (step " + std::to_string(ctx.step) + "), split " + split +
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
  result.table = "checkpoint " + path + " (step " + std::to_string(ctx.step) + "), split " + split + ", " +
                 std::to_string(recipe.sampling.test_clips) + " clips x " +
                 std::to_string(recipe.sampling.test_crops) + " crops\n" + table.str();
  if (ctx.rt.rank == 0) {
    fs::create_directories(out_dir);
    nlohmann::json j = {{"checkpoint", path}, {"step", ctx.step}, {"split", split},
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
  VideoModel& ctx = scored.model;
  const VideoScores& vs = scored.videos;
  // Every rank holds every video's features after the gather; each writes its share.
  if (ctx.rt.rank == 0 && fs::exists(out)) fs::remove_all(out);
  ctx.rt.comm->barrier();
  {
    pipeline::FeatureWriter writer(out, ctx.rt.rank);
    for (size_t i = ctx.rt.rank; i < vs.records.size(); i += ctx.rt.world_size) {
      writer.write(ctx.dataset->records()[vs.records[i]].id, vs.features[static_cast<int64_t>(i)]);
    }
    writer.close();
  }
  ctx.rt.comm->barrier();
  if (ctx.rt.rank == 0) {
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

int64_t extract_frames(const Recipe& recipe, const std::string& checkpoint, const std::string& split,
                       const std::string& out) {
  VideoModel m = load_video_model(recipe, checkpoint, split);
  const auto& records = m.dataset->records();
  const auto n = static_cast<int64_t>(records.size());
  if (m.rt.rank == 0 && fs::exists(out)) fs::remove_all(out);
  m.rt.comm->barrier();
  const int64_t window = recipe.sampling.num_frames, stride = recipe.sampling.stride;
  // Output frames per pass: their windows are decoded once, as one run of frames.
  constexpr int64_t kChunk = 32;
  torch::NoGradGuard no_grad;
  m.net->eval();
  {
    pipeline::FeatureWriter writer(out, m.rt.rank);
    pipeline::DecoderCache cache(4, pipeline::DecoderOptions{});
    holo::Progress progress({"extract per frame", (n + m.rt.world_size - 1) / m.rt.world_size, "videos"});
    for (int64_t r = m.rt.rank; r < n; r += m.rt.world_size) {
      const int64_t frames = pipeline::sampling_frames(records[r], cache.get(records[r].path).info());
      std::vector<torch::Tensor> features;
      for (int64_t f0 = 0; f0 < frames; f0 += kChunk) {
        const int64_t f1 = std::min(frames, f0 + kChunk);
        // The window of frame t: `window` frames `stride` apart, centred on t, clamped to the
        // video (as a test clip is).
        const int64_t lo = std::max<int64_t>(0, f0 - (window / 2) * stride);
        const int64_t hi = std::min(frames - 1, f1 - 1 + (window - 1 - window / 2) * stride);
        pipeline::ClipRequest req = pipeline::test_clip(recipe, frames, 0);
        req.frames.clear();
        for (int64_t f = lo; f <= hi; ++f) req.frames.push_back(f);
        const torch::Tensor run = pipeline::read_clip(records[r], req, &cache);  // C x (hi - lo + 1) x H x W
        std::vector<torch::Tensor> clips;
        for (int64_t t = f0; t < f1; ++t) {
          std::vector<int64_t> idx;
          for (int64_t k = 0; k < window; ++k) {
            idx.push_back(std::clamp<int64_t>(t + (k - window / 2) * stride, 0, frames - 1) - lo);
          }
          clips.push_back(run.index_select(1, torch::tensor(idx, torch::kInt64)));
        }
        models::NetworkOutput o;
        {
          AutocastGuard autocast(m.rt.precision, m.rt.device);
          o = m.net->forward_all(torch::stack(clips).to(m.rt.device));
        }
        features.push_back(o.features.to(torch::kFloat32).cpu());
      }
      writer.write(records[r].id, torch::cat(features));  // frames x D
      progress.advance();
    }
    progress.finish();
    writer.close();
  }
  m.rt.comm->barrier();
  if (m.rt.rank == 0) pipeline::write_feature_index(out);
  return n;
}

}  // namespace holo::train
