#include "models/weights.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "models/network.h"
#include "models/resnet2d.h"

namespace holo::models {
namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    parts.push_back(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

std::string join(const std::vector<std::string>& parts, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to && i < parts.size(); ++i) out += (out.empty() ? "" : ".") + parts[i];
  return out;
}

/// 2 for "res2" ... 5 for "res5"; 0 otherwise.
int stage_number(const std::string& part) {
  if (part.size() == 4 && part.rfind("res", 0) == 0 && part[3] >= '2' && part[3] <= '5') return part[3] - '0';
  return 0;
}

bool is_int(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// The families whose every tensor has a torchvision name.
bool torchvision_family(const std::string& family) {
  return family == "resnet2d" || family == "r3d_tv" || family == "mc3" || family == "r2plus1d";
}

// ---- torchvision -------------------------------------------------------------------------
// Image ResNets (torchvision.models.resnetNN): conv1, bn1, layer1..4.i.{conv1,bn1,...,
// downsample.0/1}, fc. Video ResNets (torchvision.models.video.{r3d_18,mc3_18,r2plus1d_18}):
// stem.0/1 (R(2+1)D: stem.0/1/3/4), layerK.i.convN.0 (conv) and convN.1 (BN); in R(2+1)D
// convN.0 is Conv2Plus1D: .0 spatial conv, .1 BN, .3 temporal conv.

std::string torchvision_2d(const std::vector<std::string>& p) {
  if (p[0] == "stem" && p.size() >= 3) return join(p, 1, p.size());
  if (p[0] == "heads" && p.size() == 3 && p[1] == "0") return "fc." + p[2];
  if (const int k = stage_number(p[0]); k && p.size() >= 3) {
    return "layer" + std::to_string(k - 1) + "." + join(p, 1, p.size());
  }
  return "";
}

std::string torchvision_3d(const std::vector<std::string>& p) {
  const std::string leaf = p.back();
  if (p[0] == "stem" && p.size() == 3) {
    static const std::map<std::string, std::string> kStem = {
        {"conv", "0"}, {"bn", "1"}, {"conv_t", "3"}, {"bn_t", "4"}};
    auto it = kStem.find(p[1]);
    return it == kStem.end() ? "" : "stem." + it->second + "." + leaf;
  }
  if (p[0] == "heads" && p.size() == 3 && p[1] == "0") return "fc." + leaf;
  const int k = stage_number(p[0]);
  if (!k || p.size() < 4 || !is_int(p[1])) return "";
  const std::string block = "layer" + std::to_string(k - 1) + "." + p[1] + ".";
  const std::string& m = p[2];
  if (m == "downsample" && p.size() == 5) return block + "downsample." + p[3] + "." + leaf;
  if (p.size() != 4) return "";
  if (m.size() == 3 && m.rfind("bn", 0) == 0) return block + "conv" + m.substr(2) + ".1." + leaf;
  if (m.size() == 5 && m.rfind("conv", 0) == 0) return block + m + ".0." + leaf;
  if (m.size() == 7 && m.rfind("conv", 0) == 0 && m[5] == '_') {
    static const std::map<char, std::string> kPart = {{'s', "0.0"}, {'m', "0.1"}, {'t', "0.3"}};
    auto it = kPart.find(m[6]);
    return it == kPart.end() ? "" : block + m.substr(0, 5) + "." + it->second + "." + leaf;
  }
  return "";
}

std::string torchvision_name(const std::string& family, const std::vector<std::string>& p) {
  if (!torchvision_family(family)) return "";
  return family == "resnet2d" ? torchvision_2d(p) : torchvision_3d(p);
}

bool x3d_family(const std::string& family) { return family == "x3d"; }

/// The 3D ResNet families with plain 3D convolutions (no STC, no (2+1)D).
bool resnet3d_family(const std::string& family) {
  return family == "resnet3d" || family == "resnext3d" || family == "r3d_tv" || family == "mc3" ||
         family == "slow_resnet" || family == "atfr_resnet3d";
}

// ---- PySlowFast ----------------------------------------------------------------------------
// slowfast/models: s1.pathway0_stem.{conv,bn} (X3D: conv_xy, conv, bn), sK.pathway0_res{i}
// with branch1/branch1_bn (shortcut) and branch2.{a,a_bn,b,b_bn,c,c_bn} (X3D: se.fc1/fc2 too),
// head.projection; X3D's conv_5, conv_5_bn and lin_5 are in the head.

std::string pyslowfast_name(const std::string& family, const std::vector<std::string>& p) {
  const bool x3d = x3d_family(family);
  if (!x3d && !resnet3d_family(family)) return "";
  const std::string leaf = p.back();
  if (p[0] == "stem" && p.size() == 3) {
    if (p[1] == "conv" || p[1] == "bn" || (x3d && p[1] == "conv_xy")) return "s1.pathway0_stem." + p[1] + "." + leaf;
    return "";
  }
  if (p[0] == "heads" && p.size() == 3 && p[1] == "0") return "head.projection." + leaf;
  const int k = stage_number(p[0]);
  if (!k || p.size() < 3) return "";
  if (x3d && k == 5 && p.size() == 3 && (p[1] == "conv_5" || p[1] == "conv_5_bn" || p[1] == "lin_5")) {
    return "head." + p[1] + "." + leaf;
  }
  if (!is_int(p[1])) return "";
  const std::string block = "s" + std::to_string(k) + ".pathway0_res" + p[1] + ".";
  const std::string rest = join(p, 2, p.size());
  if (x3d) {
    static const std::set<std::string> kBranch2 = {"a", "a_bn", "b", "b_bn", "c", "c_bn", "se"};
    if (p[2] == "branch1" || p[2] == "branch1_bn") return p.size() == 4 ? block + rest : "";
    return kBranch2.count(p[2]) ? block + "branch2." + rest : "";
  }
  static const std::map<std::string, std::string> kBlock = {
      {"conv1", "branch2.a"}, {"bn1", "branch2.a_bn"}, {"conv2", "branch2.b"}, {"bn2", "branch2.b_bn"},
      {"conv3", "branch2.c"}, {"bn3", "branch2.c_bn"}};
  if (p.size() == 4) {
    auto it = kBlock.find(p[2]);
    return it == kBlock.end() ? "" : block + it->second + "." + leaf;
  }
  if (p.size() == 5 && p[2] == "downsample") {
    if (p[3] == "0") return block + "branch1." + leaf;
    if (p[3] == "1") return block + "branch1_bn." + leaf;
  }
  return "";
}

// ---- MMAction2 -----------------------------------------------------------------------------
// mmaction/models: backbone.conv1.{conv,bn} (X3D: conv1_s.conv, conv1_t.{conv,bn}),
// backbone.layerL.i.convN.{conv,bn} (ConvModule), downsample.{conv,bn}, X3D's se_module and
// conv5; cls_head.fc_cls (X3D: cls_head.fc1 without bias, cls_head.fc2).

/// MMAction2's ResNet2Plus1d: every conv is a ConvModule around Conv2plus1d (conv_s, bn_s,
/// conv_t), the ConvModule's BN after it.
std::string mmaction2_2plus1d_name(const std::vector<std::string>& p) {
  const std::string leaf = p.back();
  if (p[0] == "stem" && p.size() == 3) {
    static const std::map<std::string, std::string> kStem = {
        {"conv", "conv.conv_s"}, {"bn", "conv.bn_s"}, {"conv_t", "conv.conv_t"}, {"bn_t", "bn"}};
    auto it = kStem.find(p[1]);
    return it == kStem.end() ? "" : "backbone.conv1." + it->second + "." + leaf;
  }
  if (p[0] == "heads" && p.size() == 3 && p[1] == "0") return "cls_head.fc_cls." + leaf;
  const int k = stage_number(p[0]);
  if (!k || p.size() < 4 || !is_int(p[1])) return "";
  const std::string block = "backbone.layer" + std::to_string(k - 1) + "." + p[1] + ".";
  const std::string& m = p[2];
  if (m == "downsample" && p.size() == 5) {
    static const std::map<std::string, std::string> kDown = {
        {"0", "conv.conv_s"}, {"1", "conv.bn_s"}, {"3", "conv.conv_t"}, {"4", "bn"}};
    auto it = kDown.find(p[3]);
    return it == kDown.end() ? "" : block + "downsample." + it->second + "." + leaf;
  }
  if (p.size() != 4) return "";
  if (m.size() == 3 && m.rfind("bn", 0) == 0) return block + "conv" + m.substr(2) + ".bn." + leaf;
  if (m.size() == 7 && m.rfind("conv", 0) == 0 && m[5] == '_') {
    static const std::map<char, std::string> kPart = {{'s', "conv_s"}, {'m', "bn_s"}, {'t', "conv_t"}};
    auto it = kPart.find(m[6]);
    return it == kPart.end() ? "" : block + m.substr(0, 5) + ".conv." + it->second + "." + leaf;
  }
  return "";
}

std::string mmaction2_name(const std::string& family, const std::vector<std::string>& p) {
  if (family == "r2plus1d_mm") return mmaction2_2plus1d_name(p);
  const bool x3d = x3d_family(family);
  if (!x3d && !resnet3d_family(family)) return "";
  const std::string leaf = p.back();
  if (p[0] == "stem" && p.size() == 3) {
    if (x3d) {
      if (p[1] == "conv_xy") return "backbone.conv1_s.conv." + leaf;
      if (p[1] == "conv") return "backbone.conv1_t.conv." + leaf;
      if (p[1] == "bn") return "backbone.conv1_t.bn." + leaf;
      return "";
    }
    if (p[1] == "conv" || p[1] == "bn") return "backbone.conv1." + p[1] + "." + leaf;
    return "";
  }
  if (p[0] == "heads" && p.size() == 3 && p[1] == "0") return (x3d ? "cls_head.fc2." : "cls_head.fc_cls.") + leaf;
  const int k = stage_number(p[0]);
  if (!k || p.size() < 3) return "";
  if (x3d && k == 5 && p.size() == 3) {
    if (p[1] == "conv_5") return "backbone.conv5.conv." + leaf;
    if (p[1] == "conv_5_bn") return "backbone.conv5.bn." + leaf;
    if (p[1] == "lin_5") return "cls_head.fc1." + leaf;  // a Linear there: shape [out, in]
    return "";
  }
  if (!is_int(p[1])) return "";
  const std::string block = "backbone.layer" + std::to_string(k - 1) + "." + p[1] + ".";
  if (x3d) {
    static const std::map<std::string, std::string> kX3d = {
        {"a", "conv1.conv"}, {"a_bn", "conv1.bn"}, {"b", "conv2.conv"}, {"b_bn", "conv2.bn"},
        {"c", "conv3.conv"}, {"c_bn", "conv3.bn"}, {"branch1", "downsample.conv"}, {"branch1_bn", "downsample.bn"}};
    if (p[2] == "se" && p.size() == 5) return block + "se_module." + p[3] + "." + leaf;
    auto it = kX3d.find(p[2]);
    return it == kX3d.end() || p.size() != 4 ? "" : block + it->second + "." + leaf;
  }
  const std::string& m = p[2];
  if (p.size() == 4 && m.size() == 5 && m.rfind("conv", 0) == 0) return block + m + ".conv." + leaf;
  if (p.size() == 4 && m.size() == 3 && m.rfind("bn", 0) == 0) return block + "conv" + m.substr(2) + ".bn." + leaf;
  if (p.size() == 5 && m == "downsample") {
    if (p[3] == "0") return block + "downsample.conv." + leaf;
    if (p[3] == "1") return block + "downsample.bn." + leaf;
  }
  return "";
}

/// Tensors whose shape differs between the layouts only by singleton dimensions (MMAction2's
/// X3D fc1 is a Linear where PySlowFast and Holo have a 1x1x1 convolution).
bool same_but_singletons(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.numel() != b.numel()) return false;
  auto strip = [](const torch::Tensor& t) {
    std::vector<int64_t> s;
    for (int64_t d : t.sizes()) {
      if (d != 1) s.push_back(d);
    }
    return s;
  };
  return strip(a) == strip(b);
}

bool is_classifier(const std::string& name) { return name.rfind("heads.", 0) == 0; }

std::string shape_text(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

/// timm's VisionTransformer (DeiT) names are Holo's transformer names with one classifier,
/// `head`; the other families have no timm layout.
std::string timm_name(const std::string& family, const std::string& name) {
  if (family != "deit" && family != "timesformer" && family != "xvit") return "";
  if (name.rfind("heads.", 0) == 0) return name.rfind("heads.0.", 0) == 0 ? "head." + name.substr(8) : "";
  return name;
}

}  // namespace

const std::vector<std::string>& weights_layout_names() {
  static const std::vector<std::string> kNames = {"holo", "torchvision", "pyslowfast", "mmaction2", "timm"};
  return kNames;
}

WeightsLayout parse_weights_layout(const std::string& name) {
  const auto& names = weights_layout_names();
  auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) {
    throw UsageError("unknown weights layout '" + name + "': holo, torchvision, pyslowfast, mmaction2 or timm");
  }
  return static_cast<WeightsLayout>(it - names.begin());
}

