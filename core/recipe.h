#pragma once
/// Recipes: TOML files parsed (in recipe_loader.cc, the only place that includes toml++) into
/// the typed option structs below, and validated against one schema (recipe_schema.cc) that
/// also produces the documentation (`holo recipe doc`). Every key has a type, a default (the
/// member initialiser below), a meaning and, where it applies, a range or a set of choices.
///
/// A recipe may extend others: `base = "../base/kinetics.toml"` (or a list), merged depth first
/// with the extending file winning; cycles are errors. Command-line overrides
/// (`--set optim.lr=0.05`) are typed and validated like the file.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace holo {

/// Where a recipe key got its value: a file and the line and column of the key, or
/// "--set KEY=VALUE" for an override (line 0).
struct KeySource {
  std::string file;
  int line = 0;
  int column = 0;
};

struct RunOptions {
  std::string name = "holo";  ///< run name; the run directory defaults to <runs>/<name>
  std::string dir;            ///< run directory; empty: $HOLO_RUNS_DIR/<name>
  int64_t seed = 0;           ///< seed of every random draw
  bool deterministic = false; ///< deterministic kernels where they exist, no TF32 (slower)
};

struct DataOptions {
  std::string dataset = "synth";   ///< kinetics, list, ucf101, hmdb51, hvu, folder, synth, mstcn
  std::string root;                ///< folder holding the video files
  std::string train;               ///< training annotation file (or split file)
  std::string val;                 ///< validation annotation file
  std::string test;                ///< test annotation file
  std::string categories;          ///< HVU Tag,Category file
  std::string class_index;         ///< UCF101 classInd.txt
  int64_t split = 1;               ///< UCF101/HMDB51 split number
  std::string layout = "auto";     ///< auto, flat, per_label: where clip files sit under root
  std::string name_times = "auto";  ///< auto (try both), seconds (<id>_<s:06d>_<e:06d>) or tenths (x10)
  std::string extension = ".mp4";  ///< clip file extension
  std::string manifest;            ///< probe manifest; empty: built in the cache dir
  int64_t num_classes = 0;         ///< 0: from the dataset
  double fraction = 1.0;           ///< use this fraction of the training set (debugging)
  double max_bad_fraction = 0.05;  ///< fail when more of the samples are missing or undecodable
  double min_readable_fraction = 0.5;  ///< use a video only when this share of its declared frames can be read
  std::string synth_kind = "motion";  ///< synth: motion (single-label) or hvu (multi-label)
  int64_t synth_videos = 24;       ///< synth: number of videos made for the run
  int64_t synth_classes = 4;       ///< synth: number of classes
  int64_t synth_frames = 48;       ///< synth: frames per video
  int64_t sample_rate = 1;         ///< mstcn: keep every sample_rate-th frame (50Salads: 2)
  std::string features;            ///< mstcn: a feature store (holo extract --per-frame) instead of <root>/features
  std::vector<std::string> background = {"background"};  ///< mstcn: background labels (Breakfast: SIL)
};

struct SamplingOptions {
  int64_t num_frames = 16;   ///< frames per clip (T)
  int64_t stride = 2;        ///< frame stride within a clip
  int64_t test_clips = 10;   ///< K uniform clips per video at test time
  int64_t test_crops = 3;    ///< 1 (center) or 3 (three-crop)
};

struct TransformOptions {
  int64_t crop_size = 112;
  int64_t train_scale_min = 128;  ///< random short side, lower bound
  int64_t train_scale_max = 160;  ///< random short side, upper bound
  int64_t test_scale = 128;       ///< short side at test time
  bool flip = true;               ///< random horizontal flip in training
  std::vector<double> mean = {0.43216, 0.394666, 0.37645};
  std::vector<double> std = {0.22803, 0.22145, 0.216989};
};

struct DecodeOptions {
  std::string device = "auto";  ///< auto, cpu, nvdec
  int64_t threads = 0;          ///< decoder threads per open video; 0: HOLO_DECODE_THREADS, else cores / loader.workers
  int64_t cache_size = 8;       ///< open decoders kept per worker
};

struct LoaderOptions {
  int64_t batch_size = 8;  ///< clips per batch on each rank
  int64_t workers = 2;     ///< loader threads per rank; 0: batches built in the training thread
  int64_t prefetch = 4;    ///< batches queued ahead
  bool drop_last = true;
};

