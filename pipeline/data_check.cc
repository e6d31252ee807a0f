#include "pipeline/data_check.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/registry.h"
#include "pipeline/dataset.h"

namespace holo::pipeline {
namespace {

namespace fs = std::filesystem;

std::string lower_trimmed(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\"");
  const auto e = s.find_last_not_of(" \t\r\"");
  s = b == std::string::npos ? "" : s.substr(b, e - b + 1);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

/// The first non-empty line of `path` (a UTF-8 byte-order mark dropped); empty when none.
std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("\xEF\xBB\xBF", 0) == 0) line = line.substr(3);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) return line;
  }
  return "";
}

/// Lower-cased, trimmed fields of a CSV header line.
std::set<std::string> header_fields(const std::string& line) {
  std::set<std::string> out;
  std::string field;
  for (char c : line + ",") {
    if (c == ',') {
      out.insert(lower_trimmed(field));
      field.clear();
    } else {
      field += c;
    }
  }
  return out;
}

std::string key_of(const std::string& split) { return "data." + split; }

const std::string& file_of(const DataOptions& d, const std::string& split) {
  if (split == "train") return d.train;
  if (split == "val") return d.val;
  return d.test;
}

void need_columns(const Recipe& r, const std::string& key, const std::string& path,
                  const std::vector<std::string>& columns, const std::string& format) {
  const std::string line = first_line(path);
  if (line.empty()) fail_at(r, key, "'" + path + "' is empty: expected a header line (" + format + ")");
  const auto fields = header_fields(line);
  for (const auto& c : columns) {
    if (!fields.count(c)) {
      fail_at(r, key, "'" + path + "':1: the header has no '" + c + "' column (expected " + format + "), got '" +
                          line + "'");
    }
  }
}

}  // namespace

std::vector<std::string> splits_for(const Recipe& recipe, const std::string& command) {
  if (command == "train") {
    std::vector<std::string> s = {"train"};
    if (!recipe.data.val.empty() && recipe.train.val_every > 0) s.push_back("val");
    return s;
  }
  if (command == "eval") return {recipe.eval.split};
  std::vector<std::string> s;
  for (const char* split : {"train", "val", "test"}) {
    if (split == std::string("train") || !file_of(recipe.data, split).empty()) s.push_back(split);
  }
  return s;
}

void check_mstcn_layout(const Recipe& r) {
  // MS-TCN's layout (pipeline/segmentation_data.h); the files themselves are read when the run
  // starts, each error naming its file and line.
  const DataOptions& d = r.data;
  if (!d.features.empty() && !fs::is_directory(d.features)) {
    fail_at(r, "data.features", "'" + d.features + "' is not a feature store folder (holo extract --per-frame)");
  }
  for (const char* part : {"features", "groundTruth"}) {
    if (!d.features.empty() && std::string(part) == "features") continue;
    std::error_code ec;
    if (!fs::is_directory(fs::path(d.root) / part, ec)) {
      fail_at(r, "data.root", "'" + d.root + "' has no " + part + "/ folder (MS-TCN's layout)");
    }
  }
  if (!fs::exists(fs::path(d.root) / "mapping.txt")) {
    fail_at(r, "data.root", "'" + d.root + "' has no mapping.txt (MS-TCN's layout)");
  }
}

void check_hvu_categories(const Recipe& r) {
  const DataOptions& d = r.data;
  if (d.categories.empty()) fail_at(r, "data.categories", "is not set: HVU needs its Tag,Category file");
  need_columns(r, "data.categories", d.categories, {"tag", "category"}, "Tag,Category");
}

void check_ucf101_class_index(const Recipe& r) {
  const DataOptions& d = r.data;
  if (d.class_index.empty()) fail_at(r, "data.class_index", "is not set: UCF101 needs classInd.txt");
  const std::string line = first_line(d.class_index);
  const auto sp = line.find_first_of(" \t");
  if (line.empty() || sp == std::string::npos ||
      !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(sp), ::isdigit)) {
    fail_at(r, "data.class_index", "'" + d.class_index + "':1: expected '<number> <class>', got '" + line + "'");
  }
}

void check_kinetics_split(const Recipe& r, const std::string& key, const std::string& path) {
  need_columns(r, key, path, {"youtube_id", "time_start", "time_end"}, "label,youtube_id,time_start,time_end,split");
}

void check_hvu_split(const Recipe& r, const std::string& key, const std::string& path) {
  need_columns(r, key, path, {"youtube_id", "time_start", "time_end"}, "Tags,youtube_id,time_start,time_end");
}

void check_listed_split(const Recipe& r, const std::string& key, const std::string& path) {
  if (first_line(path).empty()) fail_at(r, key, "'" + path + "' lists no video");
}

void check_data(const Recipe& r, const std::vector<std::string>& splits) {
  const DataOptions& d = r.data;
  if (!r.key_sources.count("data.dataset")) {
    register_datasets();
    fail_at(r, "data.dataset",
            "the recipe names no dataset: set data.dataset to one of " + registered_list("data.dataset") +
                " (\"synth\" makes synthetic videos; it is never chosen for you)");
  }
  const FormatChecks& format = format_checks(d.dataset);
  if (format.made_on_demand) return;
  // Every path the recipe sets must exist, whichever split uses it.
  for (const auto& [key, path, folder] : std::vector<std::tuple<std::string, std::string, bool>>{
           {"data.root", d.root, true},
           {"data.train", d.train, format.split_folders},
           {"data.val", d.val, format.split_folders},
           {"data.test", d.test, format.split_folders},
           {"data.categories", d.categories, false},
           {"data.class_index", d.class_index, false}}) {
    if (path.empty()) continue;
    std::error_code ec;
    if (!fs::exists(path, ec)) fail_at(r, key, "'" + path + "' does not exist");
    if (folder && !fs::is_directory(path, ec)) fail_at(r, key, "'" + path + "' is not a folder");
    if (!folder && fs::is_directory(path, ec)) fail_at(r, key, "'" + path + "' is a folder, not a file");
  }
  // What the format needs for the splits in use.
  if (format.needs_root && d.root.empty()) fail_at(r, "data.root", "is not set: the folder of the video files");
  if (!format.reads_splits) return;
  if (format.layout) format.layout(r);
  for (const auto& split : splits) {
    std::string key = key_of(split);
    std::string path = file_of(d, split);
    if (format.split_folders && path.empty()) {  // one folder of split files for every split
      key = "data.train";
      path = d.train;
    }
    if (path.empty()) fail_at(r, key, "is not set: the " + split + " split needs its annotation file");
    if (format.split) format.split(r, key, path);
  }
}

}  // namespace holo::pipeline