std::string to_string(WeightsLayout layout) { return weights_layout_names()[static_cast<size_t>(layout)]; }

std::string layout_name(WeightsLayout layout, const std::string& family, const std::string& name) {
  if (layout == WeightsLayout::kTimm) return timm_name(family, name);
  const auto p = split(name);
  if (p.size() < 2) return layout == WeightsLayout::kHolo ? name : "";
  switch (layout) {
    case WeightsLayout::kHolo: return name;
    case WeightsLayout::kTorchvision: return torchvision_name(family, p);
    case WeightsLayout::kPySlowFast: return pyslowfast_name(family, p);
    case WeightsLayout::kMmaction2: return mmaction2_name(family, p);
    case WeightsLayout::kTimm: return timm_name(family, name);
  }
  return "";
}

std::map<std::string, torch::Tensor> read_weights_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw IoError("weights file '" + path + "' does not exist");
  try {
    return read_state_dict(path);
  } catch (const IoError& e) {
    throw IoError(std::string(e.what()) +
                  "\nIf it is a training checkpoint holding other objects, save its weights alone: "
                  "python3 -c \"import torch; c = torch.load('" + path + "', map_location='cpu'); "
                  "torch.save(c.get('model_state', c.get('state_dict', c)), 'weights.pt')\"");
  }
}

