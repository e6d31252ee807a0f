#pragma once
/// Counting multiply-accumulates (MACs) of the shapes a forward pass actually sees.
///
/// Every convolution and linear layer of holo::models goes through `counted()`, and every
/// network reports the end of each stage with `flops::stage()`. Both cost one thread-local
/// check when no FlopRecorder is alive. GFLOPs in Holo follow the convention of the thesis'
/// tables (fvcore, PySlowFast): one multiply-accumulate counts as one FLOP; normalisation,
/// activations and pooling are not counted. SGS's weighted sum over frames is counted.

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <string>
#include <vector>

namespace holo::models {

/// One stage of a forward pass as seen by a FlopRecorder.
struct StageStats {
  std::string name;            ///< "stem", "res2", ..., "sgs", "merge3", "heads"
  std::vector<int64_t> shape;  ///< output shape of the stage (batch included)
  double macs = 0;             ///< multiply-accumulates of the stage, whole batch
};

/// While alive, forward passes on this thread record MACs and stage output shapes. A recorder
/// made while another is alive hides it until it goes: its MACs are not the outer one's.
class FlopRecorder {
 public:
  FlopRecorder();
  ~FlopRecorder();
  FlopRecorder(const FlopRecorder&) = delete;
  FlopRecorder& operator=(const FlopRecorder&) = delete;

  /// Stages in the order they finished; MACs after the last stage go to a "heads" entry
  /// created by `finish()`.
  const std::vector<StageStats>& stages() const { return stages_; }
  /// Sum over stages plus anything not yet attributed.
  double total_macs() const;
  /// Attributes MACs recorded since the last stage to a stage named `name` (no shape).
  void finish(const std::string& name = "heads");

 private:
  friend void flops_add(double macs);
  friend void flops_stage(const std::string& name, const std::vector<int64_t>& shape);
  std::vector<StageStats> stages_;
  double pending_ = 0;
  FlopRecorder* outer_ = nullptr;
};

/// True while a FlopRecorder is alive on this thread.
bool flops_active();
/// Adds `macs` to the current stage (no-op without a recorder).
void flops_add(double macs);
/// Closes the current stage under `name` with output `shape` (no-op without a recorder).
void flops_stage(const std::string& name, const std::vector<int64_t>& shape);

/// Forward through a layer, recording its MACs: output elements x (input channels / groups)
/// x kernel volume for convolutions, output elements x input features for linear layers.
torch::Tensor counted(torch::nn::Conv3d& conv, const torch::Tensor& x);
torch::Tensor counted(torch::nn::Conv2d& conv, const torch::Tensor& x);
torch::Tensor counted(torch::nn::Linear& linear, const torch::Tensor& x);

}  // namespace holo::models
