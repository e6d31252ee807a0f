#include "pipeline/dataset.h"

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>

#include <unistd.h>

#include "core/env.h"
#include "core/error.h"
#include "core/recipe.h"
#include "core/registry.h"
#include "pipeline/data_check.h"
#include "pipeline/decoder.h"
#include "pipeline/probe.h"
#include "pipeline/random.h"
#include "pipeline/synth.h"

namespace fs = std::filesystem;

namespace holo::pipeline {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// Lines of an annotation file, with the key that named it for messages.
struct AnnotationFile {
  std::string key;
  std::string path;
  std::vector<std::string> lines;
  std::string where(size_t i) const { return path + ":" + std::to_string(i + 1); }
};

AnnotationFile read_annotation(const std::string& key, const std::string& path) {
  if (path.empty()) throw Error(key + " is not set: the dataset needs this annotation file");
  std::ifstream f(path);
  if (!f) throw IoError(key + ": cannot open '" + path + "'");
  AnnotationFile a{key, path, {}};
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    a.lines.push_back(line);
  }
  // A UTF-8 byte-order mark is not part of the first field.
  if (!a.lines.empty() && a.lines[0].rfind("\xEF\xBB\xBF", 0) == 0) a.lines[0] = a.lines[0].substr(3);
  return a;
}

double parse_time(const AnnotationFile& a, size_t i, const std::string& text, const char* what) {
  char* end = nullptr;
  const std::string t = trim(text);
  const double v = std::strtod(t.c_str(), &end);
  if (t.empty() || end == t.c_str() || *end != '\0' || !std::isfinite(v) || v < 0) {
    throw IoError(a.where(i) + ": " + what + " '" + text + "' is not a non-negative number");
  }
  // Times name clip files in whole seconds or tenths (clip_stems): a time beyond 10^9 s (31
  // years) is a damaged line, and its tenths would not fit the integer the name is made of.
  if (v > 1e9) throw IoError(a.where(i) + ": " + what + " '" + text + "' is beyond 10^9 seconds");
  return v;
}

std::string sixdigits(int64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06lld", static_cast<long long>(v));
  return buf;
}

/// File stems a clip may have, in the order tried.
std::vector<std::string> clip_stems(const std::string& id, double start, double end, const std::string& name_times) {
  std::vector<std::string> out;
  if (name_times != "tenths") {
    out.push_back(id + "_" + sixdigits(static_cast<int64_t>(std::floor(start))) + "_" +
                  sixdigits(static_cast<int64_t>(std::floor(end))));
  }
  if (name_times != "seconds") {
    out.push_back(id + "_" + sixdigits(std::llround(start * 10)) + "_" + sixdigits(std::llround(end * 10)));
  }
  return out;
}

/// Finds clip files under the root by layout.
class Locator {
 public:
  Locator(fs::path root, std::string layout) : root_(std::move(root)), layout_(std::move(layout)) {}

  /// The path of the first of `names` (file names) that exists, or "".
  std::string find(const std::vector<std::string>& names, const std::string& label) {
    if (layout_ == "auto") {
      index();
      for (const auto& n : names) {
        auto it = files_.find(n);
        if (it == files_.end()) continue;
        for (const auto& p : it->second) {
          const auto parent = fs::path(p).parent_path().filename().string();
          if (!label.empty() && (parent == label || parent == underscored(label))) return p;
        }
        return it->second.front();
      }
      return "";
    }
    for (const auto& n : names) {
      for (const auto& p : candidates(n, label)) {
        std::error_code ec;
        if (fs::is_regular_file(p, ec)) return p.string();
      }
    }
    return "";
  }

  /// Where the first name would be expected, for the missing list.
  std::string expected(const std::string& name, const std::string& label) const {
    if (layout_ == "per_label" || (layout_ == "auto" && !label.empty())) return (root_ / label / name).string();
    return (root_ / name).string();
  }

 private:
  static std::string underscored(std::string s) {
    std::replace(s.begin(), s.end(), ' ', '_');
    return s;
  }
  std::vector<fs::path> candidates(const std::string& name, const std::string& label) const {
    if (layout_ == "flat" || label.empty()) return {root_ / name};
    return {root_ / label / name, root_ / underscored(label) / name};
  }
  void index() {
    if (indexed_) return;
    indexed_ = true;
    std::error_code ec;
    if (!fs::is_directory(root_, ec)) return;
    for (auto it = fs::recursive_directory_iterator(root_, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->is_regular_file(ec)) files_[it->path().filename().string()].push_back(it->path().string());
    }
    for (auto& [name, paths] : files_) std::sort(paths.begin(), paths.end());
  }