ImportReport import_weights(NetworkImpl& net, const std::string& family,
                            const std::map<std::string, torch::Tensor>& file, const std::string& layout) {
  std::vector<std::pair<std::string, torch::Tensor>> dst;
  for (auto& p : net.named_parameters()) dst.emplace_back(p.key(), p.value());
  for (auto& b : net.named_buffers()) dst.emplace_back(b.key(), b.value());

  ImportReport report;
  if (layout == "auto") {
    int64_t best = -1;
    for (const auto& name : weights_layout_names()) {
      const WeightsLayout l = parse_weights_layout(name);
      int64_t found = 0;
      for (const auto& [n, t] : dst) {
        const std::string f = layout_name(l, family, n);
        if (!f.empty() && file.count(f)) ++found;
      }
      if (found > best) best = found, report.layout = l;
    }
  } else {
    report.layout = parse_weights_layout(layout);
  }

  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& [name, t] : dst) {
    const std::string f = layout_name(report.layout, family, name);
    auto it = f.empty() ? file.end() : file.find(f);
    if (f.empty()) {
      report.unmatched.push_back("network tensor '" + name + "' has no " + to_string(report.layout) + " name");
    } else if (it == file.end()) {
      report.unmatched.push_back("network tensor '" + name + "' (" + f + ") is not in the file");
    } else if (it->second.sizes() != t.sizes() && !same_but_singletons(it->second, t)) {
      used.insert(f);
      if (is_classifier(name)) {
        report.classifier_kept.push_back(name + " " + shape_text(t) + " (file " + shape_text(it->second) + ")");
      } else {
        report.unmatched.push_back("'" + f + "' is " + shape_text(it->second) + " in the file, but '" + name +
                                   "' of the network is " + shape_text(t));
      }
    } else {
      used.insert(f);
      t.copy_(it->second.reshape(t.sizes()).to(t.device(), t.scalar_type()));
      ++report.loaded;
    }
  }
  for (const auto& [f, t] : file) {
    if (!used.count(f)) report.unmatched.push_back("file tensor '" + f + "' " + shape_text(t) + " has no place in the network");
  }
  return report;
}

