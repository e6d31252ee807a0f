#pragma once
/// Sharded checkpoints (docs/checkpoint-format.md).
///
/// A checkpoint is a directory `<root>/step-<8 digits>/` holding `manifest.json` and one shard
/// file per rank. Replicated state (parameters, buffers, optimiser state) is split across ranks
/// by size, so saving scales with the number of ranks; per-rank state (RNG) goes into each
/// rank's own shard. Ranks write into `<root>/.partial-step-<8 digits>/`; rank 0 commits once
/// every rank has finished (manifest with per-shard checksums, fsync, rename), so an interrupted
/// save leaves the previous checkpoint intact. Loading reads every shard, so a checkpoint loads
/// on any number of ranks.
///
/// Nothing is lost (docs/checkpoint-format.md, "Nothing lost"):
/// - every manifest records the run id of the run that saved it;
/// - a save whose step-N already exists replaces it atomically (rename exchange), never skips;
/// - cleanup deletes only this run's checkpoints whose shards match their checksums, and only
///   while at least `keep` newer good ones of this run exist; corrupt and foreign checkpoints
///   are reported, never counted, never deleted; a deleted checkpoint is first renamed to
///   `.deleting-step-N`, so a kill during cleanup never leaves a step-N without its manifest;
/// - a failed save removes its partial folder and names the path and the free space;
/// - leftovers of interrupted saves and cleanups (`.partial-*`, `.deleting-*`, step-N folders
///   without a manifest) are removed at the next start (remove_leftovers).

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "checkpoints/shard_io.h"

namespace holo::ckpt {

/// What the trainer hands over to be saved. Tensors may live on any device; they are copied
/// to CPU memory before save() returns, so training can go on while the files are written.
struct Snapshot {
  int64_t step = 0;
  int64_t epoch = 0;
  NamedTensors replicated;  ///< identical on every rank: "model.*", "optim.*"
  NamedTensors per_rank;    ///< this rank's own: "rng.*"
  nlohmann::json meta;      ///< world-size independent state (loader, scheduler, metrics), rank 0's
  std::string recipe_toml;  ///< the resolved recipe
  std::string dataset_hash;
  std::optional<double> score;  ///< higher is better; drives keep-best
};

/// A loaded checkpoint.
struct Loaded {
  std::string path;
  int64_t step = 0;
  int64_t epoch = 0;
  int world_size = 0;
  std::map<std::string, torch::Tensor> replicated;
  std::map<std::string, torch::Tensor> per_rank;  ///< this rank's, only when world sizes match
  nlohmann::json meta;
  std::string recipe_toml;
  std::string dataset_hash;
  std::string run_id;  ///< empty for checkpoints older than run ids
};

/// A committed checkpoint directory, from its manifest.
struct Entry {
  std::string path;
  int64_t step = 0;
  std::string run_id;  ///< of the run that saved it; empty for checkpoints older than run ids
  nlohmann::json manifest;
};

/// A checkpoint folder sorted out for one run (Manager::survey).
struct Survey {
  std::vector<Entry> own;      ///< committed by this run (or without a run id), oldest first
  std::vector<Entry> foreign;  ///< committed by another run, oldest first
  /// step-N folders whose manifest is missing (an interrupted cleanup, a partial copy).
  std::vector<std::string> orphans;
  /// .partial-step-N and .deleting-step-N folders of interrupted saves and cleanups.
  std::vector<std::string> leftovers;
  /// step-N folders whose manifest does not parse or is not a complete Holo checkpoint, and why.
  std::vector<std::pair<std::string, std::string>> unreadable;
  /// Every committed checkpoint, own and foreign, oldest first.
  std::vector<Entry> all() const;
};

struct ManagerOptions {
  int rank = 0;
  int world_size = 1;
  int64_t keep = 3;              ///< newest committed checkpoints kept (plus the best one)
  bool background = true;        ///< write in a background thread
  std::string attempt_id;        ///< identical on all ranks of one run attempt (agreed at start)
  std::string run_id;            ///< recorded in every manifest; cleanup touches only this run's
  double commit_timeout_s = 600; ///< how long rank 0 waits for the other ranks' shards
  /// Nice value of the background writer thread; 0 leaves it unchanged. 19 (the writer takes
  /// only idle CPU time) measured worse than 0 on the development machine (docs/benchmarks.md).
  int writer_nice = 0;
};

class Manager {
 public:
  Manager(std::string root, ManagerOptions options);
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  /// Takes a CPU copy of the snapshot and writes it (in the background unless `wait` or
  /// options.background is false). A save still in flight is waited for first. With `wait`,
  /// returns once the checkpoint is committed (visible to every rank).
  ///
  /// The copy goes into staging buffers that the manager keeps between saves (one per tensor
  /// name, reallocated only when its shape or dtype changes), so after the first save the
  /// snapshot is a copy into memory that is already mapped: fresh memory costs a page fault
  /// per 4 KB page, which made a snapshot several times slower than the copy itself. The
  /// buffers hold one copy of the state for the manager's lifetime.
  void save(Snapshot snapshot, bool wait);
  /// Waits for the save in flight, if any; rethrows its error.
  void wait();
  /// Seconds the last save() call held the caller (the snapshot copy), for the stall figure.
  double last_stall_s() const { return last_stall_s_; }