  fs::path root_;
  std::string layout_;
  bool indexed_ = false;
  std::unordered_map<std::string, std::vector<std::string>> files_;
};

fs::path data_root(const DataOptions& d) {
  if (d.root.empty()) throw Error("data.root is not set: the dataset needs the folder of the video files");
  std::error_code ec;
  if (!fs::is_directory(d.root, ec)) throw IoError("data.root: '" + d.root + "' is not a folder");
  return fs::absolute(d.root);
}

const std::string& split_file(const DataOptions& d, const std::string& split) {
  if (split == "train") return d.train;
  if (split == "val") return d.val;
  return d.test;
}

/// Everything a reader produces before it becomes a Dataset.
struct Index {
  std::vector<VideoRecord> records;
  std::vector<std::string> class_names;
  std::vector<Category> categories;
  std::vector<std::string> missing;
  std::set<std::string> ids;
  int64_t duplicates = 0;

  void add(VideoRecord r) {
    if (!ids.insert(r.id).second) {
      ++duplicates;
      return;
    }
    records.push_back(std::move(r));
  }
};

/// Column positions of a CSV header.
std::map<std::string, size_t> header_columns(const AnnotationFile& a) {
  std::map<std::string, size_t> cols;
  if (a.lines.empty()) throw IoError(a.path + ": empty file (expected a header line)");
  const auto fields = split_csv_line(a.lines[0]);
  for (size_t i = 0; i < fields.size(); ++i) cols[lower(trim(fields[i]))] = i;
  return cols;
}

/// Fields a data line needs for every column of `cols`: one past the last one (a name the
/// header repeats keeps its last column, so this can exceed the number of names).
size_t fields_needed(const std::map<std::string, size_t>& cols) {
  size_t n = 0;
  for (const auto& [name, i] : cols) n = std::max(n, i + 1);
  return n;
}

// ---- Kinetics ----------------------------------------------------------------------------

std::vector<std::string> kinetics_labels(const AnnotationFile& a) {
  auto cols = header_columns(a);
  if (!cols.count("label")) return {};
  std::set<std::string> labels;
  for (size_t i = 1; i < a.lines.size(); ++i) {
    if (trim(a.lines[i]).empty()) continue;
    const auto f = split_csv_line(a.lines[i]);
    if (cols["label"] < f.size()) labels.insert(trim(f[cols["label"]]));
  }
  return {labels.begin(), labels.end()};
}

Index read_kinetics(const DataOptions& d, const std::string& split) {
  const auto a = read_annotation("data." + split, split_file(d, split));
  auto cols = header_columns(a);
  for (const char* need : {"youtube_id", "time_start", "time_end"}) {
    if (!cols.count(need)) {
      throw IoError(a.where(0) + ": header has no '" + std::string(need) +
                    "' column (expected label,youtube_id,time_start,time_end,split)");
    }
  }
  Index index;
  // Classes come from the training file so that every split numbers them the same way.
  if (!d.train.empty() && split != "train") {
    index.class_names = kinetics_labels(read_annotation("data.train", d.train));
  } else {
    index.class_names = kinetics_labels(a);
  }
  std::map<std::string, int64_t> class_of;
  for (size_t c = 0; c < index.class_names.size(); ++c) class_of[index.class_names[c]] = static_cast<int64_t>(c);

  const bool labelled = cols.count("label") > 0;
  Locator locator(data_root(d), d.layout);
  for (size_t i = 1; i < a.lines.size(); ++i) {
    if (trim(a.lines[i]).empty()) continue;
    const auto f = split_csv_line(a.lines[i]);
    if (f.size() < fields_needed(cols)) {
      throw IoError(a.where(i) + ": expected " + std::to_string(fields_needed(cols)) + " fields, got " +
                    std::to_string(f.size()));
    }
    const std::string id = trim(f[cols["youtube_id"]]);
    const double start = parse_time(a, i, f[cols["time_start"]], "time_start");
    const double end = parse_time(a, i, f[cols["time_end"]], "time_end");
    VideoRecord r;
    std::string label;
    if (labelled) {
      label = trim(f[cols["label"]]);
      auto it = class_of.find(label);
      if (it == class_of.end()) {
        throw IoError(a.where(i) + ": label '" + label + "' is not a class of the training file " + d.train);
      }
      r.label = it->second;
    }
    const auto stems = clip_stems(id, start, end, d.name_times);
    std::vector<std::string> names;
    for (const auto& s : stems) names.push_back(s + d.extension);
    r.path = locator.find(names, label);
    if (r.path.empty()) {
      index.missing.push_back(locator.expected(names[0], label));
      continue;
    }
    r.id = fs::path(r.path).stem().string();
    index.add(std::move(r));
  }
  return index;
}

