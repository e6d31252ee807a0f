#pragma once
/// Shard files: a self-describing container of named tensors (docs/checkpoint-format.md).
///
///   "HOLOSHD1" | u64 little-endian header length | JSON header | zero padding to 64 bytes | data
///
/// The JSON header lists every tensor's name, dtype, shape, offset (from the start of the data
/// section) and byte count, so numpy can read a shard without Holo. The XXH3-64 checksum of the
/// whole file is computed while writing and recorded in the checkpoint manifest.

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace holo::ckpt {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct ShardInfo {
  std::string file;       ///< file name inside the checkpoint directory
  uint64_t bytes = 0;
  std::string checksum;   ///< XXH3-64 of the whole file, 16 hex digits
};

/// Writes `tensors` (any device; copied to CPU as needed) to `path`, fsyncs it, returns its
/// size and checksum. Throws holo::IoError naming the file.
ShardInfo write_shard(const std::string& path, const NamedTensors& tensors);

/// Reads a shard. When `expected_checksum` is not empty the file's checksum must match, else
/// holo::IoError names the file and both checksums.
NamedTensors read_shard(const std::string& path, const std::string& expected_checksum = "");

/// XXH3-64 of a file, 16 hex digits.
std::string file_checksum(const std::string& path);

}  // namespace holo::ckpt
