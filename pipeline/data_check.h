#pragma once
/// Checks, before any work starts or any job is queued, that the data a recipe names is there:
/// `holo recipe check`, `holo submit` (dry run or not), `holo train`, `holo eval` and
/// `holo extract` call it. docs/recipes.md, "Data checks".

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

}  // namespace holo::pipeline
