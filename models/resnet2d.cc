#include "models/resnet2d.h"

#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <fstream>
#include <iterator>
#include <set>

#include "core/error.h"
#include "models/flops.h"
#include "models/torch_pickle.h"

namespace holo::models {
namespace {

using torch::nn::Conv2d;
using torch::nn::Conv2dOptions;

Conv2d conv2d(int64_t in, int64_t out, int64_t k, int64_t stride) {
  return Conv2d(Conv2dOptions(in, out, k).stride(stride).padding(k / 2).bias(false));
}

}  // namespace

Block2dImpl::Block2dImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck)
    : bottleneck_(bottleneck), out_(bottleneck ? planes * 4 : planes) {
  if (!bottleneck) {
    convs_ = {register_module("conv1", conv2d(in, planes, 3, stride)),
              register_module("conv2", conv2d(planes, planes, 3, 1))};
    bns_ = {register_module("bn1", BatchNorm2d(planes)), register_module("bn2", BatchNorm2d(planes))};
  } else {
    convs_ = {register_module("conv1", conv2d(in, planes, 1, 1)),
              register_module("conv2", conv2d(planes, planes, 3, stride)),
              register_module("conv3", conv2d(planes, out_, 1, 1))};
    bns_ = {register_module("bn1", BatchNorm2d(planes)), register_module("bn2", BatchNorm2d(planes)),
            register_module("bn3", BatchNorm2d(out_))};
  }
  if (stride != 1 || in != out_) {
    down_conv_ = conv2d(in, out_, 1, stride);
    down_bn_ = BatchNorm2d(out_);
    register_module("downsample", torch::nn::Sequential(down_conv_, down_bn_));
  }
}

torch::Tensor Block2dImpl::forward(const torch::Tensor& x) {
  auto out = x;
  for (size_t i = 0; i < convs_.size(); ++i) {
    out = bns_[i]->forward(counted(convs_[i], out));
    if (i + 1 < convs_.size()) out = torch::relu(out);
  }
  auto identity = down_conv_ ? down_bn_->forward(counted(down_conv_, x)) : x;
  return torch::relu(out + identity);
}

ResNet2dLayout resnet2d_layout(int64_t depth) {
  switch (depth) {
    case 18: return {{2, 2, 2, 2}, false};
    case 34: return {{3, 4, 6, 3}, false};
    case 50: return {{3, 4, 6, 3}, true};
    case 101: return {{3, 4, 23, 3}, true};
    case 152: return {{3, 8, 36, 3}, true};
    default:
      throw RecipeError("[model]", 0, 0, "model.depth",
                        "2D ResNet depth must be 18, 34, 50, 101 or 152, got " + std::to_string(depth));
  }
}

Stem2dImpl::Stem2dImpl(int64_t out, bool max_pool) : max_pool_(max_pool) {
  conv1_ = register_module("conv1", conv2d(3, out, 7, 2));
  bn1_ = register_module("bn1", BatchNorm2d(out));
}

torch::Tensor Stem2dImpl::forward(const torch::Tensor& x) {
  auto h = torch::relu(bn1_->forward(counted(conv1_, x)));
  if (max_pool_) h = torch::max_pool2d(h, {3, 3}, {2, 2}, {1, 1});
  return h;
}

Stages2d make_stages2d(int64_t depth, int64_t in, double width) {
  const ResNet2dLayout layout = resnet2d_layout(depth);
  Stages2d out;
  const int64_t planes[] = {64, 128, 256, 512};
  for (size_t s = 0; s < 4; ++s) {
    const int64_t p = std::max<int64_t>(1, std::llround(planes[s] * width));
    torch::nn::Sequential stage;
    for (int64_t b = 0; b < layout.layers[s]; ++b) {
      Block2d block(in, p, (b == 0 && s > 0) ? 2 : 1, layout.bottleneck);
      in = block->out_channels();
      stage->push_back(block);
    }
    out.stages.push_back(stage);
    out.channels.push_back(in);
  }
  return out;
}

ResNet2dImpl::ResNet2dImpl(const ResNet2dOptions& o) : options_(o) {
  const int64_t stem = std::max<int64_t>(1, std::llround(64 * o.width()));
  conv1_ = register_module("conv1", conv2d(3, stem, 7, 2));
  bn1_ = register_module("bn1", BatchNorm2d(stem));
  Stages2d st = make_stages2d(o.depth(), stem, o.width());
  for (size_t s = 0; s < 4; ++s) {
    layers_.push_back(register_module("layer" + std::to_string(s + 1), st.stages[s]));
  }
  feature_dim_ = st.channels[3];
  if (o.num_classes() > 0) fc_ = register_module("fc", torch::nn::Linear(feature_dim_, o.num_classes()));
  init_resnet_weights(*this);
}

