#pragma once
/// A strict reader for the state dicts Python writes with `torch.save(model.state_dict(), f)`.
///
/// LibTorch 1.13's unpickler (torch::pickle_load) turns `collections.OrderedDict`, the type
/// `state_dict()` returns, into None, so such files cannot be read through it. This reader
/// understands exactly what `torch.save` (zip format, pickle protocol 2) writes for a dict of
/// tensors: a `collections.OrderedDict` or a plain dict (also nested, and with int, float,
/// string, bool, None, list and tuple values beside the tensors), tensors rebuilt by
/// `torch._utils._rebuild_tensor_v2` from storages `torch.{Float,Double,Half,BFloat16,Long,Int,
/// Short,Char,Byte,Bool}Storage` with their storage offset, sizes and strides, and the
/// OrderedDict's `_metadata` attribute set by BUILD (read and dropped). The records are read
/// through caffe2::serialize::PyTorchStreamReader (`<archive>/data.pkl`, `<archive>/data/<key>`,
/// little-endian). Anything else (another opcode, another global, pickle protocol other than
/// 2, the legacy non-zip format) is an error naming the file and the opcode or global.

#include <torch/types.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace holo::models {

/// The file holds something outside what read_torch_save_state_dict understands (an unknown
/// opcode or global, another protocol). The message names the file and the opcode or global.
class UnsupportedPickleError : public IoError {
 public:
  using IoError::IoError;
};

/// The tensors of a `torch.save` file whose object is a dict or OrderedDict, in file order:
/// the entries of the top-level dict whose value is a tensor, or, when the top level has a
/// dict under "state_dict", "model_state" or "model" (training checkpoints of MMAction2,
/// PySlowFast and others), that dict's tensor entries.
/// Keys must be strings. Throws UnsupportedPickleError for an object outside the format above
/// and holo::IoError (naming the file) for a damaged file, a missing storage record, a record
/// of the wrong size or a tensor reaching outside its storage.
std::vector<std::pair<std::string, torch::Tensor>> read_torch_save_state_dict(const std::string& path);

}  // namespace holo::models
