#include "core/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

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
  void set_formatter(std::unique_ptr<spdlog::formatter> f) override { inner_->set_formatter(std::move(f)); }

 private:
  std::shared_ptr<spdlog::sinks::sink> inner_;
};

std::string pattern() {
  const auto& id = process_identity();
  // One rank: keep lines short. Several: prefix every line with the rank.
  std::string rank = id.world_size > 1 ? "[rank " + std::to_string(id.rank) + "] " : "";
  return "%Y-%m-%d %H:%M:%S.%e " + rank + "%^%l%$ %v";
}

}  // namespace

void init(const std::string& level) {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(
        env::no_color() || !isatty(STDERR_FILENO) ? spdlog::color_mode::never
                                                  : spdlog::color_mode::automatic);
    auto l = std::make_shared<spdlog::logger>("holo", std::make_shared<TerminalSink>(sink));
    spdlog::set_default_logger(l);
    return l;
  }();
  const std::string name = level.empty() ? env::log_level() : level;
  const auto lvl = spdlog::level::from_str(name);
  if (lvl == spdlog::level::off && name != "off") {
    throw UsageError("log level '" + name +
                     "' is not one of trace, debug, info, warn, error, critical, off");
  }
  logger->set_level(lvl);
  logger->set_pattern(pattern());
  logger->flush_on(spdlog::level::warn);
}

void add_file(const std::string& path) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  sink->set_pattern(pattern());
  spdlog::default_logger()->sinks().push_back(sink);
  // A kill -9 or a full disk loses at most the last second of the file.
  spdlog::flush_every(std::chrono::seconds(1));
}

void flush() { spdlog::default_logger()->flush(); }

}  // namespace holo::log