  /// Committed checkpoints under `root`, oldest first.
  static std::vector<Entry> list(const std::string& root);
  /// Everything under `root` sorted out for the run `run_id` (see Survey).
  static Survey survey(const std::string& root, const std::string& run_id);
  /// Removes the orphans and leftovers of `s`, logging each (rank 0, before anyone saves).
  static void remove_leftovers(const Survey& s);
  /// Empty when every shard of the checkpoint `dir` has its manifest's size and checksum (the
  /// files are read, not parsed), else the reason.
  static std::string verify(const std::string& dir);
  /// Loads one checkpoint directory for `rank` of `world_size`; verifies every shard's checksum.
  /// Throws holo::IoError naming the directory and the bad shard.
  static Loaded load(const std::string& dir, int rank, int world_size);
  /// Newest checkpoint under `root` that loads; a corrupted one is reported (log warning with
  /// the reason) and the previous one is tried. Throws holo::IoError naming every checkpoint
  /// and why it failed when checkpoints exist and none loads; nullopt when there are none.
  static std::optional<Loaded> load_latest(const std::string& root, int rank, int world_size);
  /// `path` as users give it: a checkpoint directory (loaded as it is; a corrupt one throws), or
  /// a run directory or checkpoints folder, whose newest checkpoint that loads is taken, with a
  /// warning for each newer one that does not. Throws holo::IoError when nothing loads.
  static Loaded load_newest_valid(const std::string& path, int rank, int world_size);
  /// "<root>/step-00000100".
  static std::string step_dir(const std::string& root, int64_t step);

 private:
  void write(Snapshot snapshot);
  /// This rank's shard and done marker into `partial`; rank 0 then commits.
  void write_parts(const Snapshot& snapshot, const std::string& partial, const std::string& final_dir);
  void commit(const Snapshot& snapshot, const std::string& partial, const std::string& final_dir);
  void wait_visible(const std::string& final_dir) const;
  void retain(int64_t committed_step);
  /// verify() once per checkpoint folder; those this manager committed are good.
  bool good(const Entry& e);
  /// Copies `tensors` into staging_ (keys prefixed with `prefix`), returns the staged copies.
  NamedTensors stage(const NamedTensors& tensors, const std::string& prefix,
                     std::map<std::string, torch::Tensor>& next);

  std::string root_;
  ManagerOptions options_;
  std::thread worker_;
  std::exception_ptr error_;
  double last_stall_s_ = 0;
  std::map<std::string, double> scores_;  // committed dir -> score, for keep-best
  std::map<std::string, torch::Tensor> staging_;  // CPU copies of the last snapshot, reused
  std::map<std::string, std::string> verified_;   // checkpoint dir -> verify() result
  std::set<std::string> reported_;                // corrupt or foreign dirs already warned about
};

/// Splits replicated tensors across `world_size` ranks: greedy by size (largest first, to the
/// least loaded rank, ties to the lowest rank), deterministic. Returns the owning rank per name.
std::map<std::string, int> assign_shards(const NamedTensors& tensors, int world_size);

}  // namespace holo::ckpt
