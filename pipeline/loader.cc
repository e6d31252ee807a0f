#include "pipeline/loader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

#include "core/check.h"
#include "core/env.h"
#include "core/error.h"
#include "pipeline/clip.h"
#include "pipeline/sampling.h"

namespace holo::pipeline {

struct ClipLoader::Slot {
  std::optional<Batch> batch;
  std::exception_ptr error;
};

ClipLoader::ClipLoader(std::shared_ptr<Dataset> dataset, const ClipLoaderOptions& options, LoaderMode mode, int rank,
                       int world_size)
    : dataset_(std::move(dataset)), options_(options), mode_(mode), rank_(rank), world_size_(world_size) {
  HOLO_CHECK(dataset_ != nullptr, "ClipLoader needs a dataset");
  HOLO_CHECK(world_size_ >= 1 && rank_ >= 0 && rank_ < world_size_,
             "rank " + std::to_string(rank) + " is not in a world of size " + std::to_string(world_size));
  batch_size_ = options_.loader.batch_size;
  views_ = mode_ == LoaderMode::kTest ? options_.clips.sampling.test_clips * options_.clips.sampling.test_crops : 1;
  positions_ = static_cast<int64_t>(dataset_->records().size()) * views_;
  decoder_options_.device = options_.decode.device;
  decoder_options_.threads = decode_threads_for(options_.decode, options_.loader);
  seed_ = options_.clips.seed;
  const int64_t caches = std::max<int64_t>(1, options_.loader.workers);
  for (int64_t i = 0; i < caches; ++i) {
    caches_.push_back(std::make_unique<DecoderCache>(static_cast<size_t>(options_.decode.cache_size), decoder_options_));
  }
  memos_.resize(caches_.size());
  if (dataset_->records().empty()) {
    throw Error(dataset_->name() + " has no usable videos (" + std::to_string(dataset_->missing().size()) +
                " missing" + (dataset_->missing().empty() ? "" : ", first: " + dataset_->missing().front()) + ")");
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    check_bad_fraction();
  }
  set_epoch(0);
}

ClipLoaderOptions clip_loader_options(const holo::Recipe& recipe) {
  return ClipLoaderOptions{clip_sampling(recipe), recipe.loader, recipe.decode, recipe.data.max_bad_fraction};
}

int decode_threads_for(const DecodeOptions& decode, const LoaderOptions& loader) {
  if (decode.threads > 0) return static_cast<int>(decode.threads);
  if (env::decode_threads() > 0) return env::decode_threads();
  // Every worker decodes its own clips: the cores shared among the workers. FFmpeg's own
  // choice (a thread per core for every open video) oversubscribes the cores W times over and
  // measured 1.5x slower (docs/benchmarks.md, `holo bench loader --decode-threads`).
  const int64_t cores = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  return static_cast<int>(std::max<int64_t>(1, cores / std::max<int64_t>(1, loader.workers)));
}

ClipLoader::~ClipLoader() { stop_workers(); }

int64_t ClipLoader::total_steps() const {
  const int64_t step = world_size_ * batch_size_;
  if (mode_ == LoaderMode::kTrain && options_.loader.drop_last) return positions_ / step;
  return (positions_ + step - 1) / step;
}

int64_t ClipLoader::batches_per_epoch() const { return total_steps(); }

int64_t ClipLoader::steps_from_base() const {
  const int64_t step = world_size_ * batch_size_;
  const int64_t left = positions_ - base_cursor_;
  if (left <= 0) return 0;
  const bool whole_steps = mode_ == LoaderMode::kTrain && options_.loader.drop_last && !complete_;
  return whole_steps ? left / step : (left + step - 1) / step;
}

int64_t ClipLoader::batches_left() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::max<int64_t>(0, steps_from_base() - delivered_);
}

void ClipLoader::complete_epoch() {
  HOLO_CHECK(mode_ == LoaderMode::kTrain, "complete_epoch() is for training loaders");
  stop_workers();
  complete_ = true;
}