// ---- HVU ---------------------------------------------------------------------------------

Index read_hvu(const DataOptions& d, const std::string& split) {
  Index index;
  const auto cats = read_annotation("data.categories", d.categories);
  auto ccols = header_columns(cats);
  if (!ccols.count("tag") || !ccols.count("category")) {
    throw IoError(cats.where(0) + ": header must be Tag,Category");
  }
  std::unordered_map<std::string, int64_t> tag_index;
  std::map<std::string, std::vector<int64_t>> by_category;
  for (size_t i = 1; i < cats.lines.size(); ++i) {
    if (trim(cats.lines[i]).empty()) continue;
    const auto f = split_csv_line(cats.lines[i]);
    if (f.size() < fields_needed(ccols)) throw IoError(cats.where(i) + ": expected Tag,Category");
    const std::string tag = trim(f[ccols["tag"]]);
    if (tag_index.count(tag)) throw IoError(cats.where(i) + ": tag '" + tag + "' listed twice");
    const int64_t t = static_cast<int64_t>(index.class_names.size());
    tag_index[tag] = t;
    index.class_names.push_back(tag);
    by_category[trim(f[ccols["category"]])].push_back(t);
  }
  for (auto& [name, tags] : by_category) index.categories.push_back({name, tags});

  const auto a = read_annotation("data." + split, split_file(d, split));
  auto cols = header_columns(a);
  for (const char* need : {"youtube_id", "time_start", "time_end"}) {
    if (!cols.count(need)) throw IoError(a.where(0) + ": header has no '" + std::string(need) + "' column");
  }
  const bool tagged = cols.count("tags") > 0;
  Locator locator(data_root(d), d.layout == "per_label" ? "flat" : d.layout);
  for (size_t i = 1; i < a.lines.size(); ++i) {
    if (trim(a.lines[i]).empty()) continue;
    const auto f = split_csv_line(a.lines[i]);
    if (f.size() < fields_needed(cols)) {
      throw IoError(a.where(i) + ": expected " + std::to_string(fields_needed(cols)) + " fields, got " +
                    std::to_string(f.size()));
    }
    VideoRecord r;
    if (tagged) {
      const std::string tags = f[cols["tags"]];
      size_t pos = 0;
      while (pos <= tags.size()) {
        const size_t bar = std::min(tags.find('|', pos), tags.size());
        const std::string tag = trim(tags.substr(pos, bar - pos));
        pos = bar + 1;
        if (tag.empty()) continue;
        auto it = tag_index.find(tag);
        if (it == tag_index.end()) throw IoError(a.where(i) + ": tag '" + tag + "' is not in " + d.categories);
        r.tags.push_back(it->second);
      }
      std::sort(r.tags.begin(), r.tags.end());
      r.tags.erase(std::unique(r.tags.begin(), r.tags.end()), r.tags.end());
    }
    const std::string id = trim(f[cols["youtube_id"]]);
    const auto stems = clip_stems(id, parse_time(a, i, f[cols["time_start"]], "time_start"),
                                  parse_time(a, i, f[cols["time_end"]], "time_end"), d.name_times);
    std::vector<std::string> names;
    for (const auto& s : stems) names.push_back(s + d.extension);
    r.path = locator.find(names, "");
    if (r.path.empty()) {
      index.missing.push_back(locator.expected(names[0], ""));
      continue;
    }
    r.id = fs::path(r.path).stem().string();
    index.add(std::move(r));
  }
  return index;
}

// ---- path label lists --------------------------------------------------------------------

struct ListEntry {
  std::string path;
  std::string label;  // "" when absent
};

