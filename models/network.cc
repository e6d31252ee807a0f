#include "models/network.h"

#include <torch/torch.h>

#include <algorithm>

#include "core/error.h"
#include "core/registry.h"
#include "models/flops.h"
#include "models/hatnet.h"
#include "models/resnet2d.h"
#include "models/resnet3d.h"
#include "models/sgs.h"
#include "models/transformer.h"
#include "models/x3d.h"

namespace holo::models {
namespace {

[[noreturn]] void fail(const std::string& key, const std::string& msg) {
  throw RecipeError("[model]", 0, 0, key, msg);
}

std::vector<int64_t> layers_for_depth(int64_t depth) {
  switch (depth) {
    case 10: return {1, 1, 1, 1};
    case 18: return {2, 2, 2, 2};
    case 34: return {3, 4, 6, 3};
    case 50: return {3, 4, 6, 3};
    case 101: return {3, 4, 23, 3};
    case 152: return {3, 8, 36, 3};
    default: fail("model.depth", "must be one of 10, 18, 34, 50, 101, 152, got " + std::to_string(depth));
  }
}

/// gamma_w of X3D-XL (2.9) over that of the other X3D networks (2.0).
constexpr double kX3dXlWidth = 2.9 / 2.0;

/// A ResNet's stages at `depth` (basic blocks below 50, bottlenecks from 50), before the family's
/// own architecture.
ResNet3dOptions resnet_defaults(int64_t depth) {
  ResNet3dOptions o;
  o.layers(layers_for_depth(depth)).bottleneck(depth >= 50);
  return o;
}

/// Each 3D ResNet family's architecture, before the recipe's overrides.
ResNet3dOptions hara(int64_t depth, int64_t) {
  // Hara et al. (2018): 7x7x7 stem, 3x3x3/2 max pool, stride 2 in all dimensions.
  return resnet_defaults(depth).shortcut(depth >= 50 ? 'B' : 'A');
}
ResNet3dOptions resnext(int64_t depth, int64_t cardinality) {
  if (depth < 50) fail("model.depth", "ResNeXt needs depth 50, 101 or 152 (bottleneck blocks)");
  return resnet_defaults(depth).widths({128, 256, 512, 1024}).expansion(2).cardinality(cardinality).shortcut('B');
}
ResNet3dOptions r2plus1d(int64_t depth, int64_t) {
  // Tran et al. (2018), as torchvision's r2plus1d_18.
  return resnet_defaults(depth).stem_style(StemStyle::k2plus1d).stem_temporal_kernel(3).stem_pool(false)
      .conv_style(ConvStyle::k2plus1d).shortcut('B');
}
ResNet3dOptions r2plus1d_mm(int64_t depth, int64_t) {
  // MMAction2's ResNet2Plus1d (r2plus1d_r34 config): Conv2plus1d in the stem (83 mid
  // channels), every block conv and every shortcut, a 1x3x3/1x2x2 max pool after the stem.
  return resnet_defaults(depth).stem_style(StemStyle::k2plus1d).stem_temporal_kernel(3).pool_kernel({1, 3, 3})
      .pool_stride({1, 2, 2}).conv_style(ConvStyle::k2plus1d_every).shortcut('B');
}
ResNet3dOptions r3d_tv(int64_t depth, int64_t) {
  // torchvision's r3d_18 (Tran et al. 2018): 3x7x7 stem with stride 1x2x2 and no pool,
  // 3x3x3 convs, stride 2 in all dimensions from res3, type-B shortcuts.
  return resnet_defaults(depth).stem_temporal_kernel(3).stem_pool(false).shortcut('B');
}
ResNet3dOptions mc3(int64_t depth, int64_t) {
  // torchvision's mc3_18 (MC3, Tran et al. 2018): the r3d stem, 3x3x3 convs in res2 only,
  // 1x3x3 convs and spatial-only strides from res3 on.
  return resnet_defaults(depth).stem_temporal_kernel(3).stem_pool(false).shortcut('B')
      .temporal_kernels({3, 1, 1, 1}).temporal_strides({1, 1, 1, 1});
}
ResNet3dOptions slow_resnet(int64_t depth, int64_t) {
  // The Slow pathway as a network of its own (Feichtenhofer et al. 2019): PySlowFast's
  // SLOW_8x8_R50 and MMAction2's slowonly_r50. 1x7x7 stem, 1x3x3/1x2x2 pool, the temporal
  // kernel 3 on the first 1x1 conv of res4 and res5 only, no temporal striding.
  return resnet_defaults(depth).stem_temporal_kernel(1).pool_kernel({1, 3, 3}).pool_stride({1, 2, 2})
      .temporal_on_first(true).temporal_kernels({1, 1, 3, 3}).temporal_strides({1, 1, 1, 1}).shortcut('B');
}
ResNet3dOptions atfr_resnet3d(int64_t depth, int64_t) {
  // Table 6.12 layout, as the authors' release builds its ResNet3D at every depth: 8-channel
  // 5x7x7 stem, 1x3x3 pool, bottlenecks of inner width 8, 64, 128, 256 (outputs 32, 256, 512,
  // 1024) with the temporal kernel on the first 1x1 conv in res2 and res5, no temporal
  // striding. Depth 18 is the modified 3DResNet-18 (two bottlenecks per stage), depth 50 the
  // 3DResNet-50 of Table 6.7 (40.8 GFLOPs at 32 x 256^2).
  if (depth != 18 && depth < 50) fail("model.depth", "atfr_resnet3d: depth 18 (Table 6.12) or 50, 101, 152");
  ResNet3dOptions o = resnet_defaults(depth);
  o.bottleneck(true).stem_temporal_kernel(5).pool_kernel({1, 3, 3}).pool_stride({1, 2, 2})
      .temporal_on_first(true).temporal_kernels({3, 1, 1, 3}).temporal_strides({1, 1, 1, 1})
      .shortcut('B').widths({8, 64, 128, 256}).stem_channels(8);
  if (depth == 18) o.layers({2, 2, 2, 2});
  return o;
}

void check_strides(const std::vector<int64_t>& v, const std::string& key) {
  if (!v.empty() && v.size() != 4) fail(key, "needs 4 values (res2..res5), got " + std::to_string(v.size()));
}

}  // namespace

namespace {

using ResNet3dFamily = ResNet3dOptions (*)(int64_t depth, int64_t cardinality);

/// A 3D ResNet family's network: its architecture with the recipe's overrides.
std::shared_ptr<NetworkImpl> build_resnet3d(ResNet3dFamily family, const holo::ModelOptions& o,
                                            const std::vector<int64_t>& heads) {
  ResNet3dOptions r = family(o.depth, o.cardinality);
  if (o.shortcut != "auto") r.shortcut(o.shortcut[0]);
  r.preact(o.preact);
  if (o.stem_temporal_kernel > 0) r.stem_temporal_kernel(o.stem_temporal_kernel);
  if (o.stem_temporal_stride > 0) r.stem_temporal_stride(o.stem_temporal_stride);
  if (o.stem_pool != "auto") r.stem_pool(o.stem_pool == "max");
  if (!o.temporal_strides.empty()) r.temporal_strides(o.temporal_strides);
  if (!o.spatial_strides.empty()) r.spatial_strides(o.spatial_strides);
  r.width(o.width).stc(o.stc).stc_tcb(o.stc_branches != "scb").stc_scb(o.stc_branches != "tcb")
      .stc_reduction(o.stc_reduction).stc_scb_hidden(parse_stc_scb_hidden(o.stc_scb_hidden))
      .frames(o.frames).dropout(o.dropout).heads(heads);
  if (o.sgs) {
    r.sgs_after(o.sgs_after).sgs_bins(o.sgs_bins).sgs_dim(o.sgs_dim)
        .sgs_kernel(parse_sgs_kernel(o.sgs_kernel)).sgs_measure(parse_sgs_measure(o.sgs_measure));
  }
  return std::make_shared<ResNet3dImpl>(r);
}

std::shared_ptr<NetworkImpl> build_resnet2d(const holo::ModelOptions& o, const std::vector<int64_t>& heads) {
  return std::make_shared<ResNet2dNetworkImpl>(o.depth, o.width, o.dropout, heads);
}

std::shared_ptr<NetworkImpl> build_hatnet(const holo::ModelOptions& o, const std::vector<int64_t>& heads) {
  return std::make_shared<HatNetImpl>(HatNetOptions(o.depth)
                                          .width(o.width)
                                          .stc(o.stc)
                                          .stc_tcb(o.stc_branches != "scb")
                                          .stc_scb(o.stc_branches != "tcb")
                                          .stc_reduction(o.stc_reduction)
                                          .stc_scb_hidden(parse_stc_scb_hidden(o.stc_scb_hidden))
                                          .frames(o.frames)
                                          .dropout(o.dropout)
                                          .heads(heads));
}

std::shared_ptr<NetworkImpl> build_x3d(const holo::ModelOptions& o, const std::vector<int64_t>& heads) {
  X3dOptions x = o.depth == 55 ? X3dOptions::l() : X3dOptions::m();
  x.width_factor(x.width_factor() * o.width).frames(o.frames).dropout(o.dropout);
  x.heads(heads);
  if (o.sgs) {
    x.sgs_after(o.sgs_after).sgs_bins(o.sgs_bins).sgs_dim(o.sgs_dim)
        .sgs_kernel(parse_sgs_kernel(o.sgs_kernel)).sgs_measure(parse_sgs_measure(o.sgs_measure));
  }
  return std::make_shared<X3dImpl>(x);
}

/// A family's entry: its builder and what it allows.
NetworkEntry family(NetworkBuilder build, bool sgs = true, bool stc = true, bool forces_stc = false) {
  NetworkEntry e;
  e.build = std::move(build);
  e.sgs = sgs;
  e.stc = stc;
  e.forces_stc = forces_stc;
  return e;
}
NetworkEntry resnet3d_family(ResNet3dFamily f, bool forces_stc = false) {
  return family([f](const holo::ModelOptions& o, const std::vector<int64_t>& heads) { return build_resnet3d(f, o, heads); },
                true, true, forces_stc);
}
/// A preset's entry: the family it selects, the depth it fixes, and SGS when it turns it on.
NetworkEntry preset(const std::string& family_name, int64_t depth, bool sgs = false, double width_factor = 1.0) {
  NetworkEntry e;
  e.family = family_name;
  e.depth = depth;
  e.sgs = sgs;
  e.width_factor = width_factor;
  return e;
}

/// A transformer preset: family, blocks, width and heads.
NetworkEntry transformer_preset(const std::string& family_name, int64_t embed_dim, int64_t heads) {
  NetworkEntry e = preset(family_name, 12);
  e.embed_dim = embed_dim;
  e.num_heads = heads;
  return e;
}
NetworkEntry transformer_family(TransformerKind kind) {
  NetworkEntry e = family([kind](const holo::ModelOptions& o, const std::vector<int64_t>& heads) {
    return build_transformer(kind, o, heads);
  }, /*sgs=*/false, /*stc=*/false);
  e.transformer = true;
  return e;
}

/// Every clip network: the families first, then the named presets (`holo model list`).
void add_networks(NetworkRegistry& r) {
  r.add("resnet3d", "3D ResNet (Hara et al.), depth 10-152", resnet3d_family(hara), "family");
  r.add("resnext3d", "3D ResNeXt, depth 50-152, model.cardinality groups", resnet3d_family(resnext), "family");
  r.add("stc_resnet", "3D ResNet with an STC block after every residual block", resnet3d_family(hara, true), "family");
  r.add("stc_resnext", "3D ResNeXt with STC blocks", resnet3d_family(resnext, true), "family");
  r.add("resnet2d", "2D ResNet on every frame, features averaged; depth 18-152",
        family(build_resnet2d, /*sgs=*/false, /*stc=*/false), "family");
  r.add("hatnet", "HATNet: 2D and 3D branches with merge-and-reduction; depth 18-101",
        family(build_hatnet, /*sgs=*/false), "family");
  r.add("r2plus1d", "R(2+1)D, depth 10-152", resnet3d_family(r2plus1d), "family");
  r.add("atfr_resnet3d", "ATFR backbone layout (Table 6.12); depth 18, 50, 101, 152", resnet3d_family(atfr_resnet3d), "family");
  r.add("r3d_tv", "3D ResNet as torchvision's r3d: 3x7x7 stem, no pool; depth 10-152", resnet3d_family(r3d_tv), "family");
  r.add("mc3", "MC3 as torchvision's mc3: 3D res2, 1x3x3 res3-res5; depth 10-152", resnet3d_family(mc3), "family");
  r.add("slow_resnet", "Slow pathway ResNet (SlowFast's Slow-only): temporal kernels in res4-res5 only; depth 18-152",
        resnet3d_family(slow_resnet), "family");
  r.add("r2plus1d_mm", "R(2+1)D as MMAction2's ResNet2Plus1d: factorised shortcuts, stem pool; depth 10-152",
        resnet3d_family(r2plus1d_mm), "family");
  NetworkEntry x3d = family(build_x3d, /*sgs=*/true, /*stc=*/false);
  x3d.depths = {26, 55};
  x3d.depth_rule = "x3d counts residual blocks: 26 (X3D-S/M) or 55 (X3D-L/XL)";
  r.add("x3d", "X3D; depth = residual blocks: 26 (S, M) or 55 (L, XL); width scales gamma_w 2.0", x3d, "family");
  r.add("deit", "DeiT / ViT (timm names): frames as images, features averaged; depth = blocks, model.embed_dim, model.num_heads",
        transformer_family(TransformerKind::kDeit), "family");
  r.add("timesformer", "TimeSformer, divided space-time attention (Bertasius et al. 2021); depth = blocks",
        transformer_family(TransformerKind::kTimesformer), "family");
  r.add("xvit", "XViT, space-time mixing attention and temporal attention head (Bulat et al. 2021); depth = blocks",
        transformer_family(TransformerKind::kXvit), "family");

  for (int64_t d : {18, 34, 50, 101}) {
    r.add("resnet" + std::to_string(d) + "_2d", "2D ResNet-" + std::to_string(d) + " (torchvision names), frames averaged",
          preset("resnet2d", d), "preset");
  }
  for (int64_t d : {10, 18, 34, 50, 101, 152}) {
    r.add("r3d" + std::to_string(d), "3D ResNet-" + std::to_string(d) + " (Hara et al.)", preset("resnet3d", d), "preset");
  }
  for (int64_t d : {50, 101}) {
    r.add("rx3d" + std::to_string(d), "3D ResNeXt-" + std::to_string(d) + ", cardinality 32", preset("resnext3d", d), "preset");
  }
  for (int64_t d : {18, 50, 101}) {
    r.add("stc_resnet" + std::to_string(d), "STC-ResNet-" + std::to_string(d) + ": STC block after every residual block",
          preset("stc_resnet", d), "preset");
  }
  for (int64_t d : {50, 101}) {
    r.add("stc_resnext" + std::to_string(d), "STC-ResNeXt-" + std::to_string(d) + " (Table 4.1)", preset("stc_resnext", d), "preset");
  }
  for (int64_t d : {18, 50}) {
    r.add("hatnet_r" + std::to_string(d), "HATNet: 2D + 3D ResNet-" + std::to_string(d) + " with merge-and-reduction blocks",
          preset("hatnet", d), "preset");
  }
  r.add("r3d18_atfr", "modified 3DResNet-18 (Table 6.12) + SGS after res2", preset("atfr_resnet3d", 18, true), "preset");
  r.add("r3d50_atfr", "3DResNet-50 (Table 6.12 layout) + SGS after res2", preset("atfr_resnet3d", 50, true), "preset");
  for (int64_t d : {18, 50}) {
    r.add("r2plus1d" + std::to_string(d), "R(2+1)D-" + std::to_string(d) + " (Tran et al.)", preset("r2plus1d", d), "preset");
  }
  // torchvision's video models under torchvision's names (their weights import exactly).
  r.add("r3d_18", "torchvision's r3d_18 (3x7x7 stem, no pool)", preset("r3d_tv", 18), "preset");
  r.add("mc3_18", "torchvision's mc3_18 (3D res2, 2D res3-res5)", preset("mc3", 18), "preset");
  r.add("r2plus1d_18", "torchvision's r2plus1d_18 (= r2plus1d18)", preset("r2plus1d", 18), "preset");
  r.add("r2plus1d_r34", "MMAction2's R(2+1)D-34 (r2plus1d_r34; Conv2plus1d shortcuts)", preset("r2plus1d_mm", 34), "preset");
  r.add("slow_r50", "Slow-only ResNet-50 (PySlowFast SLOW_8x8_R50, MMAction2 slowonly_r50)", preset("slow_resnet", 50), "preset");
  for (int64_t d : {18, 50}) {
    r.add("r2plus1d" + std::to_string(d) + "_atfr", "R(2+1)D-" + std::to_string(d) + " + SGS after res2",
          preset("r2plus1d", d, true), "preset");
  }
  // X3D: model.depth counts the residual blocks (26: gamma_d 2.2, 55: gamma_d 5.0); XL is
  // the L network at 1.45 times the width (gamma_w 2.9).
  struct X3dPreset { std::string suffix; int64_t depth; std::string label, cost; double width; };
  const std::vector<X3dPreset> x3ds = {{"s", 26, "X3D-S", "13x160: 1.96 GFLOPs", 1.0},
                                       {"m", 26, "X3D-M", "16x224: 4.73 GFLOPs", 1.0},
                                       {"l", 55, "X3D-L", "16x312: 18.37 GFLOPs", 1.0},
                                       {"xl", 55, "X3D-XL", "16x312: 35.84 GFLOPs", kX3dXlWidth}};
  for (const auto& x : x3ds) {
    r.add("x3d_" + x.suffix, x.label + " (Feichtenhofer 2020; " + x.cost + ")", preset("x3d", x.depth, false, x.width), "preset");
  }
  // Transformers (chapter 7): token reduction with model.token_reducer (ATS or ToMe).
  r.add("deit_ti", "DeiT-Ti (deit_tiny_patch16_224: D 192, 3 heads, 12 blocks; 5.7M parameters)", transformer_preset("deit", 192, 3), "preset");
  r.add("deit_s", "DeiT-S (deit_small_patch16_224: D 384, 6 heads; 22.05M, 4.6 GFLOPs, Table 7.6)", transformer_preset("deit", 384, 6), "preset");
  r.add("deit_b", "DeiT-B (deit_base_patch16_224: D 768, 12 heads; 86.6M)", transformer_preset("deit", 768, 12), "preset");
  r.add("timesformer_s", "TimeSformer at DeiT-S's size (D 384, 6 heads, 12 blocks)", transformer_preset("timesformer", 384, 6), "preset");
  r.add("timesformer_b", "TimeSformer-B (D 768, 12 heads, 12 blocks; Table 7.7)", transformer_preset("timesformer", 768, 12), "preset");
  r.add("xvit_s", "XViT at DeiT-S's size (D 384, 6 heads, 12 blocks)", transformer_preset("xvit", 384, 6), "preset");
  r.add("xvit_b", "XViT-B/16 (D 768, 12 heads, 12 blocks; Tables 7.5, 7.7)", transformer_preset("xvit", 768, 12), "preset");
  for (const auto& x : x3ds) {
    r.add("x3d_" + x.suffix + "_atfr", x.label + " + SGS after res2 (Tables 6.6-6.9)", preset("x3d", x.depth, true, x.width),
          "preset");
  }
}

}  // namespace

const NetworkRegistry& networks() {
  static const NetworkRegistry registry = [] {
    NetworkRegistry r("model.name", "network");
    add_networks(r);
    return r;
  }();
  return registry;
}

void register_networks() { networks(); }

holo::ModelOptions resolve_model(const holo::ModelOptions& options) {
  holo::ModelOptions o = options;
  const NetworkEntry* e = networks().find(o.name);
  if (e == nullptr) fail("model.name", "unknown network '" + o.name + "' (see `holo model list`)");
  if (!e->family.empty()) {
    const holo::ModelOptions defaults;
    if (o.depth != defaults.depth && o.depth != e->depth) {
      fail("model.depth", "is " + std::to_string(o.depth) + " but model.name '" + o.name +
                              "' is depth " + std::to_string(e->depth));
    }
    if (e->embed_dim > 0) {
      if (o.embed_dim != 0 && o.embed_dim != e->embed_dim) {
        fail("model.embed_dim", "is " + std::to_string(o.embed_dim) + " but model.name '" + o.name + "' has D = " +
                                    std::to_string(e->embed_dim));
      }
      if (o.num_heads != 0 && o.num_heads != e->num_heads) {
        fail("model.num_heads", "is " + std::to_string(o.num_heads) + " but model.name '" + o.name + "' has " +
                                    std::to_string(e->num_heads) + " heads");
      }
      o.embed_dim = e->embed_dim;
      o.num_heads = e->num_heads;
    }
    o.name = e->family;
    o.depth = e->depth;
    if (e->sgs) o.sgs = true;
    o.width *= e->width_factor;
    e = &networks().at(o.name);
  }
  if (e->forces_stc) o.stc = true;
  check_strides(o.temporal_strides, "model.temporal_strides");
  check_strides(o.spatial_strides, "model.spatial_strides");
  if (!e->sgs && o.sgs) fail("model.sgs", "SGS is available in the 3D families only, not '" + o.name + "'");
  if (!e->stc && o.stc) fail("model.stc", "STC is available in the ResNet families and HATNet, not '" + o.name + "'");
  if (!e->transformer && o.token_reducer != "none") {
    fail("model.token_reducer", "token reduction is available in the transformers only, not '" + o.name + "'");
  }
  if (e->depths.empty() && !e->transformer) layers_for_depth(o.depth);  // a ResNet depth
  if (!e->depths.empty() && std::find(e->depths.begin(), e->depths.end(), o.depth) == e->depths.end()) {
    fail("model.depth", e->depth_rule + ", got " + std::to_string(o.depth));
  }
  return o;
}

std::shared_ptr<NetworkImpl> build_network(const holo::ModelOptions& options,
                                           const std::vector<int64_t>& head_sizes) {
  if (head_sizes.empty()) fail("model.heads", "a network needs at least one head");
  for (auto h : head_sizes) {
    if (h < 1) fail("model.num_classes", "every head needs at least one output, got " + std::to_string(h));
  }
  const holo::ModelOptions o = resolve_model(options);
  if (o.heads == "standard" && head_sizes.size() != 1) {
    fail("model.heads", "standard heads take one size, got " + std::to_string(head_sizes.size()));
  }
  return networks().at(o.name).build(o, head_sizes);
}

ClipCosts NetworkImpl::clip_costs(const torch::Tensor& clips, const NetworkOutput& out) {
  ClipCosts costs;
  if (out.reported("gflops").defined()) {
    // The network counted each clip's cost itself (the transformers: only the tokens it kept).
    for (const auto& name : clip_cost_names()) {
      const torch::Tensor v = out.reported(name);
      if (v.defined()) costs[name] = v.detach().to(torch::kCPU, torch::kFloat64);
    }
    return costs;
  }
  const torch::Tensor reported = out.reported("active_bins");
  if (!reported.defined()) return costs;
  const torch::Tensor bins = reported.to(torch::kCPU, torch::kLong);
  const int64_t n = bins.size(0);
  torch::Tensor gflops = torch::empty({n}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = bins[i].item<int64_t>();
    const std::vector<int64_t> key = {b, clips.size(2), clips.size(3), clips.size(4)};
    auto it = macs_by_bins_.find(key);
    if (it == macs_by_bins_.end()) {
      // One zero clip in eval mode (BatchNorm's running statistics untouched) with SGS held at b.
      const bool was_training = is_training();
      eval();
      double macs = 0;
      {
        torch::NoGradGuard no_grad;
        SgsForcedBins forced(b);
        FlopRecorder recorder;
        forward_all(torch::zeros({1, clips.size(1), clips.size(2), clips.size(3), clips.size(4)}, clips.options()));
        recorder.finish();
        macs = recorder.total_macs();
      }
      train(was_training);
      it = macs_by_bins_.emplace(key, macs).first;
    }
    gflops[i] = it->second / 1e9;
  }
  costs["active_bins"] = bins.to(torch::kFloat64);
  costs["gflops"] = gflops;
  return costs;
}

torch::nn::ModuleList make_heads(int64_t in_features, const std::vector<int64_t>& sizes) {
  torch::nn::ModuleList heads;
  for (auto s : sizes) heads->push_back(torch::nn::Linear(in_features, s));
  return heads;
}

std::vector<torch::Tensor> apply_heads(const torch::nn::ModuleList& heads, const torch::Tensor& x) {
  std::vector<torch::Tensor> out;
  for (const auto& m : *heads) {
    auto linear = std::dynamic_pointer_cast<torch::nn::LinearImpl>(m);
    torch::nn::Linear holder(linear);
    out.push_back(counted(holder, x));
  }
  return out;
}

void init_resnet_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* c = m->as<torch::nn::Conv3d>()) {
      torch::nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
    } else if (auto* c2 = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(c2->weight, 0, torch::kFanOut, torch::kReLU);
    } else if (auto* b = m->as<torch::nn::BatchNorm3d>()) {
      b->weight.fill_(1);
      b->bias.zero_();
    } else if (auto* b2 = m->as<torch::nn::BatchNorm2d>()) {
      b2->weight.fill_(1);
      b2->bias.zero_();
    } else if (auto* b3 = m->as<BatchNorm3d>()) {  // models/batch_norm.h
      b3->weight.fill_(1);
      b3->bias.zero_();
    } else if (auto* b4 = m->as<BatchNorm2d>()) {
      b4->weight.fill_(1);
      b4->bias.zero_();
    }
  }
}

int64_t count_parameters(const torch::nn::Module& module, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& p : module.named_parameters(true)) {
    if (p.key().rfind(prefix, 0) == 0) n += p.value().numel();
  }
  return n;
}

}  // namespace holo::models
