#pragma once
/// What the ranks of a run add up or gather together: statistics of training steps, per-sample
/// costs (GFLOPs and SGS bins per clip, tokens per clip), and per-record means whose parts lie on
/// several ranks (the views of one video under multi-view testing). Every function is collective:
/// every rank calls it, in the same order.

#include <torch/types.h>

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace holo::dist {
class Communicator;
}

namespace holo::train {

/// Named scalar statistics of a batch or an evaluation.
using Stats = std::map<std::string, double>;

/// Sums `stats` over all ranks; the keys are the same on every rank.
Stats all_reduce_stats(const Stats& stats, dist::Communicator& comm, const torch::Device& device);

/// Named per-sample values (one tensor of N values per name, as models::ClipCosts): a network's
/// costs beyond its outputs, "gflops" and "active_bins" of SGS networks, "tokens" of token
/// sampling.
using SampleCosts = std::map<std::string, torch::Tensor>;

/// Mean, min and max of each per-sample cost over the samples seen, summed over the ranks by
/// reduce().
class CostStats {
 public:
  CostStats() = default;
  /// Every name the model reports, so that every rank reduces the same ones.
  explicit CostStats(const std::vector<std::string>& names);
  void add(const SampleCosts& costs);
  /// Over all ranks (every rank runs the same model, so the names agree).
  void reduce(dist::Communicator& comm, const torch::Device& device);
  /// "<name>_mean", "<name>_min", "<name>_max" into `line`.
  void write(nlohmann::json& line) const;
  /// {"<name>": {"mean", "min", "max", "clips"}}.
  nlohmann::json to_json() const;
  bool empty() const { return stats_.empty(); }

 private:
  struct Stat {
    double sum = 0, count = 0;
    double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity();
  };
  std::map<std::string, Stat> stats_;
};

/// A rank's sums of rows per record, and how many rows each sum holds.
using RecordSums = std::map<int64_t, std::pair<torch::Tensor, int64_t>>;

/// Every record's mean row over all ranks' parts.
struct RecordMeans {
  std::vector<int64_t> records;  ///< ascending
  torch::Tensor means;            ///< float32, records x width
};

/// Merges the ranks' `sums` (1-D rows of one width; a rank may hold none, or parts of a record
/// that other ranks hold too) into means per record, known to every rank. `width` is the row
/// width of a rank without rows.
RecordMeans gather_record_means(const RecordSums& sums, int64_t width, dist::Communicator& comm,
                                const torch::Device& device);

}  // namespace holo::train
