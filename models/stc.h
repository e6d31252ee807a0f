#pragma once
/// Spatio-Temporal Channel correlation (STC) block, chapter 4.2 of the thesis.
///
/// Temporal correlation branch (TCB): global average over T, H, W -> FC C -> C/r -> ReLU ->
/// FC C/r -> C -> sigmoid -> rescale X per channel. Spatial correlation branch (SCB): average
/// over H, W keeping T -> T x C vector (flattened T-major: index t * C + c) -> FC (T C) -> h
/// -> ReLU -> FC -> C -> sigmoid -> rescale X. With both branches the output is their
/// average. The FCs have biases and a ReLU between them (the Squeeze-and-Excitation
/// convention; the thesis' equations omit both).
///
/// The SCB's hidden size h is where the thesis disagrees with itself (docs/models.md, "STC"):
/// Table 4.1 prints every STC fc as [C/r, C], so h = C/r (StcScbHidden::kTable, the default);
/// eq. 4.5 makes it (T C)/r (kText), whose first FC then grows with T^2.
///
/// The SCB's first FC is sized for the T the block is built for. A clip whose map has another
/// length T' at this point is resampled along time to T (linear interpolation,
/// align_corners = false) before the FC, so a network trained at 16 frames evaluates 32-frame
/// clips; T' == T is left untouched.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace holo::models {

/// Hidden size of the spatial correlation branch.
enum class StcScbHidden {
  kTable,  ///< C/r, as Table 4.1 prints the fc sizes
  kText,   ///< (T C)/r, eq. 4.5
};

/// "table" or "text"; throws holo::RecipeError naming model.stc_scb_hidden otherwise.
StcScbHidden parse_stc_scb_hidden(const std::string& s);

struct StcOptions {
  StcOptions(int64_t channels, int64_t frames) : channels_(channels), frames_(frames) {}
  /// C of the feature map.
  TORCH_ARG(int64_t, channels);
  /// T of the feature map at this block for the clip length the network is built for.
  TORCH_ARG(int64_t, frames);
  /// Reduction r of both branches.
  TORCH_ARG(int64_t, reduction) = 4;
  /// Temporal correlation branch on.
  TORCH_ARG(bool, tcb) = true;
  /// Spatial correlation branch on.
  TORCH_ARG(bool, scb) = true;
  /// Hidden size of the spatial branch's first FC.
  TORCH_ARG(StcScbHidden, scb_hidden) = StcScbHidden::kTable;
};

class StcBlockImpl : public torch::nn::Module {
 public:
  explicit StcBlockImpl(const StcOptions& options);
  /// x: N x C x T' x H x W -> same shape, recalibrated.
  torch::Tensor forward(const torch::Tensor& x);
  const StcOptions& options() const { return options_; }

 private:
  StcOptions options_;
  torch::nn::Linear tcb_fc1_{nullptr}, tcb_fc2_{nullptr};
  torch::nn::Linear scb_fc1_{nullptr}, scb_fc2_{nullptr};
};
TORCH_MODULE(StcBlock);

}  // namespace holo::models