bool is_integer(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

/// Digits a class number may have: a longer one is a damaged line, not a class of any video
/// dataset (and a list numbering that many classes would not fit in memory).
constexpr size_t kMaxClassDigits = 6;

std::vector<ListEntry> parse_list(const AnnotationFile& a) {
  std::vector<ListEntry> out;
  for (size_t i = 0; i < a.lines.size(); ++i) {
    const std::string line = trim(a.lines[i]);
    if (line.empty() || line[0] == '#') continue;
    ListEntry e;
    size_t cut = line.find(',') != std::string::npos ? line.rfind(',') : line.find_last_of(" \t");
    // Without a comma, a last word that names a video file is the end of a path with a space
    // in it ("a/two words.mp4"), not a label: labels are class indices or names.
    if (cut != std::string::npos && line[cut] != ',' && has_video_extension(line.substr(cut + 1)))
      cut = std::string::npos;
    if (cut == std::string::npos) {
      e.path = line;
    } else {
      e.path = trim(line.substr(0, cut));
      e.label = trim(line.substr(cut + 1));
    }
    if (e.path.empty()) throw IoError(a.where(i) + ": no path");
    if (is_integer(e.label) && e.label.size() > kMaxClassDigits) {
      throw IoError(a.where(i) + ": label " + e.label + " is too large for a class number");
    }
    out.push_back(e);
  }
  return out;
}

Index read_list(const DataOptions& d, const std::string& split) {
  const auto a = read_annotation("data." + split, split_file(d, split));
  const auto entries = parse_list(a);
  const auto train_entries = (!d.train.empty() && split != "train") ? parse_list(read_annotation("data.train", d.train)) : entries;
  Index index;
  bool numeric = true;
  int64_t max_label = -1;
  std::set<std::string> names;
  for (const auto& e : train_entries) {
    if (e.label.empty()) continue;
    names.insert(e.label);
    if (is_integer(e.label)) {
      max_label = std::max<int64_t>(max_label, std::stoll(e.label));
    } else {
      numeric = false;
    }
  }
  std::map<std::string, int64_t> class_of;
  if (numeric) {
    const int64_t n = std::max<int64_t>(max_label + 1, d.num_classes);
    for (int64_t c = 0; c < n; ++c) index.class_names.push_back(std::to_string(c));
  } else {
    index.class_names.assign(names.begin(), names.end());
    for (size_t c = 0; c < index.class_names.size(); ++c) class_of[index.class_names[c]] = static_cast<int64_t>(c);
  }
  const fs::path root = d.root.empty() ? fs::path(a.path).parent_path() : data_root(d);
  for (const auto& e : entries) {
    VideoRecord r;
    if (!e.label.empty()) {
      if (numeric) {
        if (!is_integer(e.label) || std::stoll(e.label) >= static_cast<int64_t>(index.class_names.size())) {
          throw IoError(a.path + ": label '" + e.label + "' of " + e.path + " is not a class index");
        }
        r.label = std::stoll(e.label);
      } else {
        auto it = class_of.find(e.label);
        if (it == class_of.end()) throw IoError(a.path + ": label '" + e.label + "' of " + e.path + " is not a class of the training list");
        r.label = it->second;
      }
    }
    const fs::path p = fs::path(e.path).is_absolute() ? fs::path(e.path) : root / e.path;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) {
      index.missing.push_back(p.string());
      continue;
    }
    r.path = p.string();
    r.id = fs::path(e.path).replace_extension().string();
    index.add(std::move(r));
  }
  return index;
}

// ---- UCF101 ------------------------------------------------------------------------------

Index read_ucf101(const DataOptions& d, const std::string& split) {
  Index index;
  const auto classes = read_annotation("data.class_index", d.class_index);
  std::map<std::string, int64_t> class_of;
  for (size_t i = 0; i < classes.lines.size(); ++i) {
    const std::string line = trim(classes.lines[i]);
    if (line.empty()) continue;
    const auto sp = line.find_first_of(" \t");
    if (sp == std::string::npos || !is_integer(line.substr(0, sp)) || sp > kMaxClassDigits) {
      throw IoError(classes.where(i) + ": expected '<number> <class>'");
    }
    const int64_t number = std::stoll(line.substr(0, sp));
    const std::string name = trim(line.substr(sp));
    if (number != static_cast<int64_t>(index.class_names.size()) + 1) {
      throw IoError(classes.where(i) + ": classes must be numbered 1, 2, ... in order");
    }
    class_of[name] = number - 1;
    index.class_names.push_back(name);
  }
  std::string file = split_file(d, split);
  if (file.empty()) {
    file = (fs::path(d.class_index).parent_path() /
            ((split == "train" ? "trainlist0" : "testlist0") + std::to_string(d.split) + ".txt")).string();
  }
  const auto a = read_annotation("data." + split, file);
  const fs::path root = data_root(d);
  for (size_t i = 0; i < a.lines.size(); ++i) {
    const std::string line = trim(a.lines[i]);
    if (line.empty()) continue;
    const auto sp = line.find_first_of(" \t");
    const std::string rel = sp == std::string::npos ? line : line.substr(0, sp);
    const std::string cls = fs::path(rel).parent_path().string();
    auto it = class_of.find(cls);
    if (it == class_of.end()) throw IoError(a.where(i) + ": class folder '" + cls + "' is not in " + d.class_index);
    if (sp != std::string::npos) {
      const std::string given = trim(line.substr(sp));
      if (!is_integer(given) || given.size() > kMaxClassDigits || std::stoll(given) - 1 != it->second) {
        throw IoError(a.where(i) + ": label " + given + " does not match class '" + cls + "' (" +
                      std::to_string(it->second + 1) + " in " + d.class_index + ")");
      }
    }
    VideoRecord r;
    r.label = it->second;
    const fs::path p = root / rel;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) {
      index.missing.push_back(p.string());
      continue;
    }
    r.path = p.string();
    r.id = fs::path(rel).stem().string();
    index.add(std::move(r));
  }
  return index;
}

