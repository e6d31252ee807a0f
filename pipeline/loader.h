#pragma once
/// The clip loader: per-rank sharding of a deterministic epoch order, prefetching worker
/// threads with a bounded queue, batching, quarantine of bad videos, and a world-size
/// independent state for checkpoints.
///
/// Order and sharding. Training: the epoch's order is a permutation of all records drawn from
/// (run.seed, epoch). Testing: positions enumerate (record, view) pairs, record-major, with
/// sampling.test_clips x sampling.test_crops views per record, unshuffled. Each global step
/// consumes world_size x batch_size consecutive positions starting at `cursor`; rank r takes
/// [cursor + r b, cursor + (r + 1) b). A run resumed on another world size continues at the same
/// global cursor, and that epoch ends with every position left (complete_epoch()): no sample
/// is skipped or repeated.
///
/// End of an epoch. Training with loader.drop_last: only whole global steps (floor). Without
/// it: the last step wraps around to the start of the order (every rank gets a full batch, a
/// few samples are seen twice, as DistributedSampler pads). An epoch resumed on another world
/// size ends instead with an uneven last step that takes every position left: rank r gets
/// floor(n / W) or one more of the n left; a rank left without any gets one position with
/// Batch::weight 0 so that it still joins the step's collectives. Testing: ceil steps; in the last one
/// a rank may get a smaller or even an empty batch, so that every rank returns the same number
/// of batches and nothing is counted twice.
///
/// Bad videos. A sample whose file cannot be decoded is quarantined with its reason (logged
/// once per file, counted in the state). Training fills the batch slot from the loader's own
/// order: the next positions after the bad one, each with its own label and a fresh view
/// (1, 2, ...) of the random draws, so no label is duplicated silently and the choice does not
/// depend on timing. Testing drops the view (evaluation must not count another sample twice).
/// When missing plus quarantined videos exceed data.max_bad_fraction of the dataset, next()
/// throws holo::Error naming the count and the first reasons. With several ranks each meets
/// only its shard's bad videos: the trainer sums the ranks' counts at every step
/// (epoch_quarantined, set_world_quarantined), and all ranks throw at the same step.

#include <torch/torch.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/recipe.h"
#include "pipeline/dataset.h"
#include "pipeline/decoder.h"
#include "pipeline/sampling.h"

namespace holo::pipeline {

struct Batch {
  torch::Tensor clips;            ///< float32 N x C x T x H x W, normalised
  torch::Tensor labels;           ///< int64 N (single-label) or float32 N x num_tags 0/1 (multi-label)
  std::vector<int64_t> indices;   ///< record index of each clip in Dataset::records()
  std::vector<int64_t> views;     ///< test mode: view index (clip * crops + crop); train: 0 (replacements: 1, 2, ...)
  /// Training: the factor of this rank's mean loss that makes the ranks' average the mean over
  /// every sample of the step: 1 for whole steps; n_r W / n in an uneven last step (0 for a rank
  /// whose one clip only fills its place in the collectives: it is not trained on).
  double weight = 1.0;
};

/// Decoder threads per open video for a loader: decode.threads, else HOLO_DECODE_THREADS, else
/// the cores divided among loader.workers (at least 1).
int decode_threads_for(const DecodeOptions& decode, const LoaderOptions& loader);
inline int decode_threads_for(const holo::Recipe& recipe) { return decode_threads_for(recipe.decode, recipe.loader); }

/// What a ClipLoader reads of a recipe.
struct ClipLoaderOptions {
  ClipSampling clips;              ///< [sampling], [transform], run.seed
  LoaderOptions loader;
  DecodeOptions decode;
  double max_bad_fraction = 0.05;  ///< data.max_bad_fraction
};
/// The clip loader options of `recipe`.
ClipLoaderOptions clip_loader_options(const holo::Recipe& recipe);

/// Goes into checkpoints; world-size independent.
struct LoaderState {
  int64_t epoch = 0;
  int64_t cursor = 0;       ///< global position in this epoch's order already consumed by all ranks together
  uint64_t seed = 0;
  int64_t quarantined = 0;  ///< videos quarantined so far
};

enum class LoaderMode { kTrain, kTest };

/// A quarantined video and why.
struct QuarantineEntry {
  int64_t record = 0;
  std::string path;
  std::string reason;
};

class ClipLoader {
 public:
  ClipLoader(std::shared_ptr<Dataset> dataset, const ClipLoaderOptions& options, LoaderMode mode, int rank, int world_size);
  ClipLoader(std::shared_ptr<Dataset> dataset, const holo::Recipe& recipe, LoaderMode mode, int rank, int world_size)
      : ClipLoader(std::move(dataset), clip_loader_options(recipe), mode, rank, world_size) {}
  ~ClipLoader();
  ClipLoader(const ClipLoader&) = delete;
  ClipLoader& operator=(const ClipLoader&) = delete;

  /// Train: order = permutation of all records from (seed, epoch). Starts the epoch at cursor 0.
  void set_epoch(int64_t epoch);
  /// The next batch of this rank; nullopt at the end of the epoch (this rank's share).
  std::optional<Batch> next();
  /// Same on every rank (drop_last in training).
  int64_t batches_per_epoch() const;
  /// Batches this rank's next() still gives in the current epoch (the same on every rank).
  int64_t batches_left() const;
  /// For the current epoch only (set_epoch() ends it): after its whole global steps, one last
  /// uneven step takes every position left, none dropped and none repeated. The trainer turns it
  /// on for an epoch resumed on another number of ranks.
  void complete_epoch();
  LoaderState state() const;
  /// May come from a different world size; the next batch starts at s.cursor.
  void load_state(const LoaderState& s);

