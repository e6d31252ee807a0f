// The recipe schema: one entry per key, bound to its option struct member. Defaults come from
// the member initialisers in recipe.h, so there is exactly one place for each.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/recipe.h"
#include "core/registry.h"

namespace holo {
namespace {

template <class T>
constexpr ValueType value_type() {
  if constexpr (std::is_same_v<T, bool>) return ValueType::kBool;
  if constexpr (std::is_same_v<T, int64_t>) return ValueType::kInt;
  if constexpr (std::is_same_v<T, double>) return ValueType::kFloat;
  if constexpr (std::is_same_v<T, std::string>) return ValueType::kString;
  if constexpr (std::is_same_v<T, std::vector<int64_t>>) return ValueType::kIntList;
  if constexpr (std::is_same_v<T, std::vector<double>>) return ValueType::kFloatList;
  if constexpr (std::is_same_v<T, std::vector<std::string>>) return ValueType::kStringList;
}

/// Chainable description of one key while the schema is built.
struct KeyBuilder {
  KeyDef def;
  KeyBuilder& range(double lo, double hi) {
    def.min = lo;
    def.max = hi;
    return *this;
  }
  KeyBuilder& at_least(double lo) {
    def.min = lo;
    return *this;
  }
  KeyBuilder& choices(std::vector<std::string> c) {
    def.choices = std::move(c);
    return *this;
  }
  /// The key's choices are the names its registries hold (core/registry.h).
  KeyBuilder& registered() {
    def.registered = true;
    return *this;
  }
  KeyBuilder& path() {
    def.path_like = true;
    return *this;
  }
  KeyBuilder& form(std::string description, std::function<std::string(const std::string&)> check) {
    def.form = std::move(description);
    def.check_form = std::move(check);
    return *this;
  }
};

class SchemaBuilder {
 public:
  template <class S, class T>
  KeyBuilder& key(const std::string& path, S Recipe::*section, T S::*field, std::string doc) {
    KeyBuilder b;
    b.def.path = path;
    b.def.type = value_type<T>();
    b.def.doc = std::move(doc);
    b.def.get = [section, field](const Recipe& r) -> Value { return (r.*section).*field; };
    b.def.set = [section, field](Recipe& r, const Value& v) { (r.*section).*field = std::get<T>(v); };
    keys_.push_back(std::move(b));
    return keys_.back();
  }
  std::vector<KeyDef> build() {
    std::vector<KeyDef> out;
    for (auto& k : keys_) out.push_back(std::move(k.def));
    return out;
  }

 private:
  std::vector<KeyBuilder> keys_;
};

// ---- Forms of [slurm] strings. They end up in #SBATCH lines and sbatch arguments, so they
// are held to SLURM's own syntax here, where a recipe error can name the file and line.

bool all_of_chars(const std::string& s, const char* extra) {
  for (unsigned char c : s) {
    if (!std::isalnum(c) && std::strchr(extra, c) == nullptr) return false;
  }
  return true;
}

/// A SLURM entity name (partition, account, QOS, GRES type); empty allowed (the default).
std::string check_slurm_name(const std::string& s) {
  if (s.empty()) return "";
  if (s.size() > 64 || !all_of_chars(s, "_.-") || s.front() == '-') {
    return "'" + s + "' is not a SLURM name (up to 64 letters, digits, '_', '.', '-'; not starting with '-')";
  }
  return "";
}

std::string check_slurm_names(const std::string& s) {
  if (s.empty()) return "";
  size_t start = 0;
  while (true) {
    const size_t comma = s.find(',', start);
    const std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (part.empty()) return "'" + s + "' has an empty name in its comma-separated list";
    const std::string e = check_slurm_name(part);
    if (!e.empty()) return e;
    if (comma == std::string::npos) return "";
    start = comma + 1;
  }
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.size() <= 9 &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

/// sbatch --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; fields after the first below 60 (hours
/// after days below 24); more than zero in total (0 means "no limit" to sbatch).
std::string check_slurm_time(const std::string& s) {
  const std::string problem =
      "'" + s + "' is not a SLURM time ([D-]HH:MM:SS, MM, MM:SS, D-HH or D-HH:MM)";
  const size_t dash = s.find('-');
  const std::string days = dash == std::string::npos ? "" : s.substr(0, dash);
  const std::string clock = dash == std::string::npos ? s : s.substr(dash + 1);
  if (dash != std::string::npos && !all_digits(days)) return problem;
  std::vector<int64_t> v;
  size_t start = 0;
  while (true) {
    const size_t colon = clock.find(':', start);
    const std::string f = clock.substr(start, colon == std::string::npos ? colon : colon - start);
    if (!all_digits(f) || v.size() == 3) return problem;
    v.push_back(std::stoll(f));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] > 59) return problem + ": minutes and seconds must be below 60";
  }
  int64_t seconds = 0;
  if (!days.empty()) {
    if (v[0] > 23) return problem + ": hours after days must be below 24";
    seconds = std::stoll(days) * 86400 + v[0] * 3600 + (v.size() > 1 ? v[1] * 60 : 0) +
              (v.size() > 2 ? v[2] : 0);
  } else if (v.size() == 3) {
    seconds = v[0] * 3600 + v[1] * 60 + v[2];
  } else {
    seconds = v[0] * 60 + (v.size() > 1 ? v[1] : 0);
  }
  if (seconds <= 0) return "time limit '" + s + "' must be more than zero";
  return "";
}

/// sbatch --constraint: features joined by & | , with optional [ ] ( ) grouping and *count.
std::string check_slurm_constraint(const std::string& s) {
  if (s.empty()) return "";
  if (s.size() > 256 || !all_of_chars(s, "_.-&|,*[]():")) {
    return "'" + s + "' is not a SLURM constraint (feature names of letters, digits, '_', '.', '-' "
           "joined by '&', '|', ',', with '[', ']', '(', ')', ':' and '*count')";
  }
  return "";
}

/// sbatch --mem: a whole number with an optional unit K, M, G or T.
std::string check_slurm_mem(const std::string& s) {
  if (s.empty()) return "";
  size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  const std::string unit = s.substr(digits);
  if (digits == 0 || digits > 12 || !(unit.empty() || unit == "K" || unit == "M" || unit == "G" || unit == "T")) {
    return "'" + s + "' is not a SLURM memory size (a whole number with an optional unit K, M, G or T, e.g. 64G)";
  }
  return "";
}

/// One environment assignment NAME=VALUE: a shell variable name, and a value without control
/// characters (it is quoted in the script, so any other character is safe).
std::string check_env_assignment(const std::string& s) {
  const size_t eq = s.find('=');
  const std::string name = s.substr(0, eq);
  const bool name_ok = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0])) &&
                       all_of_chars(name, "_");
  if (eq == std::string::npos || !name_ok) {
    return "'" + s + "' is not NAME=VALUE with NAME made of letters, digits and '_' (not starting with a digit)";
  }
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return "'" + name + "=...' contains a control character";
  }
  return "";
}

