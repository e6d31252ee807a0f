#include "train/mucon_task.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "train/precision.h"
#include "train/segmentation_loader.h"
#include "train/segmentation_metrics.h"
#include "train/viterbi.h"

namespace holo::train {

namespace F = torch::nn::functional;

namespace mucon {

namespace {
constexpr int64_t kTemplateWidth = 100;  // J (§9.3.5.2)
}  // namespace

torch::Tensor mask_template(const std::string& shape) {
  const int64_t j = kTemplateWidth;
  if (shape == "box") return torch::ones({j});
  if (shape == "bell") {
    const torch::Tensor n = torch::arange(j, torch::kFloat64) - (j - 1) / 2.0;
    const double sd = j / 5.0;
    return torch::exp(-0.5 * (n / sd).pow(2)).to(torch::kFloat32);
  }
  if (shape == "trapezoid") {
    // A quarter of the template rises from 0.5 in steps of 0.02, a quarter falls to 0.52.
    torch::Tensor t = torch::ones({j}, torch::kFloat64);
    const int64_t q = j / 4;
    const double step = 0.5 / static_cast<double>(q);
    for (int64_t i = 0; i < q; ++i) {
      t[i] = 0.5 + step * static_cast<double>(i);
      t[j - q + i] = 1.0 - step * static_cast<double>(i);
    }
    return t.to(torch::kFloat32);
  }
  throw Error("unknown MuCon mask template '" + shape + "' (box, bell, trapezoid)");
}

torch::Tensor masks(const torch::Tensor& lengths, int64_t frames, const torch::Tensor& templ, double overlap,
                    bool release, torch::Tensor* mask_lengths) {
  if (frames < 2) throw Error("MuCon's masks need at least 2 frames, not " + std::to_string(frames));
  const int64_t j = templ.size(0);
  const auto opts = lengths.options();
  torch::Tensor starts = lengths.cumsum(0) - lengths;
  const torch::Tensor grown = lengths * (1.0 + 2.0 * overlap);
  // The text's overlap grows a segment by overlap x its length on each side; the released code
  // shifts the grown segment back by only half of that (its masks overlap the next segment more).
  starts = starts - (release ? grown * (overlap / 2.0) : lengths * overlap);
  if (mask_lengths) *mask_lengths = grown;
  torch::Tensor u;  // 0-based sampling points in the template, M x T
  if (release) {
    const torch::Tensor t = torch::arange(frames, opts) * (static_cast<double>(frames) / static_cast<double>(frames - 1));
    u = (t.unsqueeze(0) - starts.unsqueeze(1)) / grown.unsqueeze(1) * static_cast<double>(j - 1);
  } else {
    const torch::Tensor t = torch::arange(1, frames + 1, opts);
    u = (t.unsqueeze(0) - starts.unsqueeze(1)) / grown.unsqueeze(1) * static_cast<double>(j) - 1.0;
  }
  // Linear kernel (9.9): the two template points around u, zero outside the template.
  const torch::Tensor below = u.detach().floor();
  const torch::Tensor frac = u - below;
  const torch::Tensor valid = ((below >= -1) & (below <= j - 1)).to(opts.dtype());
  const torch::Tensor padded = torch::cat({torch::zeros({1}, opts), templ.to(opts), torch::zeros({1}, opts)});
  const torch::Tensor a = (below.clamp(-1, j - 1) + 1).to(torch::kInt64);
  const torch::Tensor left = padded.index({a}), right = padded.index({a + 1});
  return (left * (1 - frac) + right * frac) * valid;
}

Losses losses(const torch::Tensor& y, const models::MuConSegments& segments, const std::vector<int64_t>& transcript,
              const std::vector<int64_t>& labels, const LossOptions& o) {
  const int64_t frames = y.size(0), classes = y.size(1);
  const auto m = static_cast<int64_t>(transcript.size());
  const auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(y.device());
  const torch::Tensor actions = torch::tensor(transcript, torch::kInt64).to(y.device());
  const torch::Tensor with_end = torch::cat({actions, torch::full({1}, classes, long_opts)});
  Losses l;
  l.transcript = F::nll_loss(segments.log_probs, with_end, F::NLLLossFuncOptions().reduction(torch::kSum));
  // L_mu (9.1-9.3): the masked mean of Y per segment against its ground-truth action.
  const torch::Tensor absolute = static_cast<double>(frames) * torch::softmax(segments.log_lengths, 0);
  torch::Tensor grown;
  const torch::Tensor w = masks(absolute, frames, mask_template(o.shape).to(y.device()), o.overlap, o.release, &grown);
  const torch::Tensor g = w.matmul(y) / grown.unsqueeze(1);
  const torch::Tensor per_segment = F::nll_loss(torch::log_softmax(g, 1), actions,
                                               F::NLLLossFuncOptions().reduction(torch::kNone));
  l.consistency = o.release ? per_segment.mean() : per_segment.sum();
  const torch::Tensor& lg = segments.log_lengths;
  l.length = (torch::relu(lg - o.length_width) + torch::relu(-o.length_width - lg)).sum();
  // L_s (9.12-9.13) on log-probabilities, the previous frame detached as MS-TCN does; the text
  // truncates every entry at tau^2 = 16, the released code the mean.
  if (frames > 1) {
    const torch::Tensor lp = torch::log_softmax(y, 1);
    const torch::Tensor d2 = (lp.narrow(0, 1, frames - 1) - lp.detach().narrow(0, 0, frames - 1)).pow(2);
    l.smoothing = o.release ? d2.mean().clamp(0, 16) : d2.clamp(0, 16).mean();
  } else {
    l.smoothing = torch::zeros({}, y.options());
  }
  if (!labels.empty()) {
    l.classification = F::cross_entropy(y, torch::tensor(labels, torch::kInt64).to(y.device()));
    std::vector<double> runs;
    for (size_t t = 0; t < labels.size(); ++t) {
      if (t == 0 || labels[t] != labels[t - 1]) runs.push_back(0);
      runs.back() += 1;
    }
    if (static_cast<int64_t>(runs.size()) != m) throw Error("MuCon: the transcript does not match the frame labels");
    const torch::Tensor relative = torch::tensor(runs, torch::kFloat64).to(y.options()) / static_cast<double>(frames);
    // §9.3.7: the text compares relative log lengths, the released code relative lengths.
    l.supervised_length = o.release ? F::mse_loss(torch::softmax(lg, 0), relative) : F::mse_loss(lg, relative.log());
  }
  return l;
}

}  // namespace mucon

namespace {

/// Steps the decoder may take at inference before it has emitted the end symbol.
constexpr int64_t kMaxDecodingSteps = 100;

mucon::LossOptions loss_options(const Recipe& r) {
  mucon::LossOptions o;
  o.shape = r.model.mucon_template;
  o.overlap = r.model.mucon_overlap;
  o.release = r.model.mucon_variant == "release";
  o.length_width = r.task.length_width;
  return o;
}

/// Every video of `data` long enough for MuCon's poolings, or an IoError naming the first that is not.
void check_lengths(const pipeline::SegmentationDataset& data, const std::string& bundle, const models::MuConOptions& o) {
  check_min_frames(data, bundle, int64_t{1} << o.pool_after.size(),
                   "MuCon's " + std::to_string(o.pool_after.size()) + " poolings (model.mucon_pool_after)");
}

/// The best alignment of `transcript` to `log_probs` (T x N, CPU float) with a Poisson length
/// model of mean `means[m]` for segment m (9.15), as a label per frame.
std::vector<int64_t> align(const torch::Tensor& log_probs, const std::vector<int64_t>& transcript,
                           std::vector<double> means) {
  const int64_t frames = log_probs.size(0), m = static_cast<int64_t>(transcript.size());
  // One column per segment, so that each segment has its own length model.
  const torch::Tensor columns =
      log_probs.index_select(1, torch::tensor(transcript, torch::kInt64)).contiguous();  // T x M
  double longest = 0;
  for (double& mean : means) {
    mean = std::max(mean, 1.0);
    longest = std::max(longest, mean);
  }
  const int64_t max_length = std::min<int64_t>(
      frames + 1, std::max<int64_t>({2000, static_cast<int64_t>(2 * longest) + 1, frames / m + 2}));
  std::vector<int64_t> segments(static_cast<size_t>(m));
  std::iota(segments.begin(), segments.end(), 0);
  const seg::Alignment a = seg::viterbi_align(columns.data_ptr<float>(), frames, m, segments,
                                              seg::PoissonLengthModel(std::move(means), max_length));
  std::vector<int64_t> labels;
  labels.reserve(static_cast<size_t>(frames));
  for (int64_t s : a.labels) labels.push_back(transcript[static_cast<size_t>(s)]);
  return labels;
}

/// Poisson means for the segments of `transcript` from their relative lengths: the text's one
/// per segment (9.15), or the released code's default, the mean of each class's segments.
std::vector<double> length_means(const std::vector<int64_t>& transcript, const std::vector<double>& relative,
                                 int64_t frames, bool release) {
  std::vector<double> means;
  for (double r : relative) means.push_back(r * static_cast<double>(frames));
  if (release) {
    std::map<int64_t, std::pair<double, int>> per_class;
    for (size_t i = 0; i < transcript.size(); ++i) {
      per_class[transcript[i]].first += means[i];
      per_class[transcript[i]].second += 1;
    }
    for (size_t i = 0; i < transcript.size(); ++i) {
      const auto& c = per_class[transcript[i]];
      means[i] = c.first / c.second;
    }
  }
  return means;
}

std::vector<double> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat64).cpu().contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

/// The decoded segments as a transcript: consecutive repeats of a symbol merged into one segment
/// (their relative lengths added), at most `frames` segments, relative lengths summing to 1.
void as_transcript(std::vector<int64_t>& symbols, std::vector<double>& relative, int64_t frames) {
  std::vector<int64_t> merged;
  std::vector<double> lengths;
  for (size_t i = 0; i < symbols.size(); ++i) {
    if (!merged.empty() && merged.back() == symbols[i]) {
      lengths.back() += relative[i];
    } else {
      merged.push_back(symbols[i]);
      lengths.push_back(relative[i]);
    }
  }
  if (static_cast<int64_t>(merged.size()) > frames) {
    merged.resize(static_cast<size_t>(frames));
    lengths.resize(static_cast<size_t>(frames));
  }
  const double sum = std::accumulate(lengths.begin(), lengths.end(), 0.0);
  for (double& l : lengths) l /= sum;
  symbols = std::move(merged);
  relative = std::move(lengths);
}

/// The inference variants of one video (§9.3.8): frame labels of each.
struct Inferred {
  std::vector<int64_t> y, s, full, align;
};

Inferred infer(models::MuConNet& net, const pipeline::SegmentationVideo& v, const Runtime& rt, bool release,
               bool with_alignment) {
  const auto frames = static_cast<int64_t>(v.labels.size());
  torch::Tensor z, y;
  models::MuConSegments decoded, forced;
  {
    AutocastGuard autocast(rt.precision, rt.device);
    z = net->encode(video_features(v, rt.device));
    y = net->classify(z, frames);
    decoded = net->decode_greedy(z, kMaxDecodingSteps);
    if (with_alignment) forced = net->decode_teacher(z, v.transcript());
  }
  const torch::Tensor log_probs = torch::log_softmax(y.to(torch::kFloat32), 1).cpu().contiguous();
  Inferred out;
  const torch::Tensor arg = log_probs.argmax(1).contiguous();
  out.y.assign(arg.data_ptr<int64_t>(), arg.data_ptr<int64_t>() + frames);
  std::vector<int64_t> transcript = decoded.transcript;
  if (transcript.empty()) {
    // A decoder that emits the end symbol first predicts no segment: MuCon-S and MuCon-full fall
    // back to the frame classifier.
    out.s = out.full = out.y;
  } else {
    std::vector<double> relative = to_vector(torch::softmax(decoded.log_lengths.to(torch::kFloat32), 0));
    as_transcript(transcript, relative, frames);
    // MuCon-S: segment m covers the frames between the rounded cumulative lengths.
    double end = 0;
    int64_t from = 0;
    for (size_t m = 0; m < transcript.size(); ++m) {
      end += relative[m] * static_cast<double>(frames);
      const int64_t to = m + 1 == transcript.size() ? frames : std::min<int64_t>(frames, std::llround(end));
      for (int64_t t = from; t < to; ++t) out.s.push_back(transcript[m]);
      from = std::max(from, to);
    }
    out.full = align(log_probs, transcript, length_means(transcript, relative, frames, release));
  }
  if (with_alignment) {
    const std::vector<int64_t> given = v.transcript();
    const std::vector<double> relative = to_vector(torch::softmax(forced.log_lengths.to(torch::kFloat32), 0));
    out.align = align(log_probs, given, length_means(given, relative, frames, release));
  }
  return out;
}

/// The meters of every variant over this rank's share of `data` (i % ranks == rank), summed over
/// ranks; `chosen`'s predictions go to `predictions` when it is not empty.
std::map<std::string, seg::SegmentationMeter> score(models::MuConNet& net, const pipeline::SegmentationDataset& data,
                                                    const Recipe& recipe, const Runtime& rt,
                                                    const std::string& predictions) {
  torch::NoGradGuard no_grad;
  const bool was_training = net->is_training();
  net->eval();
  const std::set<std::string> background(recipe.data.background.begin(), recipe.data.background.end());
  const std::string& chosen = recipe.task.inference;
  const bool with_alignment = chosen == "align";
  std::map<std::string, seg::SegmentationMeter> meters;
  for (const char* k : {"y", "s", "full", "align"}) {
    if (std::string(k) != "align" || with_alignment) meters.emplace(k, seg::SegmentationMeter(background));
  }
  const auto& videos = data.videos();
  const auto& names = data.class_names();
  const bool release = recipe.model.mucon_variant == "release";
  for (size_t i = static_cast<size_t>(rt.rank); i < videos.size(); i += static_cast<size_t>(rt.world_size)) {
    const Inferred p = infer(net, videos[i], rt, release, with_alignment);
    const std::map<std::string, const std::vector<int64_t>*> of = {
        {"y", &p.y}, {"s", &p.s}, {"full", &p.full}, {"align", &p.align}};
    for (auto& [k, meter] : meters) add_prediction(meter, videos[i], names, *of.at(k), k == chosen ? predictions : "");
  }
  if (was_training) net->train();
  std::map<std::string, seg::SegmentationMeter> all;
  for (auto& [k, meter] : meters) {
    auto it = all.emplace(k, seg::SegmentationMeter(background)).first;
    it->second.merge_sums(all_reduce_stats(meter.sums(), *rt.comm, rt.device));
  }
  return all;
}

/// The other variants' metrics, prefixed by their names (y_mof, s_edit, ...).
Stats prefixed_others(const std::map<std::string, seg::SegmentationMeter>& meters, const std::string& chosen) {
  Stats out;
  for (const auto& [k, meter] : meters) {
    if (k == chosen) continue;
    for (const auto& [name, v] : meter.summary()) out[k + "_" + name] = v;
  }
  return out;
}

}  // namespace

