#pragma once
/// Progress for long work: a bar with rate and ETA redrawn in place when stdout is a terminal,
/// plain log lines every HOLO_PROGRESS_INTERVAL seconds otherwise (logs, CI, SLURM output).

#include <chrono>
#include <cstdint>
#include <string>

namespace holo {

struct ProgressOptions {
  enum class Mode { kAuto, kBar, kLines, kOff };
  std::string label;         ///< what is being counted, e.g. "probe" or "epoch 3"
  int64_t total = 0;         ///< 0 when unknown (no bar fraction, no ETA)
  std::string unit = "it";   ///< unit of the rate, e.g. "clips"
  Mode mode = Mode::kAuto;   ///< kAuto reads HOLO_PROGRESS, then whether stdout is a terminal
  double interval_s = -1;    ///< seconds between plain lines; < 0 reads HOLO_PROGRESS_INTERVAL
  int64_t start = 0;         ///< items done before this process (a resumed run): in the count, not the rate
};

/// While alive, the terminal's progress bar is off its line (a log line is being written
/// under it); the bar is drawn again when it ends. Used by the log's terminal sink, so that
/// no log line is glued onto a bar.
class ProgressBarPause {
 public:
  ProgressBarPause();
  ~ProgressBarPause();
  ProgressBarPause(const ProgressBarPause&) = delete;
  ProgressBarPause& operator=(const ProgressBarPause&) = delete;
};

class Progress {
 public:
  explicit Progress(ProgressOptions options);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Counts `n` more items done.
  void advance(int64_t n = 1);
  /// Free text shown after the rate, e.g. "loss 0.412".
  void set_postfix(std::string postfix);
  /// Draws the final state and ends the line. Called by the destructor if not before.
  void finish();

  int64_t done() const { return done_; }
  ProgressOptions::Mode mode() const { return mode_; }

  /// One rendering of the progress line; a pure function so tests can check it.
  /// The rate counts the items after `start` only (those this process did).
  static std::string render(const std::string& label, int64_t done, int64_t total,
                            double elapsed_s, const std::string& unit,
                            const std::string& postfix, int bar_width, int64_t start = 0);
  /// "1:02:03" or "02:03".
  static std::string format_duration(double seconds);

 private:
  void draw(bool final);

  ProgressOptions options_;
  ProgressOptions::Mode mode_;
  int64_t done_ = 0;
  std::string postfix_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  bool finished_ = false;
};

}  // namespace holo