std::vector<std::pair<std::string, torch::Tensor>> export_weights(
    const std::vector<std::pair<std::string, torch::Tensor>>& state, const std::string& family,
    WeightsLayout layout) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  std::vector<std::string> missing;
  for (const auto& [name, t] : state) {
    const std::string f = layout_name(layout, family, name);
    if (f.empty()) {
      missing.push_back(name);
    } else if (layout == WeightsLayout::kMmaction2 && family == "x3d" && f == "cls_head.fc1.weight") {
      out.emplace_back(f, t.flatten(1));
    } else {
      out.emplace_back(f, t);
    }
  }
  if (!missing.empty()) {
    std::string msg = "a " + family + " network does not export to " + to_string(layout) + "'s names: " +
                      std::to_string(missing.size()) + " of its " + std::to_string(state.size()) +
                      " tensors have none (";
    for (size_t i = 0; i < missing.size() && i < 5; ++i) msg += (i ? ", " : "") + missing[i];
    msg += missing.size() > 5 ? ", ...)" : ")";
    if (layout == WeightsLayout::kTorchvision) {
      msg += "; torchvision's layouts are resnet*_2d, r3d_18, mc3_18 and r2plus1d_18";
    }
    throw UsageError(msg);
  }
  return out;
}

}  // namespace holo::models
