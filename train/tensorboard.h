#pragma once
/// TensorBoard event files beside metrics.jsonl (docs/metrics.md, "TensorBoard"). Each
/// metrics line becomes one event at its step whose scalars are the line's numeric fields,
/// tagged `<split>/<key>`. A file is a sequence of TFRecords, each holding one serialized
/// TensorFlow `Event`; the messages are the subset of TensorFlow's that train/tensorboard.proto
/// declares. Protobuf stays inside tensorboard.cc.

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace holo::train {

/// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, initial value and final XOR
/// 0xFFFFFFFF) of `data`, continuing from `crc`, the CRC of the bytes before (0 to start):
/// crc32c(b, crc32c(a)) == crc32c(a + b). crc32c("123456789") == 0xE3069283.
uint32_t crc32c(std::string_view data, uint32_t crc = 0);

/// TFRecord's masked CRC of `data`: with c = crc32c(data), ((c >> 15) | (c << 17)) + 0xa282ead8
/// (modulo 2^32).
uint32_t masked_crc32c(std::string_view data);

/// One TFRecord holding `data`: the length as uint64, the masked CRC of those 8 bytes as uint32,
/// the data, the masked CRC of the data as uint32; integers little-endian.
std::string tfrecord(std::string_view data);

/// The scalars of one metrics.jsonl line, in key order: every numeric field except `step` (the
/// event's step), `split` (the tag's prefix), `epoch` and `time` (as `holo plot`), tagged
/// `<split>/<key>`, or `<key>` for a line without a split. Other values (strings, booleans,
/// null, arrays, objects) are left out. A NaN or infinite number stays what it is.
std::vector<std::pair<std::string, double>> tensorboard_scalars(const nlohmann::json& line);

/// `<run_dir>/tb`: the folder of a run's event files (the run's name in TensorBoard is this
/// folder's path under --logdir).
std::string tensorboard_dir(const std::string& run_dir);

/// Removes the event files (`events.out.tfevents.*`) in `dir`, if any: a run that starts afresh
/// in a run directory starts its curves afresh too, as metrics.jsonl does. Returns how many.
/// Throws holo::IoError when one cannot be removed.
int remove_event_files(const std::string& dir);

/// Appends events to one new event file. Every record is flushed as soon as it is written, so a
/// run that is killed keeps every event it wrote.
class TensorBoardWriter {
 public:
  /// Creates `dir` and in it a new file `events.out.tfevents.<seconds>.<host>` whose first
  /// record is the file version "brain.Event:2". <seconds> is the current Unix time, or one
  /// more than the largest of the event files already in `dir`, so that a later process's
  /// file sorts after an earlier one's (TensorBoard reads a run's files in name order, and a
  /// resumed run's points then replace those of the steps it trains again). Throws
  /// holo::IoError.
  explicit TensorBoardWriter(const std::string& dir);

  /// One event at `step` with `scalars`, stamped with the current time. Nothing is written
  /// when `scalars` is empty. Throws holo::IoError when the write fails.
  void write(int64_t step, const std::vector<std::pair<std::string, double>>& scalars);

  /// The scalars of a metrics.jsonl line (tensorboard_scalars) at its `step`.
  void write_metrics(const nlohmann::json& line);

  /// The event file's path.
  const std::string& path() const { return path_; }

 private:
  void append(const std::string& event);

  std::string path_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, &std::fclose};
};

}  // namespace holo::train
