#include "pipeline/segmentation_data.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "core/run_dir.h"

namespace holo::pipeline {
namespace fs = std::filesystem;

namespace {

/// The value of `key` in an .npy header dict ("'descr': '<f4', ..."), as written.
std::string header_field(const std::string& header, const std::string& key, const std::string& path) {
  const std::regex field("'" + key + "'\\s*:\\s*('[^']*'|True|False|\\([^)]*\\))");
  std::smatch m;
  if (!std::regex_search(header, m, field)) throw IoError(path + ": .npy header without '" + key + "': " + header);
  return m[1].str();
}

}  // namespace

NpyMatrix read_npy_matrix(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw IoError(path + ": not an .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8;
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw IoError(path + ": truncated .npy header");
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    offset = 12;
  } else {
    throw IoError(path + ": .npy format version " + std::to_string(major) + " is not read");
  }
  if (bytes.size() < offset + header_len) throw IoError(path + ": truncated .npy header");
  const std::string header = bytes.substr(offset, header_len);
  const std::string descr = header_field(header, "descr", path);
  if (descr != "'<f4'" && descr != "'|f4'") {
    throw IoError(path + ": features must be float32 ('<f4'), the file holds " + descr);
  }
  if (header_field(header, "fortran_order", path) != "False") {
    throw IoError(path + ": a Fortran-order array; save it in C order (numpy.ascontiguousarray)");
  }
  const std::string shape = header_field(header, "shape", path);
  std::vector<int64_t> dims;
  const std::regex number("[0-9]+");
  for (auto it = std::sregex_iterator(shape.begin(), shape.end(), number); it != std::sregex_iterator(); ++it) {
    dims.push_back(std::stoll(it->str()));
  }
  if (dims.size() != 2) throw IoError(path + ": features must be a 2-D array (D x T), the shape is " + shape);
  NpyMatrix m;
  m.rows = dims[0];
  m.cols = dims[1];
  const size_t count = static_cast<size_t>(m.rows * m.cols);
  const size_t data = offset + header_len;
  if (bytes.size() - data != count * sizeof(float)) {
    throw IoError(path + ": " + std::to_string(bytes.size() - data) + " bytes of data for a " + shape +
                  " float32 array (" + std::to_string(count * sizeof(float)) + ")");
  }
  m.values.resize(count);
  if (count > 0) std::memcpy(m.values.data(), bytes.data() + data, count * sizeof(float));
  return m;
}

std::string npy_bytes(const NpyMatrix& m) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(m.rows) + ", " +
                       std::to_string(m.cols) + "), }";
  const size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(reinterpret_cast<const char*>(m.values.data()), m.values.size() * sizeof(float));
  return out;
}

void write_npy_matrix(const std::string& path, const NpyMatrix& m) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot write '" + path + "'");
  f << npy_bytes(m);
  if (!f) throw IoError("cannot write '" + path + "'");
}

std::vector<std::string> read_mapping(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot read '" + path + "'");
  std::map<int64_t, std::string> by_id;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream fields(line);
    int64_t id = 0;
    std::string name, extra;
    if (!(fields >> id >> name) || (fields >> extra)) {
      throw IoError(path + ":" + std::to_string(number) + ": expected '<id> <name>', got '" + line + "'");
    }
    if (!by_id.emplace(id, name).second) {
      throw IoError(path + ":" + std::to_string(number) + ": id " + std::to_string(id) + " given twice");
    }
  }
  std::vector<std::string> names;
  for (const auto& [id, name] : by_id) {
    if (id != static_cast<int64_t>(names.size())) {
      throw IoError(path + ": ids must run 0, 1, 2, ...; " + std::to_string(names.size()) + " is missing");
    }
    names.push_back(name);
  }
  if (names.empty()) throw IoError(path + ": no classes");
  return names;
}

std::vector<std::string> read_frame_labels(const std::string& path, const std::set<std::string>& known) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot read '" + path + "'");
  std::vector<std::string> labels;
  std::string line;
  int64_t number = 0, blank_from = -1;
  while (std::getline(in, line)) {
    ++number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.empty()) {
      if (blank_from < 0) blank_from = number;
      continue;
    }
    if (blank_from >= 0) {
      throw IoError(path + ":" + std::to_string(blank_from) + ": an empty line among the frame labels");
    }
    if (!known.empty() && !known.count(line)) {
      throw IoError(path + ":" + std::to_string(number) + ": label '" + line + "' is not in the mapping");
    }
    labels.push_back(line);
  }
  return labels;
}