// ---- HMDB51 ------------------------------------------------------------------------------

Index read_hmdb51(const DataOptions& d, const std::string& split) {
  const std::string dir = !split_file(d, split).empty() ? split_file(d, split) : d.train;
  const std::string key = !split_file(d, split).empty() ? "data." + split : "data.train";
  if (dir.empty()) throw Error("data.train is not set: HMDB51 needs the folder of its split files");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IoError(key + ": '" + dir + "' is not a folder of HMDB51 split files");
  const std::string suffix = "_test_split" + std::to_string(d.split) + ".txt";
  std::vector<std::pair<std::string, std::string>> files;  // class, path
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      files.emplace_back(name.substr(0, name.size() - suffix.size()), e.path().string());
    }
  }
  if (files.empty()) throw IoError(key + ": no '*" + suffix + "' files in " + dir);
  std::sort(files.begin(), files.end());
  Index index;
  const std::string want = split == "train" ? "1" : "2";
  const fs::path root = data_root(d);
  for (size_t c = 0; c < files.size(); ++c) {
    index.class_names.push_back(files[c].first);
    const auto a = read_annotation(key, files[c].second);
    for (size_t i = 0; i < a.lines.size(); ++i) {
      const std::string line = trim(a.lines[i]);
      if (line.empty()) continue;
      const auto sp = line.find_last_of(" \t");
      if (sp == std::string::npos) throw IoError(a.where(i) + ": expected '<video> <0|1|2>'");
      const std::string mark = trim(line.substr(sp));
      if (mark != "0" && mark != "1" && mark != "2") throw IoError(a.where(i) + ": split mark must be 0, 1 or 2");
      if (mark != want) continue;
      const std::string video = trim(line.substr(0, sp));
      VideoRecord r;
      r.label = static_cast<int64_t>(c);
      fs::path p = root / files[c].first / video;
      if (!fs::is_regular_file(p, ec) && fs::is_regular_file(root / video, ec)) p = root / video;
      if (!fs::is_regular_file(p, ec)) {
        index.missing.push_back(p.string());
        continue;
      }
      r.path = p.string();
      r.id = fs::path(video).stem().string();
      index.add(std::move(r));
    }
  }
  return index;
}

// ---- folder ------------------------------------------------------------------------------

/// Every video under the root, by content (scan_videos; `manifest` answers for the files it
/// lists unchanged); the other files are logged as skipped.
Index read_folder(const DataOptions& d, const std::map<std::string, ProbeResult>* manifest) {
  const fs::path root = data_root(d);
  std::vector<std::string> rel;
  for (const auto& path : scan_videos({root.string()}, manifest).videos) {
    rel.push_back(fs::relative(path, root).string());
  }
  std::sort(rel.begin(), rel.end());
  Index index;
  for (const auto& r : rel) index.add({fs::path(r).replace_extension().string(), (root / r).string(), -1, {}});
  return index;
}

// ---- synth -------------------------------------------------------------------------------