torch::Tensor ResNet2dImpl::features(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "ResNet2d: input must be N x 3 x H x W, got ", x.sizes());
  auto h = torch::relu(bn1_->forward(counted(conv1_, x)));
  if (options_.max_pool()) h = torch::max_pool2d(h, {3, 3}, {2, 2}, {1, 1});
  for (auto& l : layers_) h = l->forward(h);
  return h.mean({2, 3});
}

torch::Tensor ResNet2dImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(fc_, "ResNet2d built without fc (num_classes 0): use features()");
  return counted(fc_, features(x));
}

// ---- weights -----------------------------------------------------------------------------

std::map<std::string, torch::Tensor> read_state_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open weights file");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::string, torch::Tensor> out;
  auto add = [&](std::string name, const torch::Tensor& t) {
    if (name.rfind("module.", 0) == 0) name = name.substr(7);
    out[name] = t;
  };
  // A TorchScript archive has code/ and constants.pkl; torch.save's has only data.pkl.
  // The zip's central directory at the end names every record.
  const size_t tail_from = bytes.size() > (1 << 20) ? bytes.size() - (1 << 20) : 0;
  const std::string tail(bytes.begin() + static_cast<std::ptrdiff_t>(tail_from), bytes.end());
  const bool scripted = tail.find("constants.pkl") != std::string::npos;
  if (scripted) {
    torch::jit::Module m;
    try {
      m = torch::jit::load(path, torch::kCPU);
    } catch (const c10::Error& e) {
      throw IoError(path + ": not a readable TorchScript file: " + e.what_without_backtrace());
    }
    for (const auto& p : m.named_parameters(true)) add(p.name, p.value);
    for (const auto& b : m.named_buffers(true)) add(b.name, b.value);
    return out;
  }
  // torch.save files: the strict reader first, since LibTorch 1.13's unpickler turns
  // collections.OrderedDict (what state_dict() returns) into None; LibTorch's unpickler only
  // for files outside that reader's format (its error is reported if both fail).
  try {
    for (const auto& kv : read_torch_save_state_dict(path)) add(kv.first, kv.second);
  } catch (const UnsupportedPickleError& strict) {
    c10::IValue v;
    try {
      v = torch::pickle_load(bytes);
    } catch (const c10::Error&) {
      throw strict;
    }
    if (v.isGenericDict()) {
      auto d = v.toGenericDict();
      for (const char* nested : {"state_dict", "model_state", "model"}) {
        if (d.contains(nested) && d.at(nested).isGenericDict()) {
          d = d.at(nested).toGenericDict();
          break;
        }
      }
      for (const auto& kv : d) {
        if (!kv.key().isString()) continue;
        if (kv.value().isTensor()) add(kv.key().toStringRef(), kv.value().toTensor());
      }
    }
    if (out.empty()) throw strict;
  }
  if (out.empty()) throw IoError(path + ": no tensors found (expected a state dict)");
  return out;
}

void load_state_dict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& source,
                     const std::string& what,
                     const std::function<bool(const std::string&)>& ignore) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  auto copy = [&](const std::string& name, torch::Tensor& dst) {
    const std::string& key = name;
    auto it = source.find(key);
    if (it == source.end()) throw IoError(what + ": missing key '" + key + "'");
    if (it->second.sizes() != dst.sizes()) {
      throw IoError(what + ": key '" + key + "' has shape " + c10::str(it->second.sizes()) +
                    ", expected " + c10::str(dst.sizes()));
    }
    dst.copy_(it->second.to(dst.dtype()));
    used.insert(key);
  };
  for (auto& p : module.named_parameters(true)) copy(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) copy(b.key(), b.value());
  for (const auto& kv : source) {
    if (used.count(kv.first) == 0 && !(ignore && ignore(kv.first))) {
      throw IoError(what + ": unexpected key '" + kv.first + "'");
    }
  }
}

void load_torchvision_resnet(ResNet2dImpl& model, const std::string& path) {
  const bool has_fc = model.options().num_classes() > 0;
  load_state_dict(model, read_state_dict(path), path, [has_fc](const std::string& k) {
    return !has_fc && k.rfind("fc.", 0) == 0;
  });
}

