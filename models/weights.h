#pragma once
/// Weights in other tools' names: torchvision's video and image ResNets, PySlowFast and
/// MMAction2. One function names every tensor of a Holo network as a layout names it; import
/// and export both go through it, so the two directions cannot disagree (docs/weights.md).

#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

namespace holo::models {

class NetworkImpl;

/// Naming conventions of a weights file.
enum class WeightsLayout { kHolo, kTorchvision, kPySlowFast, kMmaction2, kTimm };

/// "holo", "torchvision", "pyslowfast", "mmaction2", in that order.
const std::vector<std::string>& weights_layout_names();
/// Throws holo::UsageError naming the accepted layouts.
WeightsLayout parse_weights_layout(const std::string& name);
std::string to_string(WeightsLayout layout);

/// The name that the tensor `name` (a key of the network's parameters or buffers) of a network
/// of resolved family `family` (`resolve_model(...).name`) has in `layout`; "" when the layout
/// has no such tensor (e.g. an STC block in torchvision's names).
std::string layout_name(WeightsLayout layout, const std::string& family, const std::string& name);

/// The tensors of a weights file (models::read_state_dict): a state dict saved by Python's
/// torch.save (a dict or OrderedDict, or a training checkpoint with it under `state_dict`
/// (MMAction2), `model_state` (PySlowFast) or `model`), a TorchScript module, or a dict written
/// by `holo ckpt export`; a `module.` prefix (DataParallel) is removed. Throws holo::IoError
/// naming the file, with the Python line that re-saves the weights alone.
std::map<std::string, torch::Tensor> read_weights_file(const std::string& path);

/// What `import_weights` did.
struct ImportReport {
  WeightsLayout layout = WeightsLayout::kHolo;
  int64_t loaded = 0;
  std::vector<std::string> classifier_kept;  ///< heads of another class count, left as initialised
  std::vector<std::string> unmatched;        ///< one line per tensor on either side that did not match
};

/// Copies the tensors of `file` into `net`, named by `layout` (auto: the layout under which most
/// of the network's tensors are found). A network tensor missing from the file or of another
/// shape, and a file tensor that nothing took, are listed in `unmatched`; a classifier of another
/// class count is not (it keeps its fresh initialisation).
ImportReport import_weights(NetworkImpl& net, const std::string& family,
                            const std::map<std::string, torch::Tensor>& file, const std::string& layout);

/// The network's state named as `layout` names it. Throws holo::UsageError listing the tensors
/// that the layout has no name for.
std::vector<std::pair<std::string, torch::Tensor>> export_weights(
    const std::vector<std::pair<std::string, torch::Tensor>>& state, const std::string& family,
    WeightsLayout layout);

}  // namespace holo::models
