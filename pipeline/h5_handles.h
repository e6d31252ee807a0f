#pragma once
/// RAII owners for every HDF5 identifier (hid_t) Holo opens, as pipeline/av_handles.h is for
/// libav*. No H5*close call appears outside this header: each open or create below returns an
/// `h5::Id` that closes itself with the matching H5*close, so a throw anywhere releases what was
/// acquired. A failed open or create throws holo::CallError naming the HDF5 call, the object
/// (file, group, dataset, attribute) with its path and its file, and the innermost message of
/// HDF5's error stack, e.g.
///   HDF5 call failed: H5Dopen2 of dataset '/clips/a' in /runs/x/features-rank00000.h5 returned
///   -1 (object 'a' doesn't exist) at pipeline/feature_store.cc:111
/// Calls that return a status rather than an identifier (H5Dread, H5Dwrite, ...) use
/// HOLO_H5_CHECK from core/check.h.

#include <hdf5.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace holo::pipeline::h5 {

/// Owns one HDF5 identifier and closes it with the H5*close of its kind. Move-only; an empty
/// Id holds -1.
class Id {
 public:
  using Close = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, Close close) : id_(id), close_(close) {}
  ~Id() { reset(); }
  Id(Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  /// Closes the identifier now (a no-op when empty).
  void reset() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  Close close_ = nullptr;
};

/// HDF5 prints its error stack on stderr by default; Holo turns failures into exceptions
/// instead (set once, process-wide).
inline void quiet_errors() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

/// The innermost message on HDF5's error stack, which is then cleared; "" when it is empty.
inline std::string take_error_message() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
        if (n == 0 && e->desc != nullptr) *static_cast<std::string*>(out) = e->desc;
        return 0;
      },
      &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

/// Name of the file `loc` (any open object) belongs to; "" when it cannot be told.
inline std::string file_name(hid_t loc) {
  const ssize_t n = H5Fget_name(loc, nullptr, 0);
  if (n <= 0) return "";
  std::string s(static_cast<size_t>(n), '\0');
  H5Fget_name(loc, s.data(), static_cast<size_t>(n) + 1);
  return s;
}

/// Path of an open object inside its file ("/clips"); "" when it cannot be told.
inline std::string object_path(hid_t id) {
  const ssize_t n = H5Iget_name(id, nullptr, 0);
  if (n <= 0) return "";
  std::string s(static_cast<size_t>(n), '\0');
  H5Iget_name(id, s.data(), static_cast<size_t>(n) + 1);
  return s;
}

/// "dataset '/clips/a' in /path/file.h5": `name` is relative to `loc` unless it starts with '/'.
inline std::string describe(const char* kind, hid_t loc, const std::string& name) {
  std::string path = name;
  if (name.empty() || name[0] != '/') {
    const std::string base = object_path(loc);
    path = (base.empty() || base == "/" ? "/" : base + "/") + name;
  }
  const std::string file = file_name(loc);
  return std::string(kind) + " '" + path + "'" + (file.empty() ? "" : " in " + file);
}

/// Wraps the identifier an HDF5 call returned; throws holo::CallError naming `call` and `what`
/// (from describe()) when it is negative. `file` and `line` default to the caller's.
inline Id checked(hid_t id, Id::Close close, const char* call, const std::string& what,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  if (id < 0) {
    std::string msg = take_error_message();
    throw CallError("HDF5", std::string(call) + " of " + what, static_cast<long>(id),
                    msg.empty() ? "HDF5 call failed" : msg, file, line);
  }
  return Id(id, close);
}

// ---- files -------------------------------------------------------------------------------

/// H5Fopen (flags: H5F_ACC_RDONLY or H5F_ACC_RDWR).
inline Id open_file(const std::string& path, unsigned flags, const char* file = __builtin_FILE(),
                    int line = __builtin_LINE()) {
  return checked(H5Fopen(path.c_str(), flags, H5P_DEFAULT), H5Fclose, "H5Fopen", "file " + path,
                 file, line);
}

/// H5Fcreate (flags: H5F_ACC_EXCL or H5F_ACC_TRUNC).
inline Id create_file(const std::string& path, unsigned flags, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return checked(H5Fcreate(path.c_str(), flags, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, "H5Fcreate",
                 "file " + path, file, line);
}

// ---- groups, datasets, attributes, objects -----------------------------------------------

inline Id open_group(hid_t loc, const std::string& name, const char* file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
  return checked(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen2",
                 describe("group", loc, name), file, line);
}

inline Id create_group(hid_t loc, const std::string& name, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  return checked(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                 "H5Gcreate2", describe("group", loc, name), file, line);
}

inline Id open_dataset(hid_t loc, const std::string& name, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  return checked(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2",
                 describe("dataset", loc, name), file, line);
}

/// H5Dcreate2 with the given element type, dataspace and dataset creation list (or H5P_DEFAULT).
inline Id create_dataset(hid_t loc, const std::string& name, hid_t type, hid_t space,
                         hid_t dcpl = H5P_DEFAULT, const char* file = __builtin_FILE(),
                         int line = __builtin_LINE()) {
  return checked(H5Dcreate2(loc, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                 H5Dclose, "H5Dcreate2", describe("dataset", loc, name), file, line);
}

/// The dataspace of an open dataset (H5Dget_space).
inline Id dataset_space(hid_t dataset, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE()) {
  return checked(H5Dget_space(dataset), H5Sclose, "H5Dget_space",
                 describe("dataset", dataset, object_path(dataset)), file, line);
}

/// The element type of an open dataset (H5Dget_type).
inline Id dataset_type(hid_t dataset, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  return checked(H5Dget_type(dataset), H5Tclose, "H5Dget_type",
                 describe("dataset", dataset, object_path(dataset)), file, line);
}

inline Id open_attribute(hid_t object, const std::string& name,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return checked(H5Aopen(object, name.c_str(), H5P_DEFAULT), H5Aclose, "H5Aopen",
                 "attribute '" + name + "' of " + describe("object", object, object_path(object)),
                 file, line);
}

/// H5Oopen with HDF5's error reporting off: an empty Id when the object cannot be opened (a
/// dangling soft or external link), which is an expected outcome, not an error.
inline Id try_open_object(hid_t loc, const char* name) {
  hid_t object = -1;
  H5E_BEGIN_TRY { object = H5Oopen(loc, name, H5P_DEFAULT); }
  H5E_END_TRY;
  return Id(object, H5Oclose);
}

// ---- dataspaces, types, property lists ---------------------------------------------------

/// H5Screate_simple with fixed dimensions.
inline Id simple_space(const std::vector<hsize_t>& dims, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  return checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose,
                 "H5Screate_simple", "a dataspace of rank " + std::to_string(dims.size()), file,
                 line);
}

/// H5Tcopy of a predefined or open type (e.g. H5T_C_S1 before H5Tset_size).
inline Id copy_type(hid_t type, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return checked(H5Tcopy(type), H5Tclose, "H5Tcopy", "a datatype", file, line);
}

/// H5Pcreate of a property list class (e.g. H5P_DATASET_CREATE).
inline Id create_plist(hid_t cls, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return checked(H5Pcreate(cls), H5Pclose, "H5Pcreate", "a property list", file, line);
}

}  // namespace holo::pipeline::h5
