#pragma once
/// Datasets: an index of video files with labels, read from the real annotation formats.
/// No torch here. `make_dataset(recipe, split)` picks the reader by `data.dataset`:
///
/// | data.dataset | files | labels |
/// |---|---|---|
/// | kinetics | CSV `label,youtube_id,time_start,time_end,split[,is_cc]` (quoted labels allowed; test files without the label column) | class = sorted labels of the training file |
/// | list | `path label` per line, space or comma separated; label an integer or a name; no label: unlabeled | integers as given, names sorted |
/// | ucf101 | `classInd.txt` (data.class_index), `trainlist0N.txt` / `testlist0N.txt` | from classInd (1-based in the file, 0-based here) |
/// | hmdb51 | folder of `<class>_test_split<N>.txt` (1 train, 2 test, 0 unused) | sorted class names |
/// | hvu | CSV `Tags,youtube_id,time_start,time_end` (`|`-joined tags) + `Tag,Category` | multi-label: global tag index = row of the Tag,Category file |
/// | folder | every video file under data.root, found by content (probe.h, scan_videos) | unlabeled |
/// | synth | a motion (or HVU-style) dataset made by synth.h, then read as kinetics (or hvu) | as those |
///
/// Clip files of Kinetics and HVU are named `<youtube_id>_<start>_<end><extension>` with the
/// times as `%06d` whole seconds (truncated) or tenths of seconds (`data.name_times`; `auto`
/// tries both), in per-label folders or flat under data.root (`data.layout`; `auto` indexes
/// every file under the root once). Entries whose file is absent are not records: they are
/// counted and listed in `missing()`, and logged once. With `data.manifest` (from
/// `holo data probe`), files it marks unusable are left out, without being opened, and listed
/// in `known_bad()` with the manifest's reason; usable files carry the manifest's frame count
/// (`VideoRecord::frames`), which the sampler uses. A file whose size or modification time no
/// longer matches its entry is probed again (decoded to the end) and that result is used.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/recipe.h"

namespace holo::pipeline {

struct VideoInfo;

struct VideoRecord {
  std::string id;              ///< unique sample key (e.g. "<youtube_id>_<start>_<end>" or file stem)
  std::string path;            ///< absolute path of the video file
  int64_t label = -1;          ///< single-label class index; -1 when unlabeled/test
  std::vector<int64_t> tags;   ///< multi-label (HVU): global tag indices
  int64_t frames = 0;          ///< frames per the probe manifest (data.manifest); 0: read from the file
  /// data.min_readable_fraction: the file is used only when at least this fraction of the
  /// frames its container declares can be read (sampling_frames).
  double min_readable_fraction = 0.5;
};

/// HVU category and its global tag indices.
struct Category {
  std::string name;
  std::vector<int64_t> tags;
};

class Dataset {
 public:
  Dataset(std::string name, std::vector<VideoRecord> records, std::vector<std::string> class_names,
          std::vector<Category> categories = {}, std::vector<std::string> missing = {},
          std::vector<std::string> known_bad = {});

  /// Usable samples in a stable order (the order of the annotation file).
  const std::vector<VideoRecord>& records() const { return records_; }
  /// Classes, or all tags (HVU).
  const std::vector<std::string>& class_names() const { return class_names_; }
  /// HVU: action, attribute, concept, event, object, scene; empty otherwise.
  const std::vector<Category>& categories() const { return categories_; }
  /// Annotation entries whose file is absent (the path looked for first).
  const std::vector<std::string>& missing() const { return missing_; }
  /// Files the probe manifest (data.manifest) marks unusable, as "path: reason"; they are not
  /// records and count as quarantined.
  const std::vector<std::string>& known_bad() const { return known_bad_; }
  /// XXH64 of the index (ids, labels, tags, class names) as 16 hex digits, for checkpoint
  /// manifests. The files' paths are not in it: the same videos moved or copied elsewhere (a
  /// requeued job staging them to node-local disk) are the same training set.
  std::string content_hash() const;
  /// The hash that checkpoints written before content_hash() left the paths out hold (the same
  /// with every record's path), so that they still resume.
  std::string content_hash_with_paths() const;
  /// "kinetics:train" etc., for messages.
  const std::string& name() const { return name_; }
  /// Labels are tag sets (HVU) rather than one class.
  bool multilabel() const { return !categories_.empty(); }

 private:
  std::string index_hash(bool with_paths) const;
  std::string name_;
  std::vector<VideoRecord> records_;
  std::vector<std::string> class_names_;
  std::vector<Category> categories_;
  std::vector<std::string> missing_;
  std::vector<std::string> known_bad_;
};

/// The frame count clips of `record` are sampled from: the manifest's count when the record
/// has one, else the opened file's. Throws DecodeError (the file is quarantined) when the
/// manifest lists more frames than the file has (the file changed without its size or time
/// changing, and its clips would ask for frames that do not exist), or when fewer than
/// `record.min_readable_fraction` of the frames the container declares can be read (the
/// message names both counts and data.min_readable_fraction). A file that declares more frames
/// than can be read above that fraction (VideoInfo::shortfall) is used for its readable frames,
/// with a warning logged once per file.
int64_t sampling_frames(const VideoRecord& record, const VideoInfo& info);

/// Why a file whose container declares `declared` frames, of which `frames` can be read, is
/// not used under data.min_readable_fraction = `fraction`, or "" when it is: `shortfall` (what
/// the container declares, VideoInfo::shortfall), both counts and the key.
std::string below_readable_fraction(const std::string& shortfall, int64_t frames, int64_t declared,
                                    double fraction);

/// Reads the dataset of `split` ("train", "val" or "test") as the recipe describes. Throws
/// holo::RecipeError-like holo::Error naming the key when a needed file is not set, and
/// holo::IoError naming the file and line for a malformed annotation.
std::shared_ptr<Dataset> make_dataset(const DataOptions& data, uint64_t seed, const std::string& split);
inline std::shared_ptr<Dataset> make_dataset(const holo::Recipe& recipe, const std::string& split) {
  return make_dataset(recipe.data, static_cast<uint64_t>(recipe.run.seed), split);
}

/// Registers the annotation formats under data.dataset (core/registry.h); train/registry.h
/// calls it.
void register_datasets();

/// Splits one CSV line (RFC 4180 quoting: "a, b" and "" inside quotes) into fields.
std::vector<std::string> split_csv_line(const std::string& line);

}  // namespace holo::pipeline
