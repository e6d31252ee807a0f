#pragma once
/// The HDF5 feature store: features keyed by video id (and frame index for per-frame
/// features), written by many ranks at once (one shard file per rank) and joined by an index
/// file of external links, so h5py sees one file. Layout (docs/feature-store.md):
///
///   <dir>/features-rank00003.h5   /clips/<key>            float32 dataset (the feature's shape)
///                                 /frames/<key>/<%06d>    float32 dataset per frame
///   <dir>/index.h5                /clips/<key>  -> external link into the rank's shard
///                                 /frames/<key> -> external link
///                                 /ids (strings), /shards (int32): key order and owner
///
/// <key> is the id with '%' -> "%25" and '/' -> "%2F" (HDF5 names cannot hold '/').
/// Datasets are chunked and, with `compression` > 0, gzip-compressed. Files are opened
/// read-only by readers, so many processes can read at the same time once writing is done.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace holo::pipeline {

struct FeatureStoreOptions {
  int compression = 0;  ///< gzip level 0-9 (0: none)

  FeatureStoreOptions& set_compression(int c) { compression = c; return *this; }
};

/// "<dir>/features-rank00003.h5".
std::string feature_shard_path(const std::string& dir, int rank);
/// The HDF5 name of an id.
std::string feature_key(const std::string& id);

/// Writes one rank's shard. Existing keys are an error (each id is written once per store).
class FeatureWriter {
 public:
  FeatureWriter(const std::string& dir, int rank, FeatureStoreOptions options = {});
  ~FeatureWriter();
  FeatureWriter(const FeatureWriter&) = delete;
  FeatureWriter& operator=(const FeatureWriter&) = delete;

  /// The clip feature of `id` (any shape; stored as float32).
  void write(const std::string& id, const torch::Tensor& feature);
  /// The feature of frame `frame` of `id`.
  void write(const std::string& id, int64_t frame, const torch::Tensor& feature);
  /// Flushes and closes the shard (also done by the destructor).
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Writes <dir>/index.h5 from every shard present; call once (e.g. rank 0) after all writers
/// closed. Returns the number of keys indexed. Throws holo::IoError when two shards hold the
/// same key.
int64_t write_feature_index(const std::string& dir);

/// Reads a store by scanning its shards' groups (one open per shard; index.h5 is for Python
/// users and holds the same map). A key held by two shards is an error naming both ranks, as
/// in write_feature_index. Safe to use from several threads (HDF5 calls are serialised) and
/// several processes.
class FeatureReader {
 public:
  explicit FeatureReader(const std::string& dir);
  ~FeatureReader();
  FeatureReader(const FeatureReader&) = delete;
  FeatureReader& operator=(const FeatureReader&) = delete;

  bool contains(const std::string& id) const;
  bool contains(const std::string& id, int64_t frame) const;
  /// float32 tensor; throws holo::IoError naming the id when absent.
  torch::Tensor read(const std::string& id) const;
  torch::Tensor read(const std::string& id, int64_t frame) const;
  /// Ids with a clip or per-frame feature, sorted.
  std::vector<std::string> ids() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace holo::pipeline