std::vector<KeyDef> make_schema() {
  SchemaBuilder s;
  using R = Recipe;
  // [run]
  s.key("run.name", &R::run, &RunOptions::name, "Run name; the run directory defaults to $HOLO_RUNS_DIR/<name>.");
  s.key("run.dir", &R::run, &RunOptions::dir, "Run directory (resolved recipe, logs, metrics, checkpoints). Empty: $HOLO_RUNS_DIR/<run.name>.").path();
  s.key("run.seed", &R::run, &RunOptions::seed, "Seed of every random draw; draws are pure functions of (seed, epoch, sample, view).").at_least(0);
  s.key("run.deterministic", &R::run, &RunOptions::deterministic, "Deterministic kernels where LibTorch has them (cuDNN without autotuning, no TF32; slower), for reproducible runs. CUDA MaxPool3d backward has none.");
  // [data]
  s.key("data.dataset", &R::data, &DataOptions::dataset, "Annotation format of the dataset.")
      .registered();
  s.key("data.root", &R::data, &DataOptions::root, "Folder holding the video files.").path();
  s.key("data.train", &R::data, &DataOptions::train, "Training annotation file (Kinetics CSV, list, split file, HVU CSV; mstcn: a split bundle, e.g. splits/train.split1.bundle).").path();
  s.key("data.val", &R::data, &DataOptions::val, "Validation annotation file.").path();
  s.key("data.test", &R::data, &DataOptions::test, "Test annotation file.").path();
  s.key("data.categories", &R::data, &DataOptions::categories, "HVU Tag,Category file.").path();
  s.key("data.class_index", &R::data, &DataOptions::class_index, "UCF101 classInd.txt.").path();
  s.key("data.split", &R::data, &DataOptions::split, "UCF101 (1-3) or HMDB51 (1-3) split number.").range(1, 3);
  s.key("data.layout", &R::data, &DataOptions::layout, "Where clip files sit under data.root: flat, per_label folders, or auto (look).")
      .choices({"auto", "flat", "per_label"});
  s.key("data.name_times", &R::data, &DataOptions::name_times, "Clip file names <id>_<start>_<end>: times in whole seconds (%06d, truncated), tenths (x10), or auto (seconds, then tenths).")
      .choices({"auto", "seconds", "tenths"});
  s.key("data.extension", &R::data, &DataOptions::extension, "Clip file extension.");
  s.key("data.manifest", &R::data, &DataOptions::manifest, "Probe manifest (holo data probe); empty: built in the cache dir.").path();
  s.key("data.num_classes", &R::data, &DataOptions::num_classes, "Number of classes; 0: from the dataset.").at_least(0);
  s.key("data.fraction", &R::data, &DataOptions::fraction, "Fraction of the training set used (debugging).").range(1e-6, 1);
  s.key("data.max_bad_fraction", &R::data, &DataOptions::max_bad_fraction, "The run fails when the share of missing plus quarantined (undecodable) samples exceeds this.").range(0, 1);
  s.key("data.min_readable_fraction", &R::data, &DataOptions::min_readable_fraction, "A video whose container declares more frames than can be read (a truncated download, a miscounted header) or whose last frames do not decode is used for the frames it has, with a warning, unless fewer than this share of the declared frames can be read; then it is quarantined.").range(1e-6, 1);
  s.key("data.synth_kind", &R::data, &DataOptions::synth_kind, "synth: motion (classes that need temporal modelling) or hvu (multi-label, six categories).")
      .choices({"motion", "hvu"});
  s.key("data.synth_videos", &R::data, &DataOptions::synth_videos, "synth: videos made once (in data.root, or in $HOLO_CACHE_DIR/synth) and re-used.").range(1, 1000000);
  s.key("data.synth_classes", &R::data, &DataOptions::synth_classes, "synth: motion classes (moving left/right, rotating clockwise/counter-clockwise, growing/shrinking, moving up/down; the first N).").range(2, 8);
  s.key("data.synth_frames", &R::data, &DataOptions::synth_frames, "synth: frames per video (each frame also shows its own index).").range(2, 1023);
  s.key("data.sample_rate", &R::data, &DataOptions::sample_rate, "mstcn: keep every N-th frame of the features and labels, as MS-TCN reads them (50Salads: 2, its 30 fps features at 15).").range(1, 1000);
  s.key("data.features", &R::data, &DataOptions::features, "mstcn: read the per-frame features from this feature store (holo extract --per-frame: frames x D per video id) instead of <data.root>/features/*.npy.").path();
  s.key("data.background", &R::data, &DataOptions::background, "mstcn: the background labels, left out of Edit and F1 (Breakfast: SIL).");
  // [sampling]
  s.key("sampling.num_frames", &R::sampling, &SamplingOptions::num_frames, "Frames per clip (T).").range(1, 1024);
  s.key("sampling.stride", &R::sampling, &SamplingOptions::stride, "Frame stride within a clip.").range(1, 64);
  s.key("sampling.test_clips", &R::sampling, &SamplingOptions::test_clips, "Uniform clips per video at test time (K).").range(1, 100);
  s.key("sampling.test_crops", &R::sampling, &SamplingOptions::test_crops, "Crops per clip at test time: 1 (center) or 3 (three-crop).").range(1, 3);
  // [transform]
  s.key("transform.crop_size", &R::transform, &TransformOptions::crop_size, "Square crop side in pixels.").range(8, 1024);
  s.key("transform.train_scale_min", &R::transform, &TransformOptions::train_scale_min, "Training: random short side, lower bound.").range(8, 4096);
  s.key("transform.train_scale_max", &R::transform, &TransformOptions::train_scale_max, "Training: random short side, upper bound.").range(8, 4096);
  s.key("transform.test_scale", &R::transform, &TransformOptions::test_scale, "Testing: short side.").range(8, 4096);
  s.key("transform.flip", &R::transform, &TransformOptions::flip, "Training: random horizontal flip.");
  s.key("transform.mean", &R::transform, &TransformOptions::mean, "Per-channel mean (RGB, 0-1) subtracted.").range(0, 1);
  s.key("transform.std", &R::transform, &TransformOptions::std, "Per-channel standard deviation (RGB, 0-1) divided by.").range(1e-6, 10);
  // [decode]
  s.key("decode.device", &R::decode, &DecodeOptions::device, "Decoder: cpu, nvdec, or auto (NVDEC when a GPU and the hwaccel exist, else CPU with a logged reason).")
      .registered();
  s.key("decode.threads", &R::decode, &DecodeOptions::threads, "Decoder threads per open video; 0: $HOLO_DECODE_THREADS, else the cores divided among loader.workers (at least 1).").range(0, 256);
  s.key("decode.cache_size", &R::decode, &DecodeOptions::cache_size, "Open decoders kept per worker.").range(1, 4096);
  // [loader]
  s.key("loader.batch_size", &R::loader, &LoaderOptions::batch_size, "Clips per batch per worker.").range(1, 65536);
  s.key("loader.workers", &R::loader, &LoaderOptions::workers, "Loader threads per rank, each decoding and building whole batches; 0: batches are built in the training thread.").range(0, 256);
  s.key("loader.prefetch", &R::loader, &LoaderOptions::prefetch, "Batches queued ahead of the model.").range(1, 1024);
  s.key("loader.drop_last", &R::loader, &LoaderOptions::drop_last, "Drop the last incomplete batch of an epoch in training.");
  // [model]
  s.key("model.name", &R::model, &ModelOptions::name, "Network: a family (depth from model.depth) or a named preset that fixes the depth (`holo model list`).")
      .registered();
  s.key("model.depth", &R::model, &ModelOptions::depth, "ResNet depth: 10, 18, 34, 50, 101, 152; for x3d the residual blocks: 26 (S, M) or 55 (L, XL); for the transformers the number of blocks (a named preset fixes it; then leave the default or repeat it).").range(1, 152);
  s.key("model.frames", &R::model, &ModelOptions::frames, "Clip length T the network is built for (sizes STC's spatial-branch FC; other lengths are resampled to it).").range(1, 1024);
  s.key("model.shortcut", &R::model, &ModelOptions::shortcut, "Projection shortcut: A (zero-padded identity), B (1x1x1 conv + BN where the shape changes), auto (A for basic, B for bottleneck blocks, as Hara et al.).")
      .choices({"auto", "A", "B"});
  s.key("model.preact", &R::model, &ModelOptions::preact, "Pre-activation residual blocks (BN-ReLU-Conv, Table 4.1).");
  s.key("model.stem_temporal_kernel", &R::model, &ModelOptions::stem_temporal_kernel, "Temporal kernel of the first convolution; 0: the family's default.").range(0, 15);
  s.key("model.stem_temporal_stride", &R::model, &ModelOptions::stem_temporal_stride, "Temporal stride of the first convolution; 0: the family's default.").range(0, 8);
  s.key("model.stem_pool", &R::model, &ModelOptions::stem_pool, "Max pooling after the first convolution: auto (the family's), max, none.")
      .choices({"auto", "max", "none"});
  s.key("model.temporal_strides", &R::model, &ModelOptions::temporal_strides, "Temporal stride of res2..res5 (4 values); empty: the family's default.").range(1, 8);
  s.key("model.spatial_strides", &R::model, &ModelOptions::spatial_strides, "Spatial stride of res2..res5 (4 values); empty: the family's default.").range(1, 8);
  s.key("model.width", &R::model, &ModelOptions::width, "Width multiplier of the base width 64 (small values train on a CPU).").range(0.03125, 4);
  s.key("model.cardinality", &R::model, &ModelOptions::cardinality, "ResNeXt groups.").range(1, 256);
  s.key("model.num_classes", &R::model, &ModelOptions::num_classes, "Classifier outputs; 0: from the dataset.").at_least(0);
  s.key("model.dropout", &R::model, &ModelOptions::dropout, "Dropout before the classifier.").range(0, 0.99);
  s.key("model.stc", &R::model, &ModelOptions::stc, "STC block after every residual block.");
  s.key("model.stc_branches", &R::model, &ModelOptions::stc_branches, "STC branches: both, tcb (temporal only), scb (spatial only).")
      .choices({"both", "tcb", "scb"});
  s.key("model.stc_reduction", &R::model, &ModelOptions::stc_reduction, "STC reduction r (thesis 4.4.2: 4; Table 4.1 prints the sizes of r = 16).").range(1, 64);
  s.key("model.stc_scb_hidden", &R::model, &ModelOptions::stc_scb_hidden, "Hidden size of the STC spatial branch: table (C/r, as Table 4.1 prints) or text ((T*C)/r, eq. 4.5; grows with T^2).")
      .choices({"table", "text"});
  s.key("model.heads", &R::model, &ModelOptions::heads, "standard: one head over all labels; multitask: one head per category.")
      .choices({"standard", "multitask"});
  s.key("model.sgs", &R::model, &ModelOptions::sgs, "Similarity Guided Sampling (adaptive temporal feature resolution).");
  s.key("model.sgs_after", &R::model, &ModelOptions::sgs_after, "Stage after which SGS sits.").choices({"stem", "res2", "res3", "res4"});
  s.key("model.sgs_bins", &R::model, &ModelOptions::sgs_bins, "SGS bins B; 0: B = T.").range(0, 1024);
  s.key("model.sgs_dim", &R::model, &ModelOptions::sgs_dim, "SGS similarity space dimension L.").range(1, 1024);
  s.key("model.sgs_kernel", &R::model, &ModelOptions::sgs_kernel, "SGS kernel: linear (eq. 6.6 verbatim), linear_clamped (6.6 with Delta clamped to [beta_1, beta_B], so the extreme frames weigh 1), or kronecker (6.5).").choices({"linear", "linear_clamped", "kronecker"});
  s.key("model.sgs_measure", &R::model, &ModelOptions::sgs_measure, "SGS similarity measure: distance to the temporal mean, or magnitude.")
      .choices({"mean_distance", "magnitude"});
  s.key("model.tcn_stages", &R::model, &ModelOptions::tcn_stages, "mstcn: stages; the first reads the features, each next one refines the previous one's probabilities (MS-TCN: 4).").range(1, 16);
  s.key("model.tcn_layers", &R::model, &ModelOptions::tcn_layers, "mstcn: dilated residual layers per stage, dilation 2^i (MS-TCN: 10).").range(1, 20);
  s.key("model.tcn_channels", &R::model, &ModelOptions::tcn_channels, "mstcn: feature maps of every layer (MS-TCN: 64).").range(1, 4096);
  s.key("model.mucon_hidden", &R::model, &ModelOptions::mucon_hidden, "mucon: size D' of the latent Z, of the LSTMs and of the decoder's embedding (thesis 9.4.2: 128).").range(32, 4096);
  s.key("model.mucon_layers", &R::model, &ModelOptions::mucon_layers, "mucon: dilated residual layers of the backbone f_t, dilation 2^i (thesis 9.3.1: 11).").range(1, 20);
  s.key("model.mucon_pool_after", &R::model, &ModelOptions::mucon_pool_after, "mucon: 0-based indices of the backbone layers followed by a temporal max pooling of 2, as the released code counts them (Breakfast [1, 2, 4, 8]; Hollywood Extended [1, 2, 4], thesis 9.4.2).").range(0, 19);
  s.key("model.mucon_template", &R::model, &ModelOptions::mucon_template, "mucon: shape of the mask template U (thesis 9.3.5.2, Table 9.2).").choices({"box", "bell", "trapezoid"});
  s.key("model.mucon_overlap", &R::model, &ModelOptions::mucon_overlap, "mucon: overlap of neighbouring masks, a fraction of the segment's length on each side (Table 9.2: 0.1).").range(0, 1);
  s.key("model.mucon_variant", &R::model, &ModelOptions::mucon_variant, "mucon: where the released code departs from the thesis's text, which one to follow: mask sampling, the reduction of the consistency loss, the smoothing loss, the supervised length loss and the Viterbi length model (docs/segmentation.md, \"MuCon\").").choices({"thesis", "release"});
  s.key("model.sct_hidden", &R::model, &ModelOptions::sct_hidden, "sct: size D' of the embedding (thesis 8.5.1: 128).").range(32, 4096);
  s.key("model.sct_layers", &R::model, &ModelOptions::sct_layers, "sct: dilated residual layers of f_e and f_r together, dilation 2^i (the released code: 11).").range(2, 20);
  s.key("model.sct_pool_after", &R::model, &ModelOptions::sct_pool_after, "sct: 0-based layers followed by a temporal max pooling of 2; K = T / 2^(their number) regions (the released code: [1, 2, 4, 8, 10]).").range(0, 19);
  s.key("model.sct_z_after", &R::model, &ModelOptions::sct_z_after, "sct: Z, the input of f_s, is the output of this 0-based layer after its pooling (the released code: 4).").range(0, 19);
  s.key("model.sct_variant", &R::model, &ModelOptions::sct_variant, "sct: the losses as the thesis's text writes them (the set loss over all classes, means) or as the released code computes them (present classes only, sums, the background weighed 0.001); docs/segmentation.md, \"SCT\".").choices({"thesis", "release"});
  s.key("model.embed_dim", &R::model, &ModelOptions::embed_dim, "Transformers: token width D; 0: the preset's (the families: 384).").range(0, 4096);
  s.key("model.num_heads", &R::model, &ModelOptions::num_heads, "Transformers: attention heads (must divide model.embed_dim); 0: the preset's (the families: 6).").range(0, 64);
  s.key("model.patch_size", &R::model, &ModelOptions::patch_size, "Transformers: side P of the P x P patches of a frame.").range(1, 256);
  s.key("model.image_size", &R::model, &ModelOptions::image_size, "Transformers: frame side the position embeddings are sized for (a multiple of model.patch_size; frames of another size are an error).").range(1, 4096);
  s.key("model.xvit_shift_div", &R::model, &ModelOptions::xvit_shift_div, "xvit: space-time mixing takes d_h / this channels of every head's keys and values from frame t - 1 and as many from t + 1 (docs/models.md).").range(2, 64);
  s.key("model.qk_init_std", &R::model, &ModelOptions::qk_init_std, "Transformers: standard deviation of the query and key projection weights at initialisation (timm and the official codes: 0.02, as every Linear). Larger values start the attention away from uniform, where a task that only the order of the frames tells gives TimeSformer no gradient (docs/models.md, \"Learning on synthetic data\").").range(1e-4, 2);
  s.key("model.token_reducer", &R::model, &ModelOptions::token_reducer, "Transformers: what the blocks of model.reducer_blocks do to their tokens: none, ats (Adaptive Token Sampler, thesis 7.2) or tome (token merging).").choices({"none", "ats", "tome"});
  s.key("model.reducer_blocks", &R::model, &ModelOptions::reducer_blocks, "Transformers: 0-based blocks with model.token_reducer; empty: the thesis's placement (DeiT and XViT blocks 3 to the last, TimeSformer 3-5; 7.3.2, 7.3.4).").range(0, 151);
  s.key("model.ats_tokens", &R::model, &ModelOptions::ats_tokens, "ATS: K, the sampling points of a block (at most K tokens kept besides CLS); 0: the block's input tokens, CLS included (K = 197 for DeiT-S, as 7.3.4.1 trains).").range(0, 100000);
  s.key("model.ats_rho", &R::model, &ModelOptions::ats_rho, "ATS: when above 0, K_n = max(round(rho * N_n), 8) with N_n the block's input tokens (7.3.4.1: 1, 0.87, 0.72); overrides model.ats_tokens.").range(0, 1);
  s.key("model.ats_variant", &R::model, &ModelOptions::ats_variant, "ATS: sampling as the thesis states it (per-head scores, CDF in token order, points (2i-1)/2K, tokens in token order) or as the released code does it (scores sorted first, points from the smallest non-zero CDF value, tokens in score order); docs/models.md.").choices({"thesis", "release"});
  s.key("model.tome_r", &R::model, &ModelOptions::tome_r, "ToMe: tokens merged in each block of model.reducer_blocks (positions, for the video transformers).").range(0, 100000);
  s.key("model.init", &R::model, &ModelOptions::init, "Checkpoint or weights file to initialise the network from: a Holo checkpoint or export, or a state dict of torchvision, PySlowFast or MMAction2 (docs/weights.md).").path();
  s.key("model.init_layout", &R::model, &ModelOptions::init_layout, "Tensor names in model.init; auto picks the layout that matches the network's tensors best.")
      .choices({"auto", "holo", "torchvision", "pyslowfast", "mmaction2", "timm"});
  s.key("model.init_strict", &R::model, &ModelOptions::init_strict, "Stop (exit 2) when a tensor of the network or of model.init is left unmatched, apart from a classifier of another class count; false: a warning lists them.");
  // [task]
  s.key("task.kind", &R::task, &TaskOptions::kind, "Training task: on video clips, or segmentation (per-frame labels on per-frame features, data.dataset = mstcn).").registered();
  s.key("task.smoothing", &R::task, &TaskOptions::smoothing, "segmentation: weight of MS-TCN's smoothing loss (truncated MSE of neighbouring frames' log-probabilities; MS-TCN: 0.15).").range(0, 100);
  s.key("task.supervision", &R::task, &TaskOptions::supervision, "segmentation: what the training videos are labelled with: full (a label per frame; mstcn, mucon), transcript (the ordered actions only; mucon, thesis 9), mixed (task.full_fraction of the videos full, the rest transcripts; mucon, thesis 9.3.7), set (the actions present, unordered; sct, thesis 8).").choices({"full", "transcript", "mixed", "set"});
  s.key("task.full_fraction", &R::task, &TaskOptions::full_fraction, "segmentation, supervision = mixed: fraction of the training videos that keep their frame labels, drawn from run.seed (thesis 9.3.7).").range(0, 1);
  s.key("task.length_weight", &R::task, &TaskOptions::length_weight, "mucon: alpha, weight of the length regulariser L_l (thesis 9.4.2: 0.1; Hollywood Extended 1).").range(0, 100);
  s.key("task.length_width", &R::task, &TaskOptions::length_width, "mucon: w of the length regulariser (eq. 9.11: 2).").range(0, 100);
  s.key("task.inference", &R::task, &TaskOptions::inference, "mucon: the prediction that validation and holo eval score and write: full (the decoded transcript aligned to Y by Viterbi, MuCon-full), y (the frame classifier, MuCon-Y), s (the decoded segments, MuCon-S), align (the ground-truth transcript aligned to Y: action alignment, thesis 9.3.8, 9.4.1).").choices({"full", "y", "s", "align"});
  s.key("task.region_weight", &R::task, &TaskOptions::region_weight, "sct: weight of the region loss L_R (eq. 8.6; the released code: 0.1).").range(0, 100);
  s.key("task.consistency_weight", &R::task, &TaskOptions::consistency_weight, "sct: weight of the temporal consistency loss L_C (eq. 8.8; the released code: 0.1).").range(0, 100);
  s.key("task.sparsity_weight", &R::task, &TaskOptions::sparsity_weight, "sct: weight of the inverse sparsity regulariser R_I (eq. 8.7; the released code: 0.1).").range(0, 100);
  s.key("task.teacher", &R::task, &TaskOptions::teacher, "transfer: frozen 2D teacher weights (TorchScript or torchvision-named state dict).").path();
  s.key("task.teacher_arch", &R::task, &TaskOptions::teacher_arch, "transfer: teacher architecture.")
      .choices({"resnet18", "resnet34", "resnet50", "resnet101"});
  s.key("task.teacher_width", &R::task, &TaskOptions::teacher_width, "transfer: teacher width multiplier (1 for torchvision weights).").range(0.03125, 4);
  s.key("task.teacher_frames", &R::task, &TaskOptions::teacher_frames, "transfer: frames X averaged by the teacher (thesis 4.3: 16; at most the clip's frames).").range(1, 256);
  s.key("task.teacher_source", &R::task, &TaskOptions::teacher_source,
        "transfer: online (the teacher runs on the student's clip, same crop) or store (features of centre crops computed once into <run dir>/teacher_features, read per batch).")
      .choices({"online", "store"});
  s.key("task.negative_ratio", &R::task, &TaskOptions::negative_ratio, "transfer: fraction of negative pairs.").range(0, 1);
  s.key("task.freeze", &R::task, &TaskOptions::freeze, "finetune: stages kept frozen.").choices({"stem", "res2", "res3", "res4", "res5"});
  // [optim]
  s.key("optim.name", &R::optim, &OptimOptions::name, "Optimiser.").registered();
  s.key("optim.lr", &R::optim, &OptimOptions::lr, "Base learning rate.").range(0, 100);
  s.key("optim.momentum", &R::optim, &OptimOptions::momentum, "SGD momentum.").range(0, 1);
  s.key("optim.nesterov", &R::optim, &OptimOptions::nesterov, "SGD Nesterov momentum.");
  s.key("optim.weight_decay", &R::optim, &OptimOptions::weight_decay, "Weight decay.").range(0, 1);
  s.key("optim.decay_norm_bias", &R::optim, &OptimOptions::decay_norm_bias, "Apply weight decay to normalisation and bias parameters too.");
  s.key("optim.betas", &R::optim, &OptimOptions::betas, "AdamW betas.").range(0, 0.999999);
  s.key("optim.eps", &R::optim, &OptimOptions::eps, "AdamW epsilon.").range(0, 1);
  s.key("optim.clip_grad_norm", &R::optim, &OptimOptions::clip_grad_norm, "Clip the global gradient norm to this; 0: off.").at_least(0);
  // [schedule]
  s.key("schedule.kind", &R::schedule, &ScheduleOptions::kind, "Learning-rate schedule.").registered();
  s.key("schedule.step_epochs", &R::schedule, &ScheduleOptions::step_epochs, "step: multiply by gamma every this many epochs.").range(1, 100000);
  s.key("schedule.milestones", &R::schedule, &ScheduleOptions::milestones, "multistep: epochs at which to multiply by gamma.").at_least(0);
  s.key("schedule.gamma", &R::schedule, &ScheduleOptions::gamma, "Decay factor.").range(0, 1);
  s.key("schedule.warmup_epochs", &R::schedule, &ScheduleOptions::warmup_epochs, "Linear warm-up length in epochs.").at_least(0);
  s.key("schedule.min_lr", &R::schedule, &ScheduleOptions::min_lr, "cosine: final learning rate.").at_least(0);
  // [train]
  s.key("train.epochs", &R::train, &TrainOptions::epochs, "Epochs.").range(1, 100000);
  s.key("train.max_steps", &R::train, &TrainOptions::max_steps, "Stop after this many optimiser steps; 0: no limit.").at_least(0);
  s.key("train.log_every", &R::train, &TrainOptions::log_every, "Steps between metric lines.").range(1, 1000000);
  s.key("train.val_every", &R::train, &TrainOptions::val_every, "Epochs between validations; 0: never.").at_least(0);
  s.key("train.precision", &R::train, &TrainOptions::precision, "Arithmetic: fp32, bf16, fp16 (CUDA; fp16 with loss scaling).").choices({"fp32", "bf16", "fp16"});
  s.key("train.accumulate", &R::train, &TrainOptions::accumulate, "Gradient accumulation steps per optimiser step.").range(1, 1024);
  s.key("train.sync_bn", &R::train, &TrainOptions::sync_bn, "Synchronise BatchNorm statistics across workers.");
  // [checkpoint]
  s.key("checkpoint.every_steps", &R::checkpoint, &CheckpointOptions::every_steps, "Steps between checkpoints; 0: only at the end and on preemption.").at_least(0);
  s.key("checkpoint.keep", &R::checkpoint, &CheckpointOptions::keep, "Newest checkpoints kept.").range(1, 1000);
  s.key("checkpoint.background", &R::checkpoint, &CheckpointOptions::background, "Write checkpoints in a background thread.");
  s.key("checkpoint.resume", &R::checkpoint, &CheckpointOptions::resume, "auto (newest in the run directory), never, or a checkpoint path.");
  s.key("checkpoint.existing", &R::checkpoint, &CheckpointOptions::existing, "When the run directory holds another run's checkpoints (with resume = never: any): refuse to start, naming them, or overwrite (delete them first).")
      .choices({"refuse", "overwrite"});
  // [dist]
  s.key("dist.backend", &R::dist, &DistOptions::backend, "Gradient communicator: auto (NCCL for CUDA, MPI for CPU), mpi, nccl.").choices({"auto", "mpi", "nccl"});
  s.key("dist.bucket_mb", &R::dist, &DistOptions::bucket_mb, "Gradient bucket size in MB.").range(0.001, 4096);
  s.key("dist.timeout_s", &R::dist, &DistOptions::timeout_s, "Seconds a collective may wait before the job aborts.").range(1, 86400);
  // [eval]
  s.key("eval.split", &R::eval, &EvalOptions::split, "Annotation split evaluated by holo eval.").choices({"val", "test"});
  s.key("eval.per_class", &R::eval, &EvalOptions::per_class, "Write per-class results to CSV.");
  // [slurm]
  const std::string name_form = "letters, digits, _ . - (empty: default)";
  s.key("slurm.partition", &R::slurm, &SlurmOptions::partition, "sbatch --partition (a comma-separated list is allowed); empty: the cluster's default.")
      .form("names of " + name_form, check_slurm_names);
  s.key("slurm.account", &R::slurm, &SlurmOptions::account, "sbatch --account; empty: the user's default.").form(name_form, check_slurm_name);
  s.key("slurm.qos", &R::slurm, &SlurmOptions::qos, "sbatch --qos; empty: the default.").form(name_form, check_slurm_name);
  s.key("slurm.time", &R::slurm, &SlurmOptions::time, "sbatch --time: time limit of one allocation (each requeue starts a new one).")
      .form("[D-]HH:MM:SS, MM, MM:SS, D-HH, D-HH:MM", check_slurm_time);
  s.key("slurm.constraint", &R::slurm, &SlurmOptions::constraint, "sbatch --constraint: required node features, e.g. \"a100|h100\"; empty: none.")
      .form("feature names joined by & | , with [ ] ( ) and *N", check_slurm_constraint);
  s.key("slurm.nodes", &R::slurm, &SlurmOptions::nodes, "Nodes.").range(1, 100000);
  s.key("slurm.gpus_per_node", &R::slurm, &SlurmOptions::gpus_per_node, "GPUs per node; one worker (task) per GPU. 0: CPU workers.").range(0, 64);
  s.key("slurm.gpu_type", &R::slurm, &SlurmOptions::gpu_type, "GPU type requested (--gpus-per-node=TYPE:N); empty: any.").form(name_form, check_slurm_name);
  s.key("slurm.tasks_per_node", &R::slurm, &SlurmOptions::tasks_per_node, "Workers per node; 0: gpus_per_node, or 1 without GPUs. With GPUs it must equal gpus_per_node.").range(0, 1024);
  s.key("slurm.cpus_per_task", &R::slurm, &SlurmOptions::cpus_per_task, "CPUs per worker (also its LibTorch threads unless HOLO_NUM_THREADS is set).").range(1, 1024);
  s.key("slurm.mem", &R::slurm, &SlurmOptions::mem, "sbatch --mem: memory per node, e.g. 64G; \"0\": all of it; empty: the cluster's default.")
      .form("N, or N with a unit K, M, G or T", check_slurm_mem);
  s.key("slurm.max_restarts", &R::slurm, &SlurmOptions::max_restarts, "Times the job requeues itself, after a preemption warning or a failed worker (unless a node of the allocation can no longer start tasks), before it gives up.").range(0, 1000);
  s.key("slurm.grace_s", &R::slurm, &SlurmOptions::grace_s, "Seconds between the USR1 warning (--signal=B:USR1@grace_s) and the end of the allocation: time to finish the step and save.").range(10, 65535);
  s.key("slurm.launcher", &R::slurm, &SlurmOptions::launcher, "How workers start inside the allocation: srun (--mpi=slurm.mpi) or mpirun.").choices({"srun", "mpirun"});
  s.key("slurm.mpi", &R::slurm, &SlurmOptions::mpi, "srun --mpi plugin that wires up MPI between the workers.").choices({"pmix", "pmi2", "none"});
  s.key("slurm.env", &R::slurm, &SlurmOptions::env, "Environment variables exported to the workers, as NAME=VALUE (e.g. \"NCCL_SOCKET_IFNAME=ib0\").")
      .form("NAME=VALUE", check_env_assignment);
  return s.build();
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string format_number(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

}  // namespace

std::vector<std::string> choices_of(const KeyDef& key) { return key.registered ? registered_names(key.path) : key.choices; }

const std::vector<KeyDef>& recipe_schema() {
  static const std::vector<KeyDef> schema = make_schema();
  return schema;
}

const KeyDef* find_key(const std::string& path) {
  for (const auto& k : recipe_schema()) {
    if (k.path == path) return &k;
  }
  return nullptr;
}

const std::vector<std::pair<std::string, std::string>>& recipe_sections() {
  static const std::vector<std::pair<std::string, std::string>> sections = {
      {"run", "Identity of the run: name, directory, seed."},
      {"data", "Dataset, annotation files and where the videos are."},
      {"sampling", "Which frames make a clip, in training and testing."},
      {"transform", "Spatial transforms and normalisation."},
      {"decode", "Video decoding."},
      {"loader", "Batching and prefetching."},
      {"model", "The network, built by name."},
      {"task", "What is learnt: loss, metrics, heads."},
      {"optim", "Optimiser."},
      {"schedule", "Learning-rate schedule."},
      {"train", "Training loop."},
      {"checkpoint", "Sharded checkpoints and resuming."},
      {"dist", "Data-parallel communication."},
      {"eval", "Evaluation."},
      {"slurm", "SLURM submission (holo submit)."},
  };
  return sections;
}

const char* type_name(ValueType t) {
  switch (t) {
    case ValueType::kBool: return "bool";
    case ValueType::kInt: return "int";
    case ValueType::kFloat: return "float";
    case ValueType::kString: return "string";
    case ValueType::kIntList: return "list of int";
    case ValueType::kFloatList: return "list of float";
    case ValueType::kStringList: return "list of string";
  }
  return "?";
}

std::string check_value(const KeyDef& key, const Value& value) {
  auto check_number = [&](double x) -> std::string {
    if (!std::isfinite(x)) return "value " + format_number(x) + " is not finite";
    if (key.min && x < *key.min) {
      return "value " + format_number(x) + " is below the minimum " + format_number(*key.min) +
             (key.max ? " (allowed: " + format_number(*key.min) + " to " + format_number(*key.max) + ")" : "");
    }
    if (key.max && x > *key.max) {
      return "value " + format_number(x) + " is above the maximum " + format_number(*key.max) +
             (key.min ? " (allowed: " + format_number(*key.min) + " to " + format_number(*key.max) + ")" : "");
    }
    return "";
  };
  auto check_choice = [&](const std::string& s) -> std::string {
    if (key.check_form) {
      auto e = key.check_form(s);
      if (!e.empty()) return e;
    }
    const auto choices = choices_of(key);
    if (choices.empty()) return "";
    if (std::find(choices.begin(), choices.end(), s) != choices.end()) return "";
    std::string all;
    for (const auto& c : choices) all += (all.empty() ? "" : ", ") + c;
    return "value \"" + s + "\" is not one of: " + all;
  };
  return std::visit(
      [&](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
          return check_number(static_cast<double>(v));
        } else if constexpr (std::is_same_v<T, std::string>) {
          return check_choice(v);
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>> ||
                             std::is_same_v<T, std::vector<double>>) {
          for (auto x : v) {
            auto e = check_number(static_cast<double>(x));
            if (!e.empty()) return "list element: " + e;
          }
          return "";
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          for (const auto& x : v) {
            auto e = check_choice(x);
            if (!e.empty()) return "list element: " + e;
          }
          return "";
        } else {
          return "";
        }
      },
      value);
}