MuConTraining::MuConTraining(const Recipe& recipe) : recipe_(recipe) {
  if (recipe.data.dataset != "mstcn") {
    throw RecipeError("[data]", 0, 0, "data.dataset",
                      "MuCon trains on per-frame features: set data.dataset = \"mstcn\" (MS-TCN's layout), not \"" +
                          recipe.data.dataset + "\"");
  }
  if (recipe.model.name != "mucon") {
    throw RecipeError("[model]", 0, 0, "model.name", "is \"" + recipe.model.name + "\", not \"mucon\"");
  }
  if (recipe.task.supervision == "set") {
    throw RecipeError("[task]", 0, 0, "task.supervision",
                      "MuCon learns from transcripts, frame labels or both (transcript, full, mixed), not action sets; "
                      "model.name = \"sct\" learns from sets");
  }
  if (recipe.model.mucon_hidden % 32 != 0) {
    throw RecipeError("[model]", 0, 0, "model.mucon_hidden",
                      "must be a multiple of 32, the group norm's groups (thesis 9.4.2), not " +
                          std::to_string(recipe.model.mucon_hidden));
  }
  for (int64_t p : recipe.model.mucon_pool_after) {
    if (p >= recipe.model.mucon_layers) {
      throw RecipeError("[model]", 0, 0, "model.mucon_pool_after",
                        "names layer " + std::to_string(p) + ", but model.mucon_layers = " +
                            std::to_string(recipe.model.mucon_layers) + " has layers 0.." +
                            std::to_string(recipe.model.mucon_layers - 1));
    }
  }
}