struct ModelOptions {
  std::string name = "resnet3d";  ///< a family (depth from model.depth) or a named preset; docs/models.md
  int64_t depth = 18;
  int64_t frames = 16;            ///< clip length T the network is built for (STC's spatial branch)
  std::string shortcut = "auto";  ///< auto (A for basic blocks, B for bottlenecks, as Hara et al.), A, B
  bool preact = false;            ///< pre-activation blocks (BN-ReLU-Conv, Table 4.1)
  int64_t stem_temporal_kernel = 0;  ///< 0: the family's default
  int64_t stem_temporal_stride = 0;  ///< 0: the family's default
  std::string stem_pool = "auto";    ///< auto, max, none
  std::vector<int64_t> temporal_strides;  ///< per stage res2..res5; empty: the family's default
  std::vector<int64_t> spatial_strides;   ///< per stage res2..res5; empty: the family's default
  double width = 1.0;             ///< width multiplier of the base width 64
  int64_t cardinality = 32;       ///< ResNeXt groups
  int64_t num_classes = 0;        ///< 0: from the dataset
  double dropout = 0.5;
  bool stc = false;               ///< STC block after every residual block
  std::string stc_branches = "both";  ///< both, tcb, scb
  int64_t stc_reduction = 4;
  std::string stc_scb_hidden = "table";  ///< SCB hidden size: table (C/r), text ((T*C)/r)
  std::string heads = "standard";  ///< standard (one head) or multitask (one per category)
  bool sgs = false;                ///< Similarity Guided Sampling
  std::string sgs_after = "res2";  ///< stage after which SGS sits
  int64_t sgs_bins = 0;            ///< 0: B = T
  int64_t sgs_dim = 8;             ///< L
  std::string sgs_kernel = "linear";        ///< linear or kronecker
  std::string sgs_measure = "mean_distance";  ///< mean_distance or magnitude
  std::string init;                ///< checkpoint or weights file to initialise from
  std::string init_layout = "auto";  ///< names in model.init: auto, holo, torchvision, pyslowfast, mmaction2
  bool init_strict = true;         ///< a tensor of model.init left unmatched stops the run (exit 2)
  int64_t tcn_stages = 4;          ///< mstcn: stages (the first on the features, the others refine)
  int64_t tcn_layers = 10;         ///< mstcn: dilated residual layers per stage (dilations 1, 2, 4, ...)
  int64_t tcn_channels = 64;       ///< mstcn: feature maps
  int64_t mucon_hidden = 128;      ///< mucon: D' of the latent Z and the LSTMs (§9.4.2)
  int64_t mucon_layers = 11;       ///< mucon: dilated layers of the backbone (§9.3.1)
  std::vector<int64_t> mucon_pool_after = {1, 2, 4, 8};  ///< mucon: 0-based layers followed by a max pool of 2
  std::string mucon_template = "box";  ///< mucon: mask template: box, bell, trapezoid (§9.3.5.2)
  double mucon_overlap = 0.0;      ///< mucon: mask overlap (Table 9.2: 0.1)
  std::string mucon_variant = "thesis";  ///< mucon: thesis or release (docs/segmentation.md)
  int64_t sct_hidden = 128;        ///< sct: D'
  int64_t sct_layers = 11;         ///< sct: dilated layers of f_e and f_r together
  std::vector<int64_t> sct_pool_after = {1, 2, 4, 8, 10};  ///< sct: 0-based layers followed by a max pool of 2
  int64_t sct_z_after = 4;         ///< sct: Z (f_s's input) is the output of this layer
  std::string sct_variant = "thesis";  ///< sct: thesis or release losses (docs/segmentation.md)
  int64_t embed_dim = 0;           ///< transformers: token width D; 0: the preset's (families: 384)
  int64_t num_heads = 0;           ///< transformers: attention heads; 0: the preset's (families: 6)
  int64_t patch_size = 16;         ///< transformers: P of the P x P patches
  int64_t image_size = 224;        ///< transformers: frame side the position embeddings are sized for
  int64_t xvit_shift_div = 4;      ///< xvit: d_h / this channels of each head from t - 1 and t + 1
  double qk_init_std = 0.02;       ///< transformers: std of the query and key weights at initialisation
  std::string token_reducer = "none";  ///< transformers: none, ats (§7.2) or tome, in model.reducer_blocks
  std::vector<int64_t> reducer_blocks;  ///< 0-based blocks with the reducer; empty: the thesis's placement
  int64_t ats_tokens = 0;          ///< ATS: K sampling points; 0: the block's input tokens
  double ats_rho = 0;              ///< ATS: > 0: K_n = max(round(rho * N_n), 8) (§7.3.4.1)
  std::string ats_variant = "thesis";  ///< ATS: thesis or release sampling (docs/models.md)
  int64_t tome_r = 8;              ///< ToMe: tokens (positions) merged per block
};