std::vector<std::pair<std::string, int64_t>> read_bundle(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot read the split '" + path + "'");
  std::vector<std::pair<std::string, int64_t>> out;
  std::string entry;
  int64_t number = 0;
  while (std::getline(in, entry)) {
    ++number;
    while (!entry.empty() && (entry.back() == '\r' || entry.back() == ' ')) entry.pop_back();
    if (entry.empty()) continue;
    if (entry.size() > 4 && entry.compare(entry.size() - 4, 4, ".txt") == 0) entry.resize(entry.size() - 4);
    out.emplace_back(entry, number);
  }
  return out;
}

std::vector<int64_t> SegmentationVideo::transcript() const {
  std::vector<int64_t> out;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i == 0 || labels[i] != labels[i - 1]) out.push_back(labels[i]);
  }
  return out;
}

std::vector<int64_t> SegmentationVideo::action_set() const {
  std::set<int64_t> s(labels.begin(), labels.end());
  return {s.begin(), s.end()};
}

SegmentationDataset::SegmentationDataset(const SegmentationDataOptions& options) : options_(options) {
  if (options.sample_rate < 1) throw Error("the frame sample rate must be at least 1, not " + std::to_string(options.sample_rate));
  const fs::path root(options.root);
  const std::string mapping = (root / "mapping.txt").string();
  class_names_ = read_mapping(mapping);
  std::map<std::string, int64_t> ids;
  for (size_t i = 0; i < class_names_.size(); ++i) ids[class_names_[i]] = static_cast<int64_t>(i);
  for (const auto& b : options.background) {
    if (!ids.count(b)) throw IoError(mapping + ": the background label '" + b + "' is not in it");
  }
  const std::string& bundle = options.bundle;
  const std::set<std::string> known(class_names_.begin(), class_names_.end());
  for (const auto& [name, line] : read_bundle(bundle)) {
    SegmentationVideo v;
    v.name = name;
    const std::string gt = (root / "groundTruth" / (v.name + ".txt")).string();
    const std::string npy = (root / "features" / (v.name + ".npy")).string();
    if (!fs::exists(gt)) throw IoError("cannot read '" + gt + "' (listed in " + bundle + ")");
    std::vector<int64_t> labels;
    for (const auto& label : read_frame_labels(gt, known)) labels.push_back(ids.at(label));
    const std::string source = options.features ? options.features_source + " (video " + v.name + ")" : npy;
    const NpyMatrix all = options.features ? options.features(v.name) : read_npy_matrix(npy);
    if (all.cols != static_cast<int64_t>(labels.size())) {
      throw IoError(source + ": " + std::to_string(all.cols) + " frames (D x T = " + std::to_string(all.rows) + " x " +
                    std::to_string(all.cols) + "), but " + gt + " labels " + std::to_string(labels.size()));
    }
    if (!videos_.empty() && all.rows != videos_.front().features.rows) {
      throw IoError(source + ": features of dimension " + std::to_string(all.rows) + ", " + videos_.front().name +
                    " has " + std::to_string(videos_.front().features.rows));
    }
    const int64_t r = options.sample_rate;
    const int64_t kept = (all.cols + r - 1) / r;
    v.features.rows = all.rows;
    v.features.cols = kept;
    v.features.values.resize(static_cast<size_t>(all.rows * kept));
    for (int64_t d = 0; d < all.rows; ++d) {
      for (int64_t t = 0; t < kept; ++t) v.features.values[d * kept + t] = all.values[d * all.cols + t * r];
    }
    for (int64_t t = 0; t < kept; ++t) v.labels.push_back(labels[t * r]);
    if (v.labels.empty()) throw IoError(gt + ": no frames");
    videos_.push_back(std::move(v));
  }
  if (videos_.empty()) throw IoError("the split '" + bundle + "' lists no videos");
}

std::vector<int64_t> SegmentationDataset::background_ids() const {
  std::vector<int64_t> out;
  for (size_t i = 0; i < class_names_.size(); ++i) {
    if (options_.background.count(class_names_[i])) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

int64_t SegmentationDataset::frames() const {
  int64_t n = 0;
  for (const auto& v : videos_) n += static_cast<int64_t>(v.labels.size());
  return n;
}

}  // namespace holo::pipeline