std::string suggest_key(const std::string& path) {
  std::string best;
  size_t best_d = 4;  // suggest only close matches
  const auto leaf = path.substr(path.rfind('.') == std::string::npos ? 0 : path.rfind('.') + 1);
  for (const auto& k : recipe_schema()) {
    size_t d = edit_distance(path, k.path);
    // A right leaf in the wrong section is also worth naming.
    const auto kleaf = k.path.substr(k.path.rfind('.') + 1);
    if (kleaf == leaf) d = std::min<size_t>(d, 2);
    if (d < best_d) {
      best_d = d;
      best = k.path;
    }
  }
  return best;
}

std::string to_toml_text(const Value& v) {
  auto quote = [](const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        case '\r': out += "\\r"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {  // TOML escapes DEL too
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += c;
          }
      }
    }
    return out + "\"";
  };
  auto num = [](double x) {
    // Shortest text that reads back as the same double.
    std::string s;
    for (int precision = 6; precision <= 17; ++precision) {
      std::ostringstream os;
      os.precision(precision);
      os << x;
      s = os.str();
      // strtod, not stod: stod throws for a subnormal number (ERANGE), which a recipe may hold.
      if (std::strtod(s.c_str(), nullptr) == x) break;
    }
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep it a TOML float
    return s;
  };
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
        if constexpr (std::is_same_v<T, int64_t>) return std::to_string(x);
        if constexpr (std::is_same_v<T, double>) return num(x);
        if constexpr (std::is_same_v<T, std::string>) return quote(x);
        if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>> ||
                      std::is_same_v<T, std::vector<std::string>>) {
          std::string out = "[";
          for (size_t i = 0; i < x.size(); ++i) {
            if (i) out += ", ";
            if constexpr (std::is_same_v<T, std::vector<int64_t>>) out += std::to_string(x[i]);
            if constexpr (std::is_same_v<T, std::vector<double>>) out += num(x[i]);
            if constexpr (std::is_same_v<T, std::vector<std::string>>) out += quote(x[i]);
          }
          return out + "]";
        }
      },
      v);
}

