#pragma once
// What the segmentation tests (MS-TCN, MuCon, SCT) share: loading a PyTorch twin's state dict
// into a Holo network by name, reading a .npy matrix as a tensor, and comparing two runs'
// newest checkpoints tensor by tensor.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "checkpoints/checkpoint.h"
#include "models/resnet2d.h"
#include "pipeline/segmentation_data.h"

namespace holo::testing {

/// Copies every tensor of the state dict at `path` (torch.save of a twin's state_dict()) into the
/// parameter of `net` of the same name; fails the test when a name is missing on either side.
inline void load_twin_state(torch::nn::Module& net, const std::string& path) {
  const auto state = models::read_state_dict(path);
  torch::NoGradGuard no_grad;
  size_t loaded = 0;
  for (auto& p : net.named_parameters()) {
    ASSERT_TRUE(state.count(p.key())) << p.key() << " is not in " << path;
    p.value().copy_(state.at(p.key()));
    ++loaded;
  }
  EXPECT_EQ(loaded, state.size()) << path << " has tensors the network does not";
}

/// The float32 rows x cols matrix of a .npy file.
inline torch::Tensor npy_tensor(const std::string& path) {
  const auto m = pipeline::read_npy_matrix(path);
  return torch::from_blob(const_cast<float*>(m.values.data()), {m.rows, m.cols}).clone();
}

/// The newest checkpoints of two runs hold the same step and equal replicated tensors; returns
/// how many tensors were compared.
inline int64_t expect_same_checkpoints(const std::string& a, const std::string& b, int64_t step) {
  const auto x = ckpt::Manager::load_latest(a, 0, 1);
  const auto y = ckpt::Manager::load_latest(b, 0, 1);
  EXPECT_TRUE(x && y) << a << " " << b;
  if (!x || !y) return 0;
  EXPECT_EQ(x->step, step);
  EXPECT_EQ(y->step, step);
  int64_t compared = 0;
  for (const auto& [name, t] : x->replicated) {
    EXPECT_TRUE(y->replicated.count(name)) << name;
    if (!y->replicated.count(name)) continue;
    EXPECT_TRUE(torch::equal(t, y->replicated.at(name))) << name;
    ++compared;
  }
  return compared;
}

}  // namespace holo::testing