  /// Positions in one epoch: records (train) or records x views (test).
  int64_t epoch_positions() const { return positions_; }
  /// Views per record (test: clips x crops; train: 1).
  int64_t views_per_record() const { return views_; }
  /// Quarantined videos so far, in the order they were found.
  std::vector<QuarantineEntry> quarantined() const;
  /// Bad videos at this rank's own positions of the current epoch so far (found now or
  /// quarantined before; not the positions that replaced them, nor the padding past the end).
  /// In training the ranks' positions of an epoch are disjoint, so the sum over the ranks
  /// counts the dataset's bad videos met so far in the epoch. The trainer sums it over the
  /// ranks at every step.
  int64_t epoch_quarantined() const;
  /// The count of bad videos over all ranks (the sum above, or more): data.max_bad_fraction is
  /// checked against it, and this throws holo::Error as next() does when it is exceeded.
  void set_world_quarantined(int64_t count);
  /// With `on`, this rank's own finds no longer throw in next(): only set_world_quarantined()
  /// does, so that all ranks stop at the same step instead of one leaving the others waiting in
  /// a collective. The trainer turns it on when there is more than one rank.
  void defer_bad_fraction_check(bool on);
  /// The dataset.
  const Dataset& dataset() const { return *dataset_; }
  /// Clips decoded so far, and test views served from the frames of the view before them in
  /// the same worker (the other crops of one clip: crops share the clip's frames and its scale).
  int64_t clips_decoded() const { return clips_decoded_.load(); }
  int64_t clips_reused() const { return clips_reused_.load(); }
  /// Batch tensors the loader keeps for reuse (at most prefetch + workers + 2).
  int64_t batch_tensors() const;

 private:
  struct Slot;
  void start_workers();
  void stop_workers();
  void worker_loop(int worker);
  /// Builds global step `step` (counted from the start of the epoch) for this rank.
  Batch build(int64_t step, DecoderCache& cache);
  /// A batch_size x 3 x T x crop x crop float tensor for build() to fill: one of buffers_ that
  /// nothing outside the loader refers to any more, else a new one.
  torch::Tensor take_buffer();
  /// Writes the clip of `record`'s `view` into `out` (a batch's slot); false when its video is
  /// bad (then quarantined).
  bool load(int64_t record, int64_t view, DecoderCache& cache, const torch::Tensor& out);
  void quarantine(int64_t record, const std::string& reason);
  void check_bad_fraction();
  /// The quarantined count that check_bad_fraction() and state() use (under mutex_).
  int64_t counted_quarantined() const;
  int64_t total_steps() const;
  /// Global steps from base_cursor_ to the end of the epoch.
  int64_t steps_from_base() const;
  int64_t record_at(int64_t position) const;

  std::shared_ptr<Dataset> dataset_;
  ClipLoaderOptions options_;
  LoaderMode mode_;
  int rank_;
  int world_size_;
  int64_t batch_size_;
  int64_t positions_ = 0;
  int64_t views_ = 1;
  DecoderOptions decoder_options_;

  // Epoch state. The first step to build is `first_step_` of the epoch, at `base_cursor_`
  // (a resumed cursor need not be a multiple of the step size).
  int64_t epoch_ = 0;
  uint64_t seed_ = 0;
  std::vector<int64_t> order_;
  int64_t base_cursor_ = 0;
  int64_t delivered_ = 0;  ///< batches returned by next() since base_cursor_
  bool complete_ = false;  ///< complete_epoch() for the current epoch

  // Workers and the reorder buffer.
  std::vector<std::thread> workers_;
  std::vector<std::unique_ptr<DecoderCache>> caches_;  ///< one per worker (+1 for synchronous use)
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  int64_t next_to_build_ = 0;  ///< relative batch number a worker takes next
  std::map<int64_t, Slot> ready_;

  /// The last clip's decoded frames, one per cache (so per worker); test mode only.
  struct FrameMemo {
    int64_t record = -1;
    std::vector<int64_t> frames;
    int64_t short_side = -1;
    torch::Tensor rgb;  ///< T x H x W x 3 uint8, as decoded
  };
  std::vector<FrameMemo> memos_;
  std::atomic<int64_t> clips_decoded_{0};
  std::atomic<int64_t> clips_reused_{0};

  // Batch tensors kept for reuse once their batch is dropped (docs/pipeline.md, "Loader").
  mutable std::mutex buffers_mutex_;
  std::vector<torch::Tensor> buffers_;

  // Quarantine (shared by workers).
  std::map<int64_t, std::string> bad_;  ///< record -> reason
  std::vector<QuarantineEntry> bad_list_;
  int64_t restored_quarantined_ = 0;
  std::set<int64_t> epoch_bad_;    ///< bad records met in this epoch (under mutex_)
  int64_t world_quarantined_ = 0;  ///< set_world_quarantined (under mutex_)
  bool defer_check_ = false;
};

}  // namespace holo::pipeline
