#pragma once
/// The core of `holo bench checkpoint` (docs/benchmarks.md, "Checkpoints"):
///
/// - bench_io(): save and load throughput of the checkpoint Manager against `dd` moving the
///   same number of bytes on the same filesystem, fsync on both sides, reads from a cold page
///   cache on both sides.
/// - bench_stall(): what periodic background saving costs a training loop: the mean step time
///   of segments of K steps that start with a save against segments without one, and the time
///   the training thread waits in save() (the snapshot copy).

#include <torch/arg.h>

#include <cstdint>
#include <functional>
#include <string>

#include "checkpoints/checkpoint.h"

namespace holo::ckpt {

struct IoBenchOptions {
  explicit IoBenchOptions(std::string dir) : dir_(std::move(dir)) {}
  /// Folder the checkpoints and dd's file are written into (created; left empty afterwards).
  TORCH_ARG(std::string, dir);
  /// Rounds; every figure is the median over them. Each round runs Holo then dd.
  TORCH_ARG(int64_t, repeat) = 3;
  /// dd's block size in bytes (bs=4M).
  TORCH_ARG(int64_t, dd_block) = int64_t{4} << 20;
};

/// Figures of bench_io(); seconds are medians over the rounds, MB = 1e6 bytes.
struct IoResult {
  uint64_t state_bytes = 0;     ///< bytes of the tensors handed to save()
  uint64_t file_bytes = 0;      ///< bytes of the checkpoint on disk (shards + manifest)
  uint64_t dd_bytes = 0;        ///< bytes dd wrote and read (whole blocks, >= file_bytes)
  int64_t rounds = 0;
  double save_s = 0;            ///< Manager::save(wait): snapshot copy, shard write, fsync, commit
  double snapshot_s = 0;        ///< of which the snapshot copy
  double first_save_s = 0;      ///< the manager's first save (allocates the staging buffers), once
  double first_snapshot_s = 0;  ///< of which the snapshot copy
  double load_s = 0;            ///< Manager::load: read, checksum, tensors, from a cold cache
  double dd_write_s = 0;        ///< dd if=/dev/zero of=F bs=4M count=N conv=fsync
  double dd_read_s = 0;         ///< dd if=F of=/dev/null bs=4M, from a cold cache
  double cached_before_load = 0;     ///< share of the shards' pages still cached when load began
  double cached_before_dd_read = 0;  ///< same for dd's file
  std::string filesystem;       ///< type of the filesystem under dir (ext4, xfs, tmpfs, ...)

  double save_mb_s() const { return file_bytes / 1e6 / save_s; }
  double load_mb_s() const { return file_bytes / 1e6 / load_s; }
  double dd_write_mb_s() const { return dd_bytes / 1e6 / dd_write_s; }
  double dd_read_mb_s() const { return dd_bytes / 1e6 / dd_read_s; }
};

/// Saves `state` once as a manager's first save (reported apart: first_*), then, with the same
/// manager, saves it (as the replicated state of one rank) and loads it back `repeat` times,
/// verifying that what loads equals what was saved, and runs dd on a file of the same size in
/// the same folder. Before each read the files' pages are evicted from the page cache
/// (posix_fadvise DONTNEED after fsync; the share still cached is measured with mincore and
/// reported, since a filesystem such as tmpfs keeps them). Throws holo::IoError when dd is
/// missing or fails, or when the loaded state differs.
IoResult bench_io(const NamedTensors& state, const IoBenchOptions& options);

struct StallBenchOptions {
  explicit StallBenchOptions(std::string dir) : dir_(std::move(dir)) {}
  /// Checkpoint folder: emptied first; the newest checkpoint is left there (checkpoint.keep 1).
  TORCH_ARG(std::string, dir);
  /// Steps per segment: one save per this many steps in the saving segments.
  TORCH_ARG(int64_t, every) = 100;
  /// Saving segments; as many segments without a save are interleaved with them.
  TORCH_ARG(int64_t, saves) = 2;
  /// Untimed steps before the first segment.
  TORCH_ARG(int64_t, warmup) = 3;
  /// Write in a background thread, as the trainer does (checkpoint.background).
  TORCH_ARG(bool, background) = true;
  /// Nice value of the background writer (ManagerOptions::writer_nice).
  TORCH_ARG(int, writer_nice) = ManagerOptions{}.writer_nice;
};

/// Figures of bench_stall().
struct StallResult {
  int64_t every = 0;
  int64_t saves = 0;
  uint64_t state_bytes = 0;    ///< bytes of one snapshot
  double step_plain_s = 0;     ///< mean step time of the segments without a save
  double step_saving_s = 0;    ///< mean step time of the segments with one (save() and drain included)
  double snapshot_s = 0;       ///< mean time one save() call held the training thread
  double snapshot_max_s = 0;
  double drain_s = 0;          ///< mean wait for the write still in flight at a segment's end
  double first_snapshot_s = 0; ///< the untimed first save's snapshot (allocates the staging buffers)
  /// Extra time per save: (step_saving_s - step_plain_s) x every. Includes the snapshot and
  /// whatever the writer thread took from the training steps (cores, memory bandwidth).
  double stall_per_save_s() const { return (step_saving_s - step_plain_s) * every; }
  /// The same as a share of the time between two saves: step_saving_s / step_plain_s - 1.
  double overhead() const { return step_saving_s / step_plain_s - 1.0; }
  /// The snapshot alone as a share of the time between two saves.
  double snapshot_share() const { return snapshot_s / (step_plain_s * every); }
};

/// Runs `warmup` untimed steps and one untimed save (a manager's first, which allocates its
/// staging buffers: first_snapshot_s), then alternately a segment of `every` steps without a save and
/// one that starts with `Manager::save(snapshot(step), wait=false)` and ends by waiting for
/// that save (as the next save would), `saves` times each. `train_step` runs one optimiser
/// step; `snapshot` builds what the trainer would hand to save() at `step`.
StallResult bench_stall(const std::function<void()>& train_step,
                        const std::function<Snapshot(int64_t step)>& snapshot,
                        const StallBenchOptions& options);

}  // namespace holo::ckpt