void ClipLoader::set_epoch(int64_t epoch) {
  stop_workers();
  epoch_ = epoch;
  if (mode_ == LoaderMode::kTrain) {
    order_ = epoch_order(static_cast<int64_t>(dataset_->records().size()), seed_, epoch_);
  } else {
    order_.clear();
  }
  base_cursor_ = 0;
  delivered_ = 0;
  complete_ = false;
  std::lock_guard<std::mutex> lock(mutex_);
  epoch_bad_.clear();
}

LoaderState ClipLoader::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  LoaderState s;
  s.epoch = epoch_;
  s.cursor = std::min(positions_, base_cursor_ + delivered_ * world_size_ * batch_size_);
  s.seed = seed_;
  s.quarantined = counted_quarantined();
  return s;
}

void ClipLoader::load_state(const LoaderState& s) {
  HOLO_CHECK(s.cursor >= 0 && s.cursor <= positions_,
             "loader state cursor " + std::to_string(s.cursor) + " is outside this epoch's " +
                 std::to_string(positions_) + " positions (another dataset?)");
  stop_workers();
  seed_ = s.seed;
  // The clips' draws (train_clip) take the seed from the options: the saved one rules them too,
  // whatever run.seed the resumed run's recipe names.
  options_.clips.seed = s.seed;
  set_epoch(s.epoch);
  base_cursor_ = s.cursor;
  restored_quarantined_ = s.quarantined;
}

std::vector<QuarantineEntry> ClipLoader::quarantined() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bad_list_;
}

int64_t ClipLoader::record_at(int64_t position) const {
  return mode_ == LoaderMode::kTrain ? order_[position] : position / views_;
}

std::optional<Batch> ClipLoader::next() {
  if (delivered_ >= steps_from_base()) return std::nullopt;
  const int64_t k = delivered_;
  Slot slot;
  if (options_.loader.workers == 0) {
    try {
      slot.batch = build(k, *caches_[0]);
    } catch (...) {
      slot.error = std::current_exception();
    }
  } else {
    if (workers_.empty()) start_workers();
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return ready_.count(k) > 0; });
    slot = std::move(ready_[k]);
    ready_.erase(k);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++delivered_;
  }
  cv_.notify_all();
  if (slot.error) std::rethrow_exception(slot.error);
  return std::move(slot.batch);
}

void ClipLoader::start_workers() {
  stop_ = false;
  next_to_build_ = delivered_;
  for (int64_t w = 0; w < options_.loader.workers; ++w) {
    workers_.emplace_back([this, w] { worker_loop(static_cast<int>(w)); });
  }
}

void ClipLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  ready_.clear();
  stop_ = false;
}

void ClipLoader::worker_loop(int worker) {
  const int64_t remaining = steps_from_base();
  while (true) {
    int64_t k;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] {
        return stop_ || (next_to_build_ < remaining && next_to_build_ < delivered_ + options_.loader.prefetch);
      });
      if (stop_) return;
      k = next_to_build_++;
    }
    Slot slot;
    try {
      slot.batch = build(k, *caches_[worker]);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_[k] = std::move(slot);
    }
    cv_.notify_all();
  }
}

bool ClipLoader::load(int64_t record, int64_t view, DecoderCache& cache, const torch::Tensor& out) {
  const VideoRecord& r = dataset_->records()[record];
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (bad_.count(record)) return false;  // the same failure again, without decoding
  }
  try {
    VideoDecoder& d = cache.get(r.path);
    const int64_t frames = sampling_frames(r, d.info());
    if (d.info().truncated()) {
      // The readable part would decode, but the file is damaged: never train on a prefix.
      throw DecodeError(r.path, "truncated: " + d.info().truncation);
    }
    const ClipRequest request =
        mode_ == LoaderMode::kTrain ? train_clip(options_.clips, frames, epoch_, record, view) : test_clip(options_.clips, frames, view);
    if (mode_ == LoaderMode::kTrain) {
      ++clips_decoded_;
      read_clip(d, request, out);
      return true;
    }
    // Test views of one record are consecutive positions (clip-major, then crop), so the crops
    // of a clip usually come to the same worker one after the other: decode the clip once.
    FrameMemo* memo = nullptr;
    for (size_t i = 0; i < caches_.size(); ++i) {
      if (caches_[i].get() == &cache) memo = &memos_[i];
    }
    if (memo != nullptr && memo->record == record && memo->short_side == request.short_side &&
        memo->frames == request.frames) {
      ++clips_reused_;
      transform_clip(memo->rgb, request, out);  // reads its input, never writes it
      return true;
    }
    torch::Tensor rgb = frames_to_tensor(d.decode(request.frames, static_cast<int>(request.short_side)));
    ++clips_decoded_;
    if (memo != nullptr) *memo = FrameMemo{record, request.frames, request.short_side, rgb};
    transform_clip(rgb, request, out);
    return true;
  } catch (const DecodeError& e) {
    cache.drop(r.path);
    quarantine(record, e.reason());
  } catch (const CallError& e) {
    cache.drop(r.path);
    quarantine(record, e.what());
  }
  return false;
}

