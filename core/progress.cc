#include "core/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <mutex>

#include "core/env.h"
#include "core/error.h"
#include "core/time.h"

namespace holo {
namespace {

ProgressOptions::Mode chosen_mode(ProgressOptions::Mode m) {
  if (m != ProgressOptions::Mode::kAuto) return m;
  const std::string knob = env::progress();
  if (knob == "bar") return ProgressOptions::Mode::kBar;
  if (knob == "lines") return ProgressOptions::Mode::kLines;
  if (knob == "off") return ProgressOptions::Mode::kOff;
  if (knob != "auto") {
    throw UsageError("HOLO_PROGRESS='" + knob + "' is not one of auto, bar, lines, off");
  }
  return isatty(STDOUT_FILENO) ? ProgressOptions::Mode::kBar : ProgressOptions::Mode::kLines;
}

ProgressOptions::Mode resolve_mode(ProgressOptions::Mode m) {
  const ProgressOptions::Mode chosen = chosen_mode(m);
  // In a job of several ranks only rank 0 draws a bar; the others' progress lines go to their
  // own log files (core/log.h) with the rest of their info lines.
  const auto& id = process_identity();
  if (chosen == ProgressOptions::Mode::kBar && id.world_size > 1 && id.rank != 0) {
    return ProgressOptions::Mode::kLines;
  }
  return chosen;
}

std::string format_rate(double rate) {
  char buf[32];
  if (rate >= 100) {
    std::snprintf(buf, sizeof buf, "%.0f", rate);
  } else if (rate >= 1) {
    std::snprintf(buf, sizeof buf, "%.2f", rate);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f", rate);
  }
  return buf;
}

/// The bar on the terminal now, if any: what a log line must clear and draw again.
std::mutex& bar_mutex() {
  static std::mutex m;
  return m;
}
std::string& bar_line() {  // "" when no bar is on the terminal
  static std::string line;
  return line;
}

}  // namespace

ProgressBarPause::ProgressBarPause() {
  bar_mutex().lock();
  if (!bar_line().empty()) {
    std::fputs("\r\033[2K", stdout);
    std::fflush(stdout);
  }
}

ProgressBarPause::~ProgressBarPause() {
  if (!bar_line().empty()) {
    std::fputs(bar_line().c_str(), stdout);
    std::fflush(stdout);
  }
  bar_mutex().unlock();
}

Progress::Progress(ProgressOptions options)
    : options_(std::move(options)), mode_(resolve_mode(options_.mode)) {
  done_ = options_.start;
  if (options_.interval_s < 0) options_.interval_s = env::progress_interval();
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  try {
    finish();
  } catch (...) {
    // A destructor must not throw; a failed final draw loses nothing but a line.
  }
}

void Progress::advance(int64_t n) {
  done_ += n;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  const double min_gap = mode_ == ProgressOptions::Mode::kBar ? 0.1 : options_.interval_s;
  if (since >= min_gap) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::set_postfix(std::string postfix) { postfix_ = std::move(postfix); }

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

std::string Progress::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const long t = std::lround(s);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", t / 60, t % 60);
  }
  return buf;
}

std::string Progress::render(const std::string& label, int64_t done, int64_t total,
                             double elapsed_s, const std::string& unit,
                             const std::string& postfix, int bar_width, int64_t start) {
  const double rate = elapsed_s > 0 ? (done - start) / elapsed_s : 0.0;
  std::string out = label.empty() ? "" : label + " ";
  if (total > 0) {
    const double frac = std::min(1.0, static_cast<double>(done) / total);
    if (bar_width > 0) {
      const int filled = static_cast<int>(frac * bar_width);
      out += "[" + std::string(filled, '#') + std::string(bar_width - filled, '.') + "] ";
    }
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3.0f%% ", frac * 100);
    out += pct;
    out += std::to_string(done) + "/" + std::to_string(total);
  } else {
    out += std::to_string(done);
  }
  out += " " + format_rate(rate) + " " + unit + "/s";
  if (total > 0) {
    const double eta = rate > 0 ? (total - done) / rate : NAN;
    out += " ETA " + format_duration(done >= total ? 0.0 : eta);
  }
  out += " elapsed " + format_duration(elapsed_s);
  if (!postfix.empty()) out += " " + postfix;
  return out;
}

void Progress::draw(bool final) {
  if (mode_ == ProgressOptions::Mode::kOff) return;
  const double elapsed = seconds_since(start_);
  if (mode_ == ProgressOptions::Mode::kBar) {
    const std::string line = "\r\033[2K" + render(options_.label, done_, options_.total, elapsed,
                                                  options_.unit, postfix_, 30, options_.start);
    std::lock_guard<std::mutex> lock(bar_mutex());
    std::fprintf(stdout, "%s%s", line.c_str(), final ? "\n" : "");
    std::fflush(stdout);
    bar_line() = final ? "" : line;
  } else {
    spdlog::info("{}", render(options_.label, done_, options_.total, elapsed, options_.unit,
                              postfix_, 0, options_.start));
  }
}

}  // namespace holo
