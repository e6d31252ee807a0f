#include "core/log.h"

#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>

#include "core/env.h"
#include "core/error.h"
#include "core/progress.h"

namespace holo::log {
namespace {

/// The terminal sink: a log line written while a progress bar is on the terminal takes the
/// bar off its line first and draws it again after, so the two never share a line.
class TerminalSink : public spdlog::sinks::sink {
 public:
  explicit TerminalSink(std::shared_ptr<spdlog::sinks::sink> inner) : inner_(std::move(inner)) {}
  void log(const spdlog::details::log_msg& msg) override {
    ProgressBarPause pause;
    inner_->log(msg);
    inner_->flush();  // before the bar comes back on stdout
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& p) override { inner_->set_pattern(p); }
  void set_formatter(std::unique_ptr<spdlog::formatter> f) override {
    inner_->set_formatter(std::move(f));
  }

 private:
  std::shared_ptr<spdlog::sinks::sink> inner_;
};

/// The whole log of a rank other than 0. Until its file is named the lines wait in memory (the
/// newest kMaxHeld of them); the file is opened at the next line or flush, and the held lines
/// are written to it first.
class RankFileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  /// Names the file; the first name stays.
  void set_path(const std::string& path) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (path_.empty()) path_ = path;
  }
  std::string path() {
    std::lock_guard<std::mutex> lock(mutex_);
    return path_;
  }
  /// The end of the process: lines still held, with no file named, go to `fallback`.
  void finish(const std::string& fallback) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (held_.empty() && dropped_ == 0) return;
    if (path_.empty()) path_ = fallback;
    if (open_locked()) file_.flush();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    if (open_locked()) {
      file_.write(line);
      return;
    }
    held_.emplace_back(line.data(), line.size());
    if (held_.size() > kMaxHeld) {
      held_.pop_front();
      ++dropped_;
    }
  }
  void flush_() override {
    if (open_locked()) file_.flush();
  }

 private:
  static constexpr size_t kMaxHeld = 100000;

  /// Opens the named file once; false while none is named or it cannot be opened.
  bool open_locked() {
    if (open_) return true;
    if (path_.empty()) return false;
    try {
      file_.open(path_, /*truncate=*/false);
    } catch (const std::exception& e) {
      // Not through the logger (its lock is held): straight to the terminal, once per name.
      std::fprintf(stderr,
                   "holo: [rank %d] cannot write this rank's log to %s (%s); its warnings and "
                   "errors still show here\n",
                   process_identity().rank, path_.c_str(), e.what());
      path_.clear();
      return false;
    }
    open_ = true;
    auto write = [this](const std::string& text) {
      spdlog::memory_buf_t buf;
      buf.append(text.data(), text.data() + text.size());
      file_.write(buf);
    };
    if (dropped_ > 0) write("(" + std::to_string(dropped_) + " earlier lines were not kept)\n");
    for (const auto& l : held_) write(l);
    held_.clear();
    dropped_ = 0;
    return true;
  }

  std::string path_;
  bool open_ = false;
  spdlog::details::file_helper file_;
  std::deque<std::string> held_;
  size_t dropped_ = 0;
};

struct Sinks {
  std::shared_ptr<TerminalSink> terminal;
  std::shared_ptr<RankFileSink> rank_file;
  std::shared_ptr<spdlog::logger> logger;
};

Sinks& sinks() {
  static Sinks s = [] {
    Sinks n;
    auto err = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(
        env::no_color() || !isatty(STDERR_FILENO) ? spdlog::color_mode::never
                                                  : spdlog::color_mode::automatic);
    n.terminal = std::make_shared<TerminalSink>(err);
    n.rank_file = std::make_shared<RankFileSink>();
    n.logger =
        std::make_shared<spdlog::logger>("holo", spdlog::sinks_init_list{n.terminal, n.rank_file});
    spdlog::set_default_logger(n.logger);
    return n;
  }();
  return s;
}

/// A rank other than 0 of a job of several: the terminal gets its warnings and errors only.
bool quiet_rank() {
  const auto& id = process_identity();
  return id.world_size > 1 && id.rank != 0;
}

std::string rank_file_in(const std::string& dir) {
  return (std::filesystem::path(dir) / ("rank-" + std::to_string(process_identity().rank) + ".log"))
      .string();
}

void write_held_at_exit() {
  if (!quiet_rank()) return;
  const std::string dir = "holo-logs-" + std::to_string(getuid());
  sinks().rank_file->finish(rank_file_in((std::filesystem::temp_directory_path() / dir).string()));
}

std::string pattern() {
  const auto& id = process_identity();
  // One rank: keep lines short. Several: prefix every line with the rank.
  std::string rank = id.world_size > 1 ? "[rank " + std::to_string(id.rank) + "] " : "";
  return "%Y-%m-%d %H:%M:%S.%e " + rank + "%^%l%$ %v";
}

}  // namespace

void init(const std::string& level) {
  Sinks& s = sinks();
  // After sinks() exists, so that this runs before its destructor at exit.
  static const bool at_exit = std::atexit(write_held_at_exit) == 0;
  (void)at_exit;
  const std::string name = level.empty() ? env::log_level() : level;
  const auto lvl = spdlog::level::from_str(name);
  if (lvl == spdlog::level::off && name != "off") {
    throw UsageError("log level '" + name +
                     "' is not one of trace, debug, info, warn, error, critical, off");
  }
  const bool quiet = quiet_rank();
  s.terminal->set_level(quiet ? spdlog::level::warn : spdlog::level::trace);
  s.rank_file->set_level(quiet ? spdlog::level::trace : spdlog::level::off);
  if (quiet) {
    const std::string dir = env::log_dir();
    if (!dir.empty()) s.rank_file->set_path(rank_file_in(dir));
    spdlog::flush_every(std::chrono::seconds(1));
  }
  s.logger->set_level(lvl);
  s.logger->set_pattern(pattern());
  s.logger->flush_on(spdlog::level::warn);
}

void add_file(const std::string& path) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  sink->set_pattern(pattern());
  spdlog::default_logger()->sinks().push_back(sink);
  // A kill -9 or a full disk loses at most the last second of the file.
  spdlog::flush_every(std::chrono::seconds(1));
}

void set_rank_log_dir(const std::string& dir) {
  if (!quiet_rank()) return;
  sinks().rank_file->set_path(rank_file_in(dir));
  sinks().rank_file->flush();  // the held lines go to the file now
}

std::string rank_log_path() { return quiet_rank() ? sinks().rank_file->path() : ""; }

void flush() { spdlog::default_logger()->flush(); }

}  // namespace holo::log
