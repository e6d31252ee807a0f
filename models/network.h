#pragma once
/// The networks of holo::models behind one interface, built by name from a recipe's [model]
/// table. Families and named presets are listed by `holo model list` and in docs/models.md.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "core/registry.h"

namespace holo::models {

/// What one forward pass of a network gives.
struct NetworkOutput {
  std::vector<torch::Tensor> logits;  ///< one per head: standard = 1, multitask = one per category (HVU: 6)
  torch::Tensor features;             ///< pooled clip features N x D (before dropout and heads)
  /// What the network reports per clip beyond logits and features, by name, in one general
  /// form: "active_bins" (SGS: int64 N, the bins B' each clip kept); a network whose computation
  /// is the same for every clip reports nothing. clip_costs() turns them into per-clip costs.
  std::map<std::string, torch::Tensor> per_clip;
  /// per_clip[name], or an undefined tensor when the network does not report it.
  torch::Tensor reported(const std::string& name) const {
    const auto it = per_clip.find(name);
    return it == per_clip.end() ? torch::Tensor() : it->second;
  }
};

/// What a network's cost was for each clip of a batch, where it varies per clip: name -> float64
/// N values. SGS networks give "active_bins" (B') and "gflops" (of that clip alone, for its B');
/// networks whose cost is fixed give nothing. Training records the mean, min and max of each in
/// metrics.jsonl, evaluation in its JSON (docs/models.md, "Cost on real runs").
using ClipCosts = std::map<std::string, torch::Tensor>;

/// A clip classifier. Submodules are registered under the names stem, res2, res3, res4, res5
/// (and sgs, merge*, ...), heads, so that parameter names start with the stage (freezing
/// stages = prefix match).
class NetworkImpl : public torch::nn::Module {
 public:
  /// clips N x C x T x H x W.
  virtual NetworkOutput forward_all(const torch::Tensor& clips) = 0;
  /// D of NetworkOutput::features.
  virtual int64_t feature_dim() const = 0;
  /// Replaces the heads (fine-tuning): one linear layer per size, freshly initialised.
  virtual void reset_heads(const std::vector<int64_t>& head_sizes) = 0;
  /// The logits of the first head.
  torch::Tensor forward(const torch::Tensor& clips) { return forward_all(clips).logits.at(0); }

  /// The per-clip costs of `out`, the output of forward_all on `clips` (empty when the cost does
  /// not vary). A network that reports "gflops" in per_clip counted them itself (the
  /// transformers with token reduction: "gflops" and "tokens_<block>"); they are returned as
  /// they are. GFLOPs of a clip with B' bins are measured once per (B', clip shape): the network
  /// runs on a zero clip in eval mode with its SGS layers held at B' (SgsForcedBins), and the
  /// figure is cached.
  ClipCosts clip_costs(const torch::Tensor& clips, const NetworkOutput& out);
  /// The names clip_costs() gives for this network, whatever the clips (every rank agrees).
  virtual std::vector<std::string> clip_cost_names() const { return {}; }

 private:
  std::map<std::vector<int64_t>, double> macs_by_bins_;  // {B', T, H, W} -> MACs of one clip
};

/// Builds the network named by options.name (family or preset) with one head per entry of
/// `head_sizes` (at least one; each >= 1). Throws holo::RecipeError for inconsistent options
/// (a preset's depth contradicted by model.depth, stride lists not of 4 values, ...).
std::shared_ptr<NetworkImpl> build_network(const holo::ModelOptions& options,
                                           const std::vector<int64_t>& head_sizes);

/// Builds a family's network from resolved options and the head sizes.
using NetworkBuilder =
    std::function<std::shared_ptr<NetworkImpl>(const holo::ModelOptions&, const std::vector<int64_t>& head_sizes)>;

/// One clip network under model.name (core/registry.h): a family, which builds, or a named
/// preset, which selects a family and fixes its depth.
struct NetworkEntry {
  std::string family;         ///< preset: the family it selects; "" for a family
  int64_t depth = 0;          ///< preset: the depth it fixes
  bool sgs = false;           ///< preset: turns SGS on (the *_atfr presets); family: allows SGS
  double width_factor = 1.0;  ///< preset: multiplies model.width (X3D-XL)
  int64_t embed_dim = 0;      ///< preset: a transformer's token width D (model.embed_dim)
  int64_t num_heads = 0;      ///< preset: a transformer's attention heads (model.num_heads)
  bool stc = false;           ///< family: allows STC blocks (model.stc)
  bool forces_stc = false;    ///< family: always has them (stc_resnet, stc_resnext)
  bool transformer = false;   ///< family: takes model.token_reducer
  std::vector<int64_t> depths;  ///< family: the depths it accepts, when not a ResNet's
  std::string depth_rule;       ///< family: why (for the message)
  NetworkBuilder build;         ///< family
};
using NetworkRegistry = holo::Registry<NetworkEntry>;

/// The clip networks: adding one is its files and a line in models/network.cc's add_networks.
const NetworkRegistry& networks();
/// Registers them under model.name; train/registry.h calls it.
void register_networks();

/// options with a preset expanded into family, depth and SGS, and checked: the result's name
/// is always a family. Throws holo::RecipeError naming the key at fault.
holo::ModelOptions resolve_model(const holo::ModelOptions& options);

// ---- shared pieces of the networks ------------------------------------------------------

/// Linear heads, one per size; register the result as "heads".
torch::nn::ModuleList make_heads(int64_t in_features, const std::vector<int64_t>& sizes);
/// Applies every head of `heads` to `x`.
std::vector<torch::Tensor> apply_heads(const torch::nn::ModuleList& heads, const torch::Tensor& x);
/// Kaiming-normal (fan_out, ReLU) for convolutions, ones/zeros for norms, as He et al. and
/// Hara et al. initialise ResNets.
void init_resnet_weights(torch::nn::Module& module);
/// Number of parameters (elements) of `module` whose name starts with `prefix` ("" = all).
int64_t count_parameters(const torch::nn::Module& module, const std::string& prefix = "");

}  // namespace holo::models