struct TaskOptions {
  std::string kind = "classification";  ///< classification, multilabel, transfer, finetune, segmentation
  std::string teacher;                  ///< transfer: 2D teacher weights file
  std::string teacher_arch = "resnet18";
  double teacher_width = 1.0;           ///< transfer: teacher width multiplier (1 for torchvision weights)
  int64_t teacher_frames = 16;          ///< transfer: frames X averaged by the teacher (§4.3: 16)
  std::string teacher_source = "online";  ///< transfer: online (the student's crop) or store
  double negative_ratio = 0.5;          ///< transfer: fraction of negative pairs
  std::vector<std::string> freeze;      ///< finetune: stages kept frozen, e.g. ["stem","res2"]
  double smoothing = 0.15;              ///< segmentation: weight of MS-TCN's truncated-MSE smoothing loss
  std::string supervision = "full";     ///< segmentation: full (frame labels), transcript, mixed, set
  double full_fraction = 0.1;           ///< segmentation, mixed: fraction of training videos with frame labels
  double length_weight = 0.1;           ///< mucon: alpha, weight of the length regulariser (§9.4.2)
  double length_width = 2.0;            ///< mucon: w of the length regulariser (9.11)
  std::string inference = "full";       ///< mucon: full, y, s, align (§9.3.8)
  double region_weight = 0.1;           ///< sct: weight of the region loss L_R
  double consistency_weight = 0.1;      ///< sct: weight of the temporal consistency loss L_C
  double sparsity_weight = 0.1;         ///< sct: weight of the inverse sparsity regulariser R_I
};

struct OptimOptions {
  std::string name = "sgd";  ///< sgd or adamw
  double lr = 0.1;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 1e-4;
  bool decay_norm_bias = false;  ///< apply weight decay to norm and bias parameters too
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double clip_grad_norm = 0.0;   ///< 0: no clipping
};

struct ScheduleOptions {
  std::string kind = "step";       ///< constant, step, multistep, cosine
  int64_t step_epochs = 30;        ///< step: divide every this many epochs
  std::vector<int64_t> milestones; ///< multistep: epochs
  double gamma = 0.1;
  double warmup_epochs = 0.0;      ///< linear warm-up
  double min_lr = 0.0;             ///< cosine floor
};

struct TrainOptions {
  int64_t epochs = 1;
  int64_t max_steps = 0;           ///< 0: no limit
  int64_t log_every = 10;          ///< steps between metric lines
  int64_t val_every = 1;           ///< epochs between validations; 0: never
  std::string precision = "fp32";  ///< fp32, bf16, fp16 (fp16 with loss scaling)
  int64_t accumulate = 1;          ///< gradient accumulation steps
  bool sync_bn = false;
};

struct CheckpointOptions {
  int64_t every_steps = 100;   ///< 0: only at the end and on preemption
  int64_t keep = 3;            ///< newest checkpoints kept
  bool background = true;      ///< write in a background thread
  std::string resume = "auto";  ///< auto (newest in the run dir), never, or a checkpoint path
  /// Another run's checkpoints in the run dir: refuse (the default) or overwrite (delete them).
  std::string existing = "refuse";
};

struct DistOptions {
  std::string backend = "auto";  ///< auto (NCCL for CUDA, MPI for CPU), mpi, nccl
  double bucket_mb = 25.0;
  double timeout_s = 60.0;       ///< collective watchdog
};

struct EvalOptions {
  std::string split = "val";  ///< val or test
  bool per_class = true;      ///< write per-class results to CSV
};

struct SlurmOptions {
  std::string partition;          ///< partition name(s), comma-separated; empty: the cluster's default
  std::string account;            ///< empty: the user's default account
  std::string qos;                ///< empty: the default QOS
  std::string time = "01:00:00";  ///< time limit per allocation: [D-]HH:MM:SS, MM, MM:SS, D-HH, D-HH:MM
  std::string constraint;         ///< node feature expression, e.g. "a100|h100"
  int64_t nodes = 1;
  int64_t gpus_per_node = 0;      ///< 0: CPU workers
  std::string gpu_type;           ///< GRES type, e.g. "a100" (--gpus-per-node=a100:4); empty: any
  int64_t tasks_per_node = 0;     ///< 0: gpus_per_node, or 1 without GPUs
  int64_t cpus_per_task = 2;
  std::string mem = "";           ///< per node, e.g. "16G"; "0": all of it; empty: the cluster's default
  int64_t max_restarts = 3;       ///< requeues after preemption before the job gives up
  int64_t grace_s = 120;          ///< seconds of warning (USR1) before the allocation ends
  std::string launcher = "srun";  ///< srun or mpirun inside the allocation
  std::string mpi = "pmix";       ///< srun --mpi plugin: pmix, pmi2, none
  std::vector<std::string> env;   ///< NAME=VALUE exported to the workers (e.g. NCCL_SOCKET_IFNAME=ib0)
};