std::string recipe_doc(bool markdown) {
  const Recipe defaults;
  std::ostringstream os;
  for (const auto& [section, sdoc] : recipe_sections()) {
    if (markdown) {
      os << "## [" << section << "]\n\n" << sdoc << "\n\n";
      os << "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n";
    } else {
      os << "[" << section << "]  " << sdoc << "\n";
    }
    for (const auto& k : recipe_schema()) {
      if (k.path.compare(0, section.size() + 1, section + ".") != 0) continue;
      std::string allowed;
      if (!k.form.empty()) {
        allowed = k.form;
      } else if (k.registered) {
        allowed = "one of the names below";
      } else if (!k.choices.empty()) {
        for (const auto& c : k.choices) allowed += (allowed.empty() ? "" : ", ") + c;
      } else if (k.min || k.max) {
        allowed = (k.min ? format_number(*k.min) : "") + " .. " + (k.max ? format_number(*k.max) : "");
      }
      const std::string def = to_toml_text(k.get(defaults));
      if (markdown) {
        // A '|' inside a cell would end it.
        auto cell = [](const std::string& text) {
          std::string out;
          for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
          return out;
        };
        os << "| `" << k.path << "` | " << type_name(k.type) << " | `" << cell(def) << "` | "
           << cell(allowed) << " | " << cell(k.doc) << " |\n";
      } else {
        os << "  " << k.path << " (" << type_name(k.type) << ", default " << def
           << (allowed.empty() ? "" : ", allowed " + allowed) << ")\n      " << k.doc << "\n";
      }
    }
    // The registered choices with their descriptions, below the section's keys.
    for (const auto& k : recipe_schema()) {
      if (!k.registered || k.path.compare(0, section.size() + 1, section + ".") != 0) continue;
      const auto choices = registered_choices(k.path);
      os << (markdown ? "\n**`" + k.path + "`**:\n\n" : "  " + k.path + ":\n");
      if (choices.empty()) os << (markdown ? "- " : "    ") << "(registered by the layers this program does not link)\n";
      for (const auto& c : choices) {
        if (markdown) {
          os << "- `" << c.name << "`" << (c.group.empty() ? "" : " (" + c.group + ")") << ": " << c.description << "\n";
        } else {
          os << "    " << c.name << (c.group.empty() ? "" : " (" + c.group + ")") << ": " << c.description << "\n";
        }
      }
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace holo