/// The synthetic dataset's folder, made once (atomically, so that several ranks or runs can
/// ask at the same time) and then re-used.
std::string ensure_synth(const DataOptions& d, uint64_t seed) {
  const std::string key = d.synth_kind + "-seed" + std::to_string(seed) + "-v" + std::to_string(d.synth_videos) +
                          "-c" + std::to_string(d.synth_classes) + "-f" + std::to_string(d.synth_frames);
  const fs::path dir = d.root.empty() ? fs::absolute(fs::path(env::cache_dir()) / "synth" / key) : fs::absolute(d.root);
  std::error_code ec;
  if (fs::exists(dir / "dataset.toml", ec)) return dir.string();
  const fs::path tmp = dir.string() + ".part-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  spdlog::info("making the synthetic {} dataset ({} videos) in {}", d.synth_kind, d.synth_videos, dir.string());
  synthesize(SynthOptions()
                 .set_kind(d.synth_kind)
                 .set_out(tmp.string())
                 .set_seed(seed)
                 .set_videos(d.synth_videos)
                 .set_classes(d.synth_classes)
                 .set_frames(d.synth_frames));
  fs::create_directories(dir.parent_path(), ec);
  if (fs::exists(dir, ec) && !fs::exists(dir / "dataset.toml", ec)) fs::remove(dir, ec);  // an empty root given by the recipe
  fs::rename(tmp, dir, ec);
  if (ec) {
    // Another process finished first: use its copy.
    fs::remove_all(tmp, ec);
    if (!fs::exists(dir / "dataset.toml", ec)) throw IoError("cannot make the synthetic dataset in " + dir.string());
  }
  return dir.string();
}

}  // namespace

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

Dataset::Dataset(std::string name, std::vector<VideoRecord> records, std::vector<std::string> class_names,
                 std::vector<Category> categories, std::vector<std::string> missing,
                 std::vector<std::string> known_bad)
    : name_(std::move(name)),
      records_(std::move(records)),
      class_names_(std::move(class_names)),
      categories_(std::move(categories)),
      missing_(std::move(missing)),
      known_bad_(std::move(known_bad)) {}

std::string Dataset::content_hash() const { return index_hash(false); }

std::string Dataset::content_hash_with_paths() const { return index_hash(true); }

