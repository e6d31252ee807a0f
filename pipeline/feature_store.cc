#include "pipeline/feature_store.h"

#include <hdf5.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "core/check.h"
#include "core/error.h"
#include "pipeline/h5_handles.h"

namespace fs = std::filesystem;

namespace holo::pipeline {
namespace {

/// HDF5 is not built thread-safe on every system: every call goes through this lock.
std::mutex& h5_mutex() {
  static std::mutex m;
  return m;
}

bool link_exists(hid_t loc, const std::string& name) {
  return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0;
}

h5::Id open_or_create_group(hid_t loc, const std::string& name) {
  if (link_exists(loc, name)) return h5::open_group(loc, name);
  return h5::create_group(loc, name);
}

std::string frame_name(int64_t frame) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06lld", static_cast<long long>(frame));
  return buf;
}

std::string unkey(const std::string& key) {
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    if (key[i] == '%' && i + 2 < key.size()) {
      out += static_cast<char>(std::stoi(key.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += key[i];
    }
  }
  return out;
}

std::vector<std::string> group_members(hid_t file, const std::string& group) {
  std::vector<std::string> out;
  if (!link_exists(file, group)) return out;
  h5::Id g = h5::open_group(file, group);
  H5G_info_t info;
  HOLO_H5_CHECK(H5Gget_info(g.get(), &info));
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    std::string name(static_cast<size_t>(n), '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), static_cast<size_t>(n) + 1, H5P_DEFAULT);
    out.push_back(name);
  }
  return out;
}

torch::Tensor read_dataset(hid_t loc, const std::string& path) {
  h5::Id ds = h5::open_dataset(loc, path);
  h5::Id space = h5::dataset_space(ds.get());
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  std::vector<int64_t> shape(dims.begin(), dims.end());
  torch::Tensor t = torch::empty(shape, torch::kFloat32);
  if (t.numel() > 0) HOLO_H5_CHECK(H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr<float>()));
  return t;
}

}  // namespace

std::string feature_shard_path(const std::string& dir, int rank) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "features-rank%05d.h5", rank);
  return (fs::path(dir) / buf).string();
}

std::string feature_key(const std::string& id) {
  std::string out;
  for (char c : id) {
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  if (out == "." || out.empty()) out = "%2E" + out.substr(out.empty() ? 0 : 1);
  return out;
}

// ---- writer ------------------------------------------------------------------------------

struct FeatureWriter::Impl {
  std::string path;
  FeatureStoreOptions options;
  h5::Id file, clips, frames;

  void write_tensor(hid_t loc, const std::string& name, const torch::Tensor& feature, const std::string& id) {
    if (link_exists(loc, name)) throw IoError(path + ": feature '" + id + "' is already stored");
    const torch::Tensor t = feature.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
    h5::Id space = h5::simple_space(dims);
    h5::Id dcpl = h5::create_plist(H5P_DATASET_CREATE);
    if (!dims.empty() && t.numel() > 0) {
      HOLO_H5_CHECK(H5Pset_chunk(dcpl.get(), static_cast<int>(dims.size()), dims.data()));
      if (options.compression > 0) {
        HOLO_H5_CHECK(H5Pset_shuffle(dcpl.get()));
        HOLO_H5_CHECK(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(options.compression)));
      }
    }
    h5::Id ds = h5::create_dataset(loc, name, H5T_IEEE_F32LE, space.get(), dcpl.get());
    if (t.numel() > 0) HOLO_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr<float>()));
  }
};

FeatureWriter::FeatureWriter(const std::string& dir, int rank, FeatureStoreOptions options) : impl_(std::make_unique<Impl>()) {
  HOLO_CHECK(options.compression >= 0 && options.compression <= 9, "feature store compression must be 0-9");
  std::lock_guard<std::mutex> lock(h5_mutex());
  h5::quiet_errors();
  fs::create_directories(dir);
  impl_->path = feature_shard_path(dir, rank);
  impl_->options = options;
  // Appending to an existing shard lets an interrupted extraction continue.
  if (fs::exists(impl_->path)) {
    impl_->file = h5::open_file(impl_->path, H5F_ACC_RDWR);
  } else {
    impl_->file = h5::create_file(impl_->path, H5F_ACC_EXCL);
  }
  impl_->clips = open_or_create_group(impl_->file.get(), "clips");
  impl_->frames = open_or_create_group(impl_->file.get(), "frames");
}