void ClipLoader::quarantine(int64_t record, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!bad_.emplace(record, reason).second) return;
  const auto& path = dataset_->records()[record].path;
  bad_list_.push_back({record, path, reason});
  spdlog::warn("quarantined {}: {}", path, reason);
  if (!defer_check_) check_bad_fraction();
}

int64_t ClipLoader::counted_quarantined() const {
  // Deferred (several ranks): only what every rank has alike, the saved count and the sum over
  // the ranks, so that they all decide the same. A rank's own list differs from the others'
  // (and holds the bad videos it met as replacements, at other ranks' positions).
  if (defer_check_) return std::max(restored_quarantined_, world_quarantined_);
  return std::max({restored_quarantined_, static_cast<int64_t>(bad_.size()), world_quarantined_});
}

int64_t ClipLoader::epoch_quarantined() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(epoch_bad_.size());
}

void ClipLoader::set_world_quarantined(int64_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  world_quarantined_ = std::max(world_quarantined_, count);
  check_bad_fraction();
}

void ClipLoader::defer_bad_fraction_check(bool on) {
  std::lock_guard<std::mutex> lock(mutex_);
  defer_check_ = on;
}

void ClipLoader::check_bad_fraction() {
  const int64_t missing = static_cast<int64_t>(dataset_->missing().size());
  const int64_t known_bad = static_cast<int64_t>(dataset_->known_bad().size());
  const int64_t quarantined = known_bad + counted_quarantined();
  const int64_t total = static_cast<int64_t>(dataset_->records().size()) + missing + known_bad;
  const int64_t bad = missing + quarantined;
  if (static_cast<double>(bad) <= options_.max_bad_fraction * static_cast<double>(total)) return;
  std::ostringstream os;
  os << dataset_->name() << ": " << bad << " of " << total << " videos (" << (100.0 * bad / total)
     << "%) are missing (" << missing << ") or undecodable (" << quarantined
     << "), above data.max_bad_fraction = " << options_.max_bad_fraction;
  if (!bad_list_.empty()) os << "; first undecodable: " << bad_list_.front().path << ": " << bad_list_.front().reason;
  if (known_bad > 0) os << "; first marked by the manifest: " << dataset_->known_bad().front();
  if (missing > 0) os << "; first missing: " << dataset_->missing().front();
  throw Error(os.str());
}

int64_t ClipLoader::batch_tensors() const {
  std::lock_guard<std::mutex> lock(buffers_mutex_);
  return static_cast<int64_t>(buffers_.size());
}

torch::Tensor ClipLoader::take_buffer() {
  std::lock_guard<std::mutex> lock(buffers_mutex_);
  // A buffer is free when buffers_ holds the only reference to its memory (no batch, view or
  // copy of a batch that shares it is left). Each batch gets a tensor object of its own on that
  // memory (detach), so what a caller does to its tensor's metadata (resize_, requires_grad_)
  // stays with that batch. New references are taken only here, under the lock, so a free buffer
  // stays free until it is handed out. This holds while batches leave the loader by blocking
  // copies (`.to(device)` from pageable memory): an asynchronous copy from pinned memory would
  // hold no reference while it runs.
  for (const torch::Tensor& t : buffers_) {
    if (t.storage().use_count() == 1) return t.detach();
  }
  const int64_t c = options_.clips.transform.crop_size;
  torch::Tensor t = torch::empty({batch_size_, 3, options_.clips.sampling.num_frames, c, c});
  // Enough for the batches in flight (prefetch), those being built and the one being used.
  if (static_cast<int64_t>(buffers_.size()) <
      options_.loader.prefetch + options_.loader.workers + 2) {
    buffers_.push_back(t);
    return t.detach();
  }
  return t;
}