std::string MuConTraining::describe() const { return "mucon on segmentation (" + recipe_.task.supervision + ")"; }

void MuConTraining::setup(const Runtime& rt) {
  train_ = std::make_unique<pipeline::SegmentationDataset>(segmentation_data_options(recipe_, recipe_.data.train));
  if (validates()) {
    val_ = std::make_unique<pipeline::SegmentationDataset>(segmentation_data_options(recipe_, recipe_.data.val));
  }
  hash_ = content_hash(*train_);
  const auto o = models::mucon_options(recipe_.model, train_->feature_dim(), static_cast<int64_t>(train_->class_names().size()));
  check_lengths(*train_, recipe_.data.train, o);
  if (val_) {
    if (val_->feature_dim() != o.in_dim) {
      throw IoError("the validation split " + recipe_.data.val + " has features of dimension " +
                    std::to_string(val_->feature_dim()) + ", the training split " + std::to_string(o.in_dim));
    }
    check_lengths(*val_, recipe_.data.val, o);
  }
  const size_t n = train_->videos().size();
  full_.assign(n, recipe_.task.supervision == "full");
  if (recipe_.task.supervision == "mixed") {
    // The fully labelled videos: the first full_fraction of an order drawn from run.seed.
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(static_cast<uint64_t>(recipe_.run.seed) * 7919u + 17u);
    std::shuffle(order.begin(), order.end(), rng);
    const auto k = static_cast<size_t>(std::llround(recipe_.task.full_fraction * static_cast<double>(n)));
    for (size_t i = 0; i < k; ++i) full_[order[i]] = true;
  }
  net_ = models::MuConNet(o);
  net_->to(rt.device);
  spdlog::info("mucon: {} training videos ({} frames, {} with frame labels), {} classes, features of dimension {}",
               n, train_->frames(), std::count(full_.begin(), full_.end(), true), o.classes, o.in_dim);
}