FeatureWriter::~FeatureWriter() {
  try {
    close();
  } catch (...) {
    // Destructors do not throw; close() reports the error when called explicitly.
  }
}

void FeatureWriter::write(const std::string& id, const torch::Tensor& feature) {
  std::lock_guard<std::mutex> lock(h5_mutex());
  HOLO_CHECK(impl_->file.get() >= 0, "FeatureWriter::write after close");
  impl_->write_tensor(impl_->clips.get(), feature_key(id), feature, id);
}

void FeatureWriter::write(const std::string& id, int64_t frame, const torch::Tensor& feature) {
  std::lock_guard<std::mutex> lock(h5_mutex());
  HOLO_CHECK(impl_->file.get() >= 0, "FeatureWriter::write after close");
  h5::Id g = open_or_create_group(impl_->frames.get(), feature_key(id));
  impl_->write_tensor(g.get(), frame_name(frame), feature, id + " frame " + std::to_string(frame));
}

void FeatureWriter::close() {
  std::lock_guard<std::mutex> lock(h5_mutex());
  if (impl_->file.get() < 0) return;
  impl_->clips.reset();
  impl_->frames.reset();
  HOLO_H5_CHECK(H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL));
  impl_->file.reset();
}

// ---- index -------------------------------------------------------------------------------

int64_t write_feature_index(const std::string& dir) {
  std::lock_guard<std::mutex> lock(h5_mutex());
  h5::quiet_errors();
  std::vector<std::pair<int, std::string>> shards;
  for (const auto& e : fs::directory_iterator(dir)) {
    int rank = -1;
    const std::string name = e.path().filename().string();
    if (std::sscanf(name.c_str(), "features-rank%d.h5", &rank) == 1 && name == fs::path(feature_shard_path(dir, rank)).filename().string()) {
      shards.emplace_back(rank, name);
    }
  }
  std::sort(shards.begin(), shards.end());
  const std::string tmp = (fs::path(dir) / "index.h5.part").string();
  fs::remove(tmp);
  std::vector<std::string> keys;
  std::vector<int32_t> owners;
  {
    h5::Id index = h5::create_file(tmp, H5F_ACC_TRUNC);
    h5::Id clips = open_or_create_group(index.get(), "clips");
    h5::Id frames = open_or_create_group(index.get(), "frames");
    std::map<std::string, int> owner;
    for (const auto& shard_entry : shards) {
      // Not a structured binding: HOLO_H5_CHECK's lambda captures `name`, which C++17 does not
      // allow for a binding (GCC accepts it, clang refuses it).
      const int rank = shard_entry.first;
      const std::string& name = shard_entry.second;
      h5::Id shard = h5::open_file((fs::path(dir) / name).string(), H5F_ACC_RDONLY);
      for (const char* group : {"clips", "frames"}) {
        for (const auto& key : group_members(shard.get(), group)) {
          const std::string path = std::string(group) + "/" + key;
          auto [it, fresh] = owner.emplace(path, rank);
          if (!fresh) {
            throw IoError(dir + ": feature '" + unkey(key) + "' is in both rank " + std::to_string(it->second) +
                          " and rank " + std::to_string(rank) + " shards");
          }
          // Relative file name: the store can be moved as a folder.
          HOLO_H5_CHECK(H5Lcreate_external(name.c_str(), ("/" + path).c_str(),
                                           std::string(group) == "clips" ? clips.get() : frames.get(), key.c_str(),
                                           H5P_DEFAULT, H5P_DEFAULT));
        }
      }
    }
    std::set<std::string> ids;
    std::map<std::string, int> id_owner;
    for (const auto& [path, rank] : owner) {
      const std::string key = path.substr(path.find('/') + 1);
      if (ids.insert(key).second) id_owner[key] = rank;
    }
    for (const auto& k : ids) {
      keys.push_back(unkey(k));
      owners.push_back(id_owner[k]);
    }
    // /ids as variable-length UTF-8 strings, /shards as int32, in the same order.
    std::vector<const char*> ptrs;
    for (const auto& k : keys) ptrs.push_back(k.c_str());
    hsize_t n = keys.size();
    h5::Id space = h5::simple_space({n});
    h5::Id strtype = h5::copy_type(H5T_C_S1);
    HOLO_H5_CHECK(H5Tset_size(strtype.get(), H5T_VARIABLE));
    HOLO_H5_CHECK(H5Tset_cset(strtype.get(), H5T_CSET_UTF8));
    h5::Id ids_ds = h5::create_dataset(index.get(), "ids", strtype.get(), space.get());
    if (n > 0) HOLO_H5_CHECK(H5Dwrite(ids_ds.get(), strtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()));
    h5::Id shards_ds = h5::create_dataset(index.get(), "shards", H5T_STD_I32LE, space.get());
    if (n > 0) HOLO_H5_CHECK(H5Dwrite(shards_ds.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, owners.data()));
  }
  fs::rename(tmp, fs::path(dir) / "index.h5");
  return static_cast<int64_t>(keys.size());
}

