#pragma once
/// Checks, before any work starts or any job is queued, that the data a recipe names is there:
/// `holo recipe check`, `holo submit` (dry run or not), `holo train`, `holo eval` and
/// `holo extract` call it. docs/recipes.md, "Data checks".

#include <functional>
#include <string>
#include <vector>

#include "core/recipe.h"

namespace holo::pipeline {

/// The splits a command reads: "train" (with "val" when the recipe validates during training),
/// "eval" (the recipe's eval.split), or "all" (every split the recipe sets: recipe check,
/// submit).
std::vector<std::string> splits_for(const Recipe& recipe, const std::string& command);

/// Throws holo::RecipeError (exit 2) naming the key, its file:line and the path when:
/// - the recipe names no dataset (data.dataset; "synth" for synthetic videos must be named);
/// - a data file or folder the recipe sets does not exist (data.root, data.train, data.val,
///   data.test, data.categories, data.class_index), or one the dataset needs for `splits` is
///   not set;
/// - an annotation file of those splits is empty or lacks the header its format needs
///   (Kinetics: youtube_id, time_start, time_end; HVU: the same, and Tag,Category for
///   data.categories; UCF101's class index: "<number> <class>" lines).
/// Reads only the first line of each annotation file: the full parse happens when the dataset
/// is built.
void check_data(const Recipe& recipe, const std::vector<std::string>& splits);

/// What check_data checks of one data.dataset format, registered with the format
/// (pipeline/dataset.cc, dataset_formats).
struct FormatChecks {
  bool made_on_demand = false;  ///< synth: nothing to check, it is made when first read
  bool needs_root = true;       ///< data.root must be set (list: paths may be absolute)
  bool split_folders = false;   ///< data.train/val/test name one folder of split files (HMDB51)
  bool reads_splits = true;     ///< annotation files per split (folder: none)
  std::function<void(const Recipe&)> layout;  ///< the format's own files (mstcn, hvu, ucf101)
  /// One split's annotation file `path`, set by `key`.
  std::function<void(const Recipe&, const std::string& key, const std::string& path)> split;
};
/// The checks of `dataset`; a RecipeError naming data.dataset when it is not registered.
const FormatChecks& format_checks(const std::string& dataset);

/// The formats' checks, each a RecipeError naming the key, its file:line and the path.
void check_mstcn_layout(const Recipe& r);        ///< features/ (or data.features), groundTruth/, mapping.txt
void check_hvu_categories(const Recipe& r);      ///< data.categories set, with Tag and Category columns
void check_ucf101_class_index(const Recipe& r);  ///< data.class_index set, "<number> <class>" lines
void check_kinetics_split(const Recipe& r, const std::string& key, const std::string& path);  ///< its header
void check_hvu_split(const Recipe& r, const std::string& key, const std::string& path);       ///< its header
void check_listed_split(const Recipe& r, const std::string& key, const std::string& path);    ///< not empty

}  // namespace holo::pipeline