void save_state_dict(const torch::nn::Module& module, const std::string& path) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& p : module.named_parameters(true)) dict.insert(p.key(), p.value().detach().cpu().contiguous());
  for (const auto& b : module.named_buffers(true)) dict.insert(b.key(), b.value().detach().cpu().contiguous());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) throw IoError(path + ": cannot write");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw IoError(path + ": write failed");
  }
  std::rename(tmp.c_str(), path.c_str());
}

// ---- 2D network --------------------------------------------------------------------------

ResNet2dNetworkImpl::ResNet2dNetworkImpl(int64_t depth, double width, double dropout,
                                         const std::vector<int64_t>& heads) {
  const int64_t stem = std::max<int64_t>(1, std::llround(64 * width));
  stem_ = register_module("stem", Stem2d(stem, true));
  Stages2d st = make_stages2d(depth, stem, width);
  for (size_t s = 0; s < 4; ++s) stages_.push_back(register_module("res" + std::to_string(s + 2), st.stages[s]));
  feature_dim_ = st.channels[3];
  dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
  heads_ = register_module("heads", make_heads(feature_dim_, heads));
  init_resnet_weights(*this);
}

NetworkOutput ResNet2dNetworkImpl::forward_all(const torch::Tensor& clips) {
  TORCH_CHECK(clips.dim() == 5, "clips must be N x C x T x H x W, got ", clips.sizes());
  const int64_t n = clips.size(0), t = clips.size(2);
  auto frames = clips.transpose(1, 2).reshape({n * t, clips.size(1), clips.size(3), clips.size(4)});
  auto x = stem_->forward(frames);
  flops_stage("stem", x.sizes().vec());
  for (size_t s = 0; s < stages_.size(); ++s) {
    x = stages_[s]->forward(x);
    flops_stage("res" + std::to_string(s + 2), x.sizes().vec());
  }
  NetworkOutput out;
  out.features = x.mean({2, 3}).view({n, t, -1}).mean(1);
  out.logits = apply_heads(heads_, dropout_->forward(out.features));
  flops_stage("heads", out.logits.at(0).sizes().vec());
  return out;
}

void ResNet2dNetworkImpl::reset_heads(const std::vector<int64_t>& head_sizes) {
  heads_ = replace_module("heads", make_heads(feature_dim_, head_sizes));
}

// ---- transfer head -----------------------------------------------------------------------

TransferHeadImpl::TransferHeadImpl(int64_t teacher_dim, int64_t student_dim)
    : teacher_dim_(teacher_dim), student_dim_(student_dim) {
  teacher_fc_ = register_module("teacher_fc", torch::nn::Linear(teacher_dim, kFcDim));
  student_fc_ = register_module("student_fc", torch::nn::Linear(student_dim, kFcDim));
  fc1_ = register_module("fc1", torch::nn::Linear(2 * kFcDim, 2048));
  fc2_ = register_module("fc2", torch::nn::Linear(2048, 512));
  fc3_ = register_module("fc3", torch::nn::Linear(512, 128));
  classifier_ = register_module("classifier", torch::nn::Linear(128, 2));
}

torch::Tensor TransferHeadImpl::teacher_side(const torch::Tensor& teacher) {
  auto t = teacher.dim() == 2 ? teacher.unsqueeze(1) : teacher;
  TORCH_CHECK(t.dim() == 3 && t.size(2) == teacher_dim_, "transfer head: teacher features must be N x X x ",
              teacher_dim_, " (or N x ", teacher_dim_, "), got ", teacher.sizes());
  const int64_t n = t.size(0), x = t.size(1);
  auto f = torch::relu(counted(teacher_fc_, t.reshape({n * x, teacher_dim_})));
  return f.view({n, x, kFcDim}).mean(1);
}

torch::Tensor TransferHeadImpl::forward(const torch::Tensor& teacher, const torch::Tensor& student) {
  auto t = teacher_side(teacher);
  TORCH_CHECK(student.dim() == 2 && student.size(1) == student_dim_ && student.size(0) == t.size(0),
              "transfer head: student features must be N x ", student_dim_, ", got ", student.sizes());
  auto s = torch::relu(counted(student_fc_, student));
  auto h = torch::cat({t, s}, 1);
  h = torch::relu(counted(fc1_, h));
  h = torch::relu(counted(fc2_, h));
  h = torch::relu(counted(fc3_, h));
  return counted(classifier_, h);
}

}  // namespace holo::models