std::unique_ptr<StepLoader> MuConTraining::train_loader(const Runtime& rt) {
  return make_video_loader(train_->videos(), recipe_.loader.batch_size, rt.rank, rt.world_size,
                           static_cast<uint64_t>(recipe_.run.seed));
}

torch::Tensor MuConTraining::train_loss(const StepBatch& batch, const Runtime& rt, Stats& stats) {
  const mucon::LossOptions lo = loss_options(recipe_);
  const double alpha = recipe_.task.length_weight, beta = recipe_.task.smoothing;
  torch::Tensor total = torch::zeros({}, torch::TensorOptions().device(rt.device));
  for (int64_t i : batch.samples) {
    const auto& v = train_->videos()[static_cast<size_t>(i)];
    const auto frames = static_cast<int64_t>(v.labels.size());
    const std::vector<int64_t> transcript = v.transcript();
    torch::Tensor y;
    models::MuConSegments segments;
    {
      AutocastGuard autocast(rt.precision, rt.device);
      const torch::Tensor z = net_->encode(video_features(v, rt.device));
      y = net_->classify(z, frames);
      segments = net_->decode_teacher(z, transcript);
    }
    y = y.to(torch::kFloat32);
    segments.log_probs = segments.log_probs.to(torch::kFloat32);
    segments.log_lengths = segments.log_lengths.to(torch::kFloat32);
    const bool full = full_[static_cast<size_t>(i)];
    const mucon::Losses l = mucon::losses(y, segments, transcript, full ? v.labels : std::vector<int64_t>{}, lo);
    torch::Tensor loss = l.consistency + l.transcript + alpha * l.length + beta * l.smoothing;
    if (full) loss = loss + l.classification + l.supervised_length;
    total = total + loss;
    const auto f = static_cast<double>(frames);
    stats["count"] += f;
    stats["loss"] += loss.item<double>() * f;
    stats["loss_t"] += l.transcript.item<double>() * f;
    stats["loss_mu"] += l.consistency.item<double>() * f;
    stats["loss_l"] += l.length.item<double>() * f;
    stats["loss_s"] += l.smoothing.item<double>() * f;
    stats["frame_acc"] +=
        (y.argmax(1).cpu() == torch::tensor(v.labels, torch::kInt64)).sum().item<double>();
  }
  return total / static_cast<double>(batch.samples.size());
}