std::string Dataset::index_hash(bool with_paths) const {
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  auto add = [&](const void* p, size_t n) { XXH64_update(state, p, n); };
  for (const auto& r : records_) {
    add(r.id.data(), r.id.size() + 1);
    if (with_paths) add(r.path.data(), r.path.size() + 1);
    add(&r.label, sizeof r.label);
    const int64_t n = static_cast<int64_t>(r.tags.size());
    add(&n, sizeof n);
    if (n) add(r.tags.data(), r.tags.size() * sizeof(int64_t));
  }
  for (const auto& c : class_names_) add(c.data(), c.size() + 1);
  const uint64_t h = XXH64_digest(state);
  XXH64_freeState(state);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string below_readable_fraction(const std::string& shortfall, int64_t frames, int64_t declared,
                                    double fraction) {
  if (declared <= frames || static_cast<double>(frames) >= fraction * static_cast<double>(declared)) {
    return "";
  }
  char share[32];
  std::snprintf(share, sizeof share, "%.2f",
                static_cast<double>(frames) / static_cast<double>(declared));
  std::ostringstream os;
  os << shortfall << (shortfall.empty() ? "" : "; ") << frames << " of the " << declared
     << " frames it declares can be read (" << share
     << "), fewer than data.min_readable_fraction = " << fraction;
  return os.str();
}

int64_t sampling_frames(const VideoRecord& record, const VideoInfo& info) {
  const std::string below = below_readable_fraction(
      info.shortfall, info.frames, info.declared_frames, record.min_readable_fraction);
  if (!below.empty()) throw DecodeError(record.path, below);
  if (!info.shortfall.empty()) {
    // Used for what can be read; said once per file, not at every clip.
    static std::mutex mutex;
    static std::set<std::string> warned;
    std::lock_guard<std::mutex> lock(mutex);
    if (warned.insert(record.path).second) {
      spdlog::warn("{}: {}; its {} readable frames are used", record.path, info.shortfall,
                   info.frames);
    }
  }
  if (record.frames <= 0) return info.frames;
  if (record.frames > info.frames) {
    throw DecodeError(record.path, "the manifest lists " + std::to_string(record.frames) + " frames, the file has " +
                                       std::to_string(info.frames) + " (changed since probing)");
  }
  return record.frames;
}

namespace {

/// One data.dataset: how a split's annotations are read into records (none: not videos read
/// here), and what check_data checks of it before any work starts.
struct DatasetFormat {
  std::function<Index(const DataOptions&, const std::string& split, const std::map<std::string, ProbeResult>* manifest)> read;
  FormatChecks checks;
};

/// data.dataset: every annotation format. "synth" is made on demand by make_dataset and read as
/// kinetics or hvu; "mstcn" (per-frame features) is read by pipeline/segmentation_data.h.
const Registry<DatasetFormat>& dataset_formats() {
  static const Registry<DatasetFormat> registry = [] {
    using Manifest = const std::map<std::string, ProbeResult>*;
    const auto checks = [](auto layout, auto split) {
      FormatChecks c;
      c.layout = layout;
      c.split = split;
      return c;
    };
    Registry<DatasetFormat> r("data.dataset", "dataset format");
    r.add("kinetics", "Kinetics CSV (label, youtube_id, time_start, time_end, split); clips <id>_<start>_<end>",
          {[](const DataOptions& d, const std::string& split, Manifest) { return read_kinetics(d, split); },
           checks(nullptr, check_kinetics_split)});
    FormatChecks list = checks(nullptr, check_listed_split);
    list.needs_root = false;
    r.add("list", "a list of `path label` lines (an integer or a name; none: unlabeled)",
          {[](const DataOptions& d, const std::string& split, Manifest) { return read_list(d, split); }, list});
    r.add("ucf101", "UCF101's classInd.txt (data.class_index) and trainlist0N/testlist0N (data.split)",
          {[](const DataOptions& d, const std::string& split, Manifest) { return read_ucf101(d, split); },
           checks(check_ucf101_class_index, check_listed_split)});
    FormatChecks hmdb = checks(nullptr, nullptr);
    hmdb.split_folders = true;
    r.add("hmdb51", "HMDB51's folder of <class>_test_split<N>.txt files (1 train, 2 test)",
          {[](const DataOptions& d, const std::string& split, Manifest) { return read_hmdb51(d, split); }, hmdb});
    r.add("hvu", "HVU CSV (Tags, youtube_id, time_start, time_end) and its Tag,Category file (data.categories); multi-label",
          {[](const DataOptions& d, const std::string& split, Manifest) { return read_hvu(d, split); },
           checks(check_hvu_categories, check_hvu_split)});
    FormatChecks folder;
    folder.reads_splits = false;
    r.add("folder", "every video under data.root, judged by its content; unlabeled",
          {[](const DataOptions& d, const std::string&, Manifest m) { return read_folder(d, m); }, folder});
    FormatChecks synth;
    synth.made_on_demand = true;
    r.add("synth", "synthetic videos (data.synth_kind motion or hvu) made once in the cache, read as kinetics or hvu",
          {nullptr, synth});
    r.add("mstcn", "per-frame features in MS-TCN's layout (features/, groundTruth/, mapping.txt, splits/); task.kind = segmentation",
          {nullptr, checks(check_mstcn_layout, check_listed_split)});
    return r;
  }();
  return registry;
}

}  // namespace

const FormatChecks& format_checks(const std::string& dataset) { return dataset_formats().at(dataset).checks; }

void register_datasets() { dataset_formats(); }

std::shared_ptr<Dataset> make_dataset(const DataOptions& d, uint64_t seed, const std::string& split) {
  if (split != "train" && split != "val" && split != "test") {
    throw Error("dataset split must be train, val or test, not '" + split + "'");
  }
  const DatasetFormat& format = dataset_formats().at(d.dataset);
  if (format.checks.made_on_demand) {
    const std::string dir = ensure_synth(d, seed);
    DataOptions r = d;
    r.dataset = d.synth_kind == "hvu" ? "hvu" : "kinetics";
    r.root = (fs::path(dir) / "videos").string();
    r.layout = d.synth_kind == "hvu" ? "flat" : "auto";  // auto: the unlabeled test list finds its files too
    r.name_times = "seconds";
    r.extension = ".mp4";
    if (d.synth_kind == "hvu") {
      r.train = (fs::path(dir) / "HVU_Train_V1.0.csv").string();
      r.val = (fs::path(dir) / "HVU_Val_V1.0.csv").string();
      r.test = r.val;
      r.categories = (fs::path(dir) / "HVU_Tags_Categories_V1.0.csv").string();
    } else {
      r.train = (fs::path(dir) / "train.csv").string();
      r.val = (fs::path(dir) / "val.csv").string();
      r.test = (fs::path(dir) / "test.csv").string();
    }
    auto ds = make_dataset(r, seed, split);
    return std::make_shared<Dataset>("synth:" + split, ds->records(), ds->class_names(), ds->categories(), ds->missing(),
                                     ds->known_bad());
  }
  // Read once: the folder scan asks it which files are videos, the records what they hold.
  std::map<std::string, ProbeResult> manifest;
  if (!d.manifest.empty()) manifest = read_manifest(d.manifest);
  if (!format.read) {
    throw RecipeError("[data]", 0, 0, "data.dataset",
                      "'" + d.dataset + "' holds per-frame features, not videos: it trains with task.kind = \"segmentation\"");
  }
  Index index = format.read(d, split, d.manifest.empty() ? nullptr : &manifest);
  const std::string name = d.dataset + ":" + split;
  if (index.duplicates > 0) {
    spdlog::warn("{}: {} annotation entries repeat an earlier video id and were skipped", name, index.duplicates);
  }
  if (!index.missing.empty()) {
    spdlog::warn("{}: {} of {} videos are missing (first: {})", name, index.missing.size(),
                 index.missing.size() + index.records.size(), index.missing.front());
  }
  if (split == "train" && d.fraction < 1.0) {
    // A stable subset: each record is kept when a hash of its id falls below the fraction.
    std::vector<VideoRecord> kept;
    for (auto& r : index.records) {
      const uint64_t h = mix_seed(XXH64(r.id.data(), r.id.size(), 0), seed);
      if (static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0) < d.fraction) kept.push_back(std::move(r));
    }
    index.records = std::move(kept);
  }
  std::vector<std::string> known_bad;
  if (!d.manifest.empty()) {
    std::vector<VideoRecord> kept;
    int64_t reprobed = 0, unlisted = 0, warned = 0;
    std::string first_unlisted, first_warning;
    // A record names its file as the manifest does, or through another path to it (a symbolic
    // link, `..`): then both sides are compared resolved, the manifest's resolved once, at the
    // first record not found as named (resolving every path costs a file-system lookup per
    // component, on every rank).
    std::map<std::string, std::string> by_canonical;  // resolved manifest path -> manifest key
    bool resolved = false;
    const auto canonical = [](const std::string& path) {
      std::error_code ec;
      const fs::path c = fs::weakly_canonical(path, ec);
      return ec ? path : c.string();
    };
    for (auto& r : index.records) {
      auto it = manifest.find(r.path);
      if (it == manifest.end()) {
        if (!resolved) {
          for (const auto& [path, entry] : manifest) by_canonical.emplace(canonical(path), path);
          resolved = true;
        }
        const auto c = by_canonical.find(canonical(r.path));
        if (c != by_canonical.end()) it = manifest.find(c->second);
      }
      if (it == manifest.end()) {  // not probed: the loader finds out when it opens the file
        if (unlisted++ == 0) first_unlisted = r.path;
        kept.push_back(std::move(r));
        continue;
      }
      ProbeResult entry = it->second;
      std::error_code ec;
      const auto size = fs::file_size(r.path, ec);
      if (ec || static_cast<int64_t>(size) != entry.size || file_mtime(r.path) != entry.mtime) {
        // Changed since probing: the entry says nothing about the file now; probe it again.
        entry = probe_video(r.path);
        ++reprobed;
      }
      const std::string below = below_readable_fraction(
          entry.warning, entry.frames, entry.declared_frames, d.min_readable_fraction);
      if (!entry.ok()) {
        known_bad.push_back(r.path + ": " + entry.status);
      } else if (!below.empty()) {
        known_bad.push_back(r.path + ": " + below);
      } else {
        if (!entry.warning.empty() && warned++ == 0) first_warning = r.path + ": " + entry.warning;
        r.frames = entry.frames;
        kept.push_back(std::move(r));
      }
    }
    if (warned > 0) {
      spdlog::warn(
          "{}: {} videos hold fewer frames than they declare and are used for the frames they have "
          "(first: {})",
          name, warned, first_warning);
    }
    if (unlisted > 0) {
      spdlog::warn(
          "{}: {} of {} videos are not in the manifest {} (first: {}); the loader checks them when "
          "it opens them",
          name, unlisted, kept.size() + known_bad.size(), d.manifest, first_unlisted);
    }
    index.records = std::move(kept);
    if (reprobed > 0) {
      spdlog::info("{}: {} videos changed since the manifest {} was written and were probed again", name, reprobed,
                   d.manifest);
    }
    if (!known_bad.empty()) {
      spdlog::warn("{}: {} videos left out as unusable by the manifest {} (first: {})", name, known_bad.size(),
                   d.manifest, known_bad.front());
    }
  }
  for (auto& r : index.records) r.min_readable_fraction = d.min_readable_fraction;
  return std::make_shared<Dataset>(name, std::move(index.records), std::move(index.class_names),
                                   std::move(index.categories), std::move(index.missing), std::move(known_bad));
}

}  // namespace holo::pipeline