Batch ClipLoader::build(int64_t k, DecoderCache& cache) {
  const int64_t step = world_size_ * batch_size_;
  int64_t first = base_cursor_ + k * step + rank_ * batch_size_;
  int64_t count = batch_size_;
  const int64_t records = static_cast<int64_t>(dataset_->records().size());
  Batch batch;
  const int64_t tail = positions_ - (base_cursor_ + k * step);
  if (complete_ && tail < step) {
    // The uneven last step of a completed epoch: rank r takes its share of the `tail` left.
    const int64_t share = tail / world_size_, extra = tail % world_size_;
    count = share + (rank_ < extra ? 1 : 0);
    first = base_cursor_ + k * step + rank_ * share + std::min<int64_t>(rank_, extra);
    batch.weight = static_cast<double>(count) * world_size_ / static_cast<double>(tail);
    if (count == 0) {  // one clip to join the collectives with, not trained on
      first = positions_ - 1;
      count = 1;
    }
  }
  // Every clip is 3 x num_frames x crop x crop: each is written straight into its slot of the
  // batch (no per-clip tensor, no stacking copy), in a reused batch tensor when one is free
  // (docs/pipeline.md, "Loader").
  batch.clips = take_buffer();
  // epoch_quarantined() counts the bad videos at this rank's own positions of the epoch only:
  // the replacements after a bad one and the padding past the end are other positions,
  // counted by the rank they belong to.
  const auto met_bad = [this](int64_t record) {
    std::lock_guard<std::mutex> lock(mutex_);
    epoch_bad_.insert(record);
  };
  for (int64_t p = first; p < first + count; ++p) {
    const torch::Tensor slot = batch.clips[static_cast<int64_t>(batch.indices.size())];
    if (mode_ == LoaderMode::kTest) {
      if (p >= positions_) break;
      const int64_t record = record_at(p), view = p % views_;
      if (load(record, view, cache, slot)) {
        batch.indices.push_back(record);
        batch.views.push_back(view);
      } else {
        met_bad(record);
      }
      continue;
    }
    // Training: past the end (no drop_last) wraps to the start of the order.
    int64_t pos = p % positions_;
    int64_t record = record_at(pos), view = 0;
    bool loaded = load(record, view, cache, slot);
    if (!loaded && p < positions_ && batch.weight > 0) met_bad(record);
    while (!loaded) {
      // Fill from the loader's own order: the next positions, each with its own label and a
      // fresh view of the draws.
      ++view;
      if (view > records) throw Error(dataset_->name() + ": no decodable video left to fill the batch");
      pos = (pos + 1) % positions_;
      record = record_at(pos);
      loaded = load(record, view, cache, slot);
    }
    batch.indices.push_back(record);
    batch.views.push_back(view);
  }
  const int64_t n = static_cast<int64_t>(batch.indices.size());
  // Test batches lose the views of bad videos and the last one may be short: a view of the
  // filled slots (contiguous, the same storage).
  if (n < batch_size_) batch.clips = batch.clips.narrow(0, 0, n);
  if (dataset_->multilabel()) {
    batch.labels = torch::zeros({n, static_cast<int64_t>(dataset_->class_names().size())});
    auto acc = batch.labels.accessor<float, 2>();
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t t : dataset_->records()[batch.indices[i]].tags) acc[i][t] = 1.0f;
    }
  } else {
    batch.labels = torch::empty({n}, torch::kInt64);
    auto acc = batch.labels.accessor<int64_t, 1>();
    for (int64_t i = 0; i < n; ++i) acc[i] = dataset_->records()[batch.indices[i]].label;
  }
  return batch;
}

}  // namespace holo::pipeline