Validation MuConTraining::validate(const Runtime& rt) {
  const auto meters = score(net_, *val_, recipe_, rt, "");
  const auto& chosen = meters.at(recipe_.task.inference);
  Stats m = chosen.summary();
  for (const auto& [k, v] : prefixed_others(meters, recipe_.task.inference)) m[k] = v;
  m["videos"] = static_cast<double>(chosen.videos());
  return {m, {}};
}

EvalResult evaluate_mucon(const Recipe& recipe, const std::string& checkpoint, const std::string& out_dir,
                          bool save_predictions) {
  MuConTraining task(recipe);  // the recipe's checks
  const std::string& split = recipe.eval.split;
  const std::string bundle = segmentation_eval_bundle(recipe);
  const Runtime rt = start_runtime(recipe);
  const pipeline::SegmentationDataset data(segmentation_data_options(recipe, bundle));
  const auto o = models::mucon_options(recipe.model, data.feature_dim(), static_cast<int64_t>(data.class_names().size()));
  check_lengths(data, bundle, o);
  models::MuConNet net(o);
  net->to(rt.device);
  const auto loaded = ckpt::Manager::load_newest_valid(checkpoint, rt.rank, rt.world_size);
  load_module_state("model.", *net, loaded.replicated, loaded.path);
  EvalResult result;
  result.predictions_dir = prepare_predictions(out_dir, split, save_predictions, rt);
  const auto meters = score(net, data, recipe, rt, result.predictions_dir);
  report_segmentation_eval(meters.at(recipe.task.inference), prefixed_others(meters, recipe.task.inference),
                           loaded.path, loaded.step, split, bundle, out_dir, rt, result);
  return result;
}

}  // namespace holo::train