/// A fully resolved recipe.
struct Recipe {
  RunOptions run;
  DataOptions data;
  SamplingOptions sampling;
  TransformOptions transform;
  DecodeOptions decode;
  LoaderOptions loader;
  ModelOptions model;
  TaskOptions task;
  OptimOptions optim;
  ScheduleOptions schedule;
  TrainOptions train;
  CheckpointOptions checkpoint;
  DistOptions dist;
  EvalOptions eval;
  SlurmOptions slurm;

  /// Files it was read from, the extending file last; empty for the defaults.
  std::vector<std::string> sources;
  /// Command-line overrides applied, as given ("optim.lr=0.05").
  std::vector<std::string> overrides;
  /// Where each key the files or overrides set got its value (keys left at their default
  /// are absent): for messages that name a key's file:line.
  std::map<std::string, KeySource> key_sources;
};

/// A holo::RecipeError (exit 2) about `key` at its source in `recipe`, or at its section
/// ("[data]") when the key was left at its default.
[[noreturn]] void fail_at(const Recipe& recipe, const std::string& key, const std::string& message);

// ---- The schema --------------------------------------------------------------------------

enum class ValueType { kBool, kInt, kFloat, kString, kIntList, kFloatList, kStringList };
using Value = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>,
                           std::vector<double>, std::vector<std::string>>;

const char* type_name(ValueType t);
/// A value as it would be written in TOML ("0.1", "\"sgd\"", "[1, 2]").
std::string to_toml_text(const Value& v);

/// One key of the schema.
struct KeyDef {
  std::string path;                  ///< "optim.lr"
  ValueType type;
  std::string doc;
  std::optional<double> min;         ///< numbers, and list elements
  std::optional<double> max;
  std::vector<std::string> choices;  ///< strings and string-list elements
  /// The choices are registered by the layers that implement them (core/registry.h): the
  /// names registered under `path` when the value is checked or documented.
  bool registered = false;
  /// Form a string (or each string-list element) must have beyond `choices`, e.g. a SLURM
  /// time: described for the docs in `form`, checked by `check_form` (returns the problem or "").
  std::string form;
  std::function<std::string(const std::string&)> check_form;
  bool path_like = false;            ///< relative paths resolve against the recipe's folder
  std::function<Value(const Recipe&)> get;
  std::function<void(Recipe&, const Value&)> set;
};

/// Every key, in documentation order.
const std::vector<KeyDef>& recipe_schema();
/// The key at `path`, or nullptr.
const KeyDef* find_key(const std::string& path);
/// One line per section, for the docs.
const std::vector<std::pair<std::string, std::string>>& recipe_sections();
/// The choices of `key`: its own, or the names registered under it (empty: any string).
std::vector<std::string> choices_of(const KeyDef& key);
/// Checks `value` against `key`'s range and choices; returns the problem or "".
std::string check_value(const KeyDef& key, const Value& value);
/// The nearest known key to `path` (edit distance), for "did you mean" hints; "" if none close.
std::string suggest_key(const std::string& path);

// ---- Loading -----------------------------------------------------------------------------

/// Reads `file` (following `base` chains), applies `overrides` ("a.b=value") and validates.
/// Throws holo::RecipeError naming the file, line, column and key of the first problem.
Recipe load_recipe(const std::string& file, const std::vector<std::string>& overrides = {});
/// Same from TOML text; `name` stands for the file in messages and bases resolve from the
/// current directory.
Recipe parse_recipe(const std::string& toml_text, const std::string& name,
                    const std::vector<std::string>& overrides = {});
/// The fully resolved recipe as TOML (every key, defaults included), loadable again.
std::string to_toml(const Recipe& recipe);
/// The schema as text: every key, type, default, range or choices, and meaning.
/// `markdown` gives a table per section for docs/.
std::string recipe_doc(bool markdown);

}  // namespace holo