// ---- reader ------------------------------------------------------------------------------

struct FeatureReader::Impl {
  std::string dir;
  /// Open shards by rank and which shard holds each "clips/<key>" / "frames/<key>".
  std::map<int, h5::Id> shards;
  std::map<std::string, int> owner;

  hid_t shard_of(const std::string& path) const {
    auto it = owner.find(path);
    return it == owner.end() ? -1 : shards.at(it->second).get();
  }
};

FeatureReader::FeatureReader(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  std::lock_guard<std::mutex> lock(h5_mutex());
  h5::quiet_errors();
  impl_->dir = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IoError("feature store " + dir + " is not a folder");
  // The shards are the data; index.h5 is for Python users. Scanning the shards' groups costs
  // one open per shard and gives the same map. Shards in rank order, so that a key held by two
  // names the same pair of ranks whatever the folder's listing order.
  std::map<int, fs::path> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    int rank = -1;
    const std::string name = e.path().filename().string();
    if (std::sscanf(name.c_str(), "features-rank%d.h5", &rank) != 1) continue;
    if (name != fs::path(feature_shard_path(dir, rank)).filename().string()) continue;
    found.emplace(rank, e.path());
  }
  try {
    for (const auto& [rank, path] : found) {
      h5::Id f = h5::open_file(path.string(), H5F_ACC_RDONLY);
      for (const char* group : {"clips", "frames"}) {
        for (const auto& key : group_members(f.get(), group)) {
          const auto [it, added] = impl_->owner.emplace(std::string(group) + "/" + key, rank);
          if (!added) {
            throw IoError("feature store " + dir + ": " + group + "/" + key +
                          " is in the shards of rank " + std::to_string(it->second) + " and rank " +
                          std::to_string(rank));
          }
        }
      }
      impl_->shards.emplace(rank, std::move(f));
    }
  } catch (...) {
    impl_.reset();  // closes the shards opened so far while the HDF5 lock is held
    throw;
  }
  if (impl_->shards.empty()) throw IoError("feature store " + dir + " has no features-rank*.h5 shard");
}

FeatureReader::~FeatureReader() {
  std::lock_guard<std::mutex> lock(h5_mutex());
  impl_.reset();
}

bool FeatureReader::contains(const std::string& id) const {
  return impl_->owner.count("clips/" + feature_key(id)) > 0;
}

bool FeatureReader::contains(const std::string& id, int64_t frame) const {
  std::lock_guard<std::mutex> lock(h5_mutex());
  const hid_t f = impl_->shard_of("frames/" + feature_key(id));
  return f >= 0 && link_exists(f, "frames/" + feature_key(id) + "/" + frame_name(frame));
}

torch::Tensor FeatureReader::read(const std::string& id) const {
  std::lock_guard<std::mutex> lock(h5_mutex());
  const std::string path = "clips/" + feature_key(id);
  const hid_t f = impl_->shard_of(path);
  if (f < 0) throw IoError("feature store " + impl_->dir + " has no clip feature for '" + id + "'");
  return read_dataset(f, path);
}

torch::Tensor FeatureReader::read(const std::string& id, int64_t frame) const {
  std::lock_guard<std::mutex> lock(h5_mutex());
  const std::string group = "frames/" + feature_key(id);
  const hid_t f = impl_->shard_of(group);
  const std::string path = group + "/" + frame_name(frame);
  if (f < 0 || !link_exists(f, path)) {
    throw IoError("feature store " + impl_->dir + " has no feature for '" + id + "' frame " + std::to_string(frame));
  }
  return read_dataset(f, path);
}

std::vector<std::string> FeatureReader::ids() const {
  std::set<std::string> out;
  for (const auto& [path, rank] : impl_->owner) out.insert(unkey(path.substr(path.find('/') + 1)));
  return {out.begin(), out.end()};
}

}  // namespace holo::pipeline
