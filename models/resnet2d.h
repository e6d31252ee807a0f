#pragma once
/// 2D ResNet 18/34/50/101/152 with torchvision's parameter names and shapes (conv1, bn1,
/// layer1..layer4, fc; blocks conv1, bn1, conv2, bn2, [conv3, bn3], downsample.0/.1; ResNet
/// v1.5: the stride sits on the 3x3 convolution of bottlenecks), so that weights saved from
/// torchvision with `torch.save(model.state_dict(), f)` or `torch.jit.save(torch.jit.script(
/// model), f)` load directly. It is the teacher of 2D->3D transfer and HATNet's 2D branch.
/// Also: the knowledge-transfer head of chapter 4.3.

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "models/batch_norm.h"
#include "models/network.h"

namespace holo::models {

/// torchvision BasicBlock / Bottleneck (expansion 4), 2D.
class Block2dImpl : public torch::nn::Module {
 public:
  Block2dImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t out_channels() const { return out_; }

 private:
  bool bottleneck_;
  int64_t out_;
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<BatchNorm2d> bns_;
  torch::nn::Conv2d down_conv_{nullptr};
  BatchNorm2d down_bn_{nullptr};
};
TORCH_MODULE(Block2d);

/// Blocks per stage and block type of a depth (18, 34: basic; 50, 101, 152: bottleneck).
struct ResNet2dLayout {
  std::vector<int64_t> layers;
  bool bottleneck;
};
ResNet2dLayout resnet2d_layout(int64_t depth);

/// conv1 (7x7/2) and bn1, then ReLU and (optionally) the 3x3/2 max pool. Names conv1, bn1.
class Stem2dImpl : public torch::nn::Module {
 public:
  Stem2dImpl(int64_t out, bool max_pool);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool max_pool_;
  torch::nn::Conv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};
};
TORCH_MODULE(Stem2d);

/// The four stages of a 2D ResNet (torchvision layer1..layer4 contents).
struct Stages2d {
  std::vector<torch::nn::Sequential> stages;
  std::vector<int64_t> channels;
};
/// `width` multiplies 64, 128, 256, 512 (rounded, at least 1).
Stages2d make_stages2d(int64_t depth, int64_t in, double width);

struct ResNet2dOptions {
  explicit ResNet2dOptions(int64_t depth) : depth_(depth) {}
  TORCH_ARG(int64_t, depth);
  /// Outputs of fc; 0: no fc (features only).
  TORCH_ARG(int64_t, num_classes) = 1000;
  /// Width multiplier of 64 (1 for torchvision weights).
  TORCH_ARG(double, width) = 1.0;
  TORCH_ARG(bool, max_pool) = true;
};

/// torchvision-named 2D ResNet.
class ResNet2dImpl : public torch::nn::Module {
 public:
  explicit ResNet2dImpl(const ResNet2dOptions& options);
  /// N x 3 x H x W -> N x D pooled features.
  torch::Tensor features(const torch::Tensor& x);
  /// N x 3 x H x W -> N x num_classes.
  torch::Tensor forward(const torch::Tensor& x);
  int64_t feature_dim() const { return feature_dim_; }
  const ResNet2dOptions& options() const { return options_; }

 private:
  ResNet2dOptions options_;
  torch::nn::Conv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};
  std::vector<torch::nn::Sequential> layers_;
  torch::nn::Linear fc_{nullptr};
  int64_t feature_dim_ = 0;
};
TORCH_MODULE(ResNet2d);

/// Parameters and buffers of a file: a TorchScript module (`torch.jit.save`) or a state dict
/// saved with `torch.save` (a bare OrderedDict or a dict, also one nested under "state_dict",
/// "model_state" or "model"; read by models/torch_pickle.h). A "module." prefix (DataParallel) is removed.
/// Throws holo::IoError naming the file.
std::map<std::string, torch::Tensor> read_state_dict(const std::string& path);

/// Copies `source` into the parameters and buffers of `module`, under the same names (other
/// layouts: models/weights.h). Every parameter and buffer of `module` must be present with the
/// same shape; source entries that map to nothing are errors unless `ignore` returns true for
/// them. Throws holo::IoError naming `what` (the file) and the key.
void load_state_dict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& source,
                     const std::string& what,
                     const std::function<bool(const std::string&)>& ignore = nullptr);

/// Loads torchvision weights (state dict or TorchScript file) into a ResNet2d. With
/// num_classes 0, the file's fc is ignored.
void load_torchvision_resnet(ResNet2dImpl& model, const std::string& path);

/// Our module's state as a dict that Python's torch.load reads (torch::pickle_save format).
void save_state_dict(const torch::nn::Module& module, const std::string& path);

/// A 2D ResNet as a clip classifier: every frame through the 2D network, features averaged
/// over frames. Stages stem (conv1, bn1), res2..res5 (torchvision layer1..layer4), heads;
/// torchvision's weights import through models/weights.h like every other layout.
class ResNet2dNetworkImpl : public NetworkImpl {
 public:
  ResNet2dNetworkImpl(int64_t depth, double width, double dropout, const std::vector<int64_t>& heads);
  NetworkOutput forward_all(const torch::Tensor& clips) override;
  int64_t feature_dim() const override { return feature_dim_; }
  void reset_heads(const std::vector<int64_t>& head_sizes) override;

 private:
  Stem2d stem_{nullptr};
  std::vector<torch::nn::Sequential> stages_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::ModuleList heads_{nullptr};
  int64_t feature_dim_ = 0;
};
TORCH_MODULE(ResNet2dNetwork);

/// Knowledge-transfer head (chapter 4.3): the teacher's 2D features of each of the X frames
/// (N x X x D2, or N x D2 for one frame) go through teacher_fc (D2 -> 1024, ReLU) and are
/// averaged over the frames, "resulting in a 1024-D feature representation"; the student's clip
/// features (N x D3) through student_fc (D3 -> 1024, ReLU), the fc layer §4.3 adds after the
/// 3D network's last block. Both are concatenated (2048) -> FC 2048 -> ReLU -> FC 512 -> ReLU
/// -> FC 128 -> ReLU -> FC 2 (match / no match logits). Names teacher_fc, student_fc, fc1, fc2,
/// fc3, classifier.
class TransferHeadImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kFcDim = 1024;
  TransferHeadImpl(int64_t teacher_dim, int64_t student_dim);
  torch::Tensor forward(const torch::Tensor& teacher, const torch::Tensor& student);
  /// The teacher side alone: N x X x D2 (or N x D2) -> N x 1024, averaged over the frames.
  torch::Tensor teacher_side(const torch::Tensor& teacher);

 private:
  int64_t teacher_dim_, student_dim_;
  torch::nn::Linear teacher_fc_{nullptr}, student_fc_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr}, classifier_{nullptr};
};
TORCH_MODULE(TransferHead);

}  // namespace holo::models
