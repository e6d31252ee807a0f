#include "core/env.h"

#include <csignal>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <stdexcept>

#include "core/error.h"

namespace holo::env {
namespace {

std::vector<KnobInfo>& registry() {
  static std::vector<KnobInfo> r;
  return r;
}

const char* raw(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

[[noreturn]] void bad(const char* name, const char* value, const char* type) {
  throw UsageError(std::string("environment variable ") + name + "='" + value +
                   "' is not a valid " + type);
}

bool parse(const char* name, const char* v, bool) {
  std::string s(v);
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return false;
  bad(name, v, "bool (1/0, true/false, yes/no, on/off)");
}

int parse(const char* name, const char* v, int) {
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < INT32_MIN || x > INT32_MAX) bad(name, v, "int");
  return static_cast<int>(x);
}

double parse(const char* name, const char* v, double) {
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(v, &end);
  if (errno != 0 || end == v || *end != '\0') bad(name, v, "float");
  return x;
}

std::string parse(const char*, const char* v, const std::string&) { return v; }

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, bool>) return "bool";
  if constexpr (std::is_same_v<T, int>) return "int";
  if constexpr (std::is_same_v<T, double>) return "float";
  return "string";
}

template <class T>
std::string text(const T& v) {
  if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
  if constexpr (std::is_same_v<T, std::string>) return v;
  if constexpr (!std::is_same_v<T, std::string>) return std::to_string(v);
}

/// One knob: registers itself at start-up and reads the environment on every call (cheap, and
/// tests may change the environment).
template <class T>
struct Knob {
  Knob(const char* name, T def, const char* doc) : name_(name), def_(std::move(def)) {
    registry().push_back(KnobInfo{name, type_name<T>(), text(def_), doc});
  }
  T get() const {
    const char* v = raw(name_);
    return v ? parse(name_, v, def_) : def_;
  }
  const char* name_;
  T def_;
};

}  // namespace

// The declarations. Add a knob here, with its accessor in env.h; docs/env.md is printed by
// `holo env --markdown`.
#define HOLO_ENV_KNOB(type, fn, var, def, doc) \
  static const Knob<type> knob_##fn(var, def, doc); \
  type fn() { return knob_##fn.get(); }

HOLO_ENV_KNOB(std::string, log_level, "HOLO_LOG_LEVEL", "info",
              "Log level: trace, debug, info, warn, error, off.")
HOLO_ENV_KNOB(std::string, progress, "HOLO_PROGRESS", "auto",
              "Progress display: auto (a bar on a terminal, log lines otherwise), bar, lines, off.")
HOLO_ENV_KNOB(double, progress_interval, "HOLO_PROGRESS_INTERVAL", 10.0,
              "Seconds between plain progress lines when stdout is not a terminal.")
HOLO_ENV_KNOB(int, num_threads, "HOLO_NUM_THREADS", 0,
              "Intra-op threads for LibTorch per worker; 0 keeps LibTorch's choice.")
HOLO_ENV_KNOB(std::string, runs_dir, "HOLO_RUNS_DIR", "runs",
              "Folder for run directories when a recipe sets no run.dir.")
HOLO_ENV_KNOB(double, collective_timeout, "HOLO_COLLECTIVE_TIMEOUT", 60.0,
              "Seconds a collective waits for its peers before the job aborts, naming the absent ranks.")
HOLO_ENV_KNOB(int, decode_threads, "HOLO_DECODE_THREADS", 0,
              "Decoder threads per open video where decode.threads is 0; 0: the cores divided among the loader's workers.")
HOLO_ENV_KNOB(std::string, cache_dir, "HOLO_CACHE_DIR", ".holo-cache",
              "Folder for probe manifests and cached teacher features when a recipe names none.")
HOLO_ENV_KNOB(bool, malloc_tuning, "HOLO_MALLOC_TUNING", true,
              "Keeps freed blocks up to 32 MiB in glibc's heap for reuse (M_MMAP_THRESHOLD 32 MiB, "
              "M_TRIM_THRESHOLD "
              "64 MiB); 0 leaves glibc's defaults. A glibc.malloc tunable in GLIBC_TUNABLES also "
              "leaves them.")
HOLO_ENV_KNOB(bool, no_color, "HOLO_NO_COLOR", false, "Disables colour in log lines.")
HOLO_ENV_KNOB(std::string, log_dir, "HOLO_LOG_DIR", "",
              "Folder where each rank other than 0 of a multi-rank job writes its whole log (rank-<N>.log; "
              "its terminal shows only its warnings and errors); holo launch sets <run dir>/logs. Empty: "
              "<run dir>/logs under holo train, else <temp dir>/holo-logs-<uid>.")
HOLO_ENV_KNOB(std::string, sample_log, "HOLO_SAMPLE_LOG", "",
              "When set, each training rank appends the samples it trains on (epoch step record) to <value>.rank<N>.")
HOLO_ENV_KNOB(std::string, fault_kill_at, "HOLO_FAULT_KILL_AT", "",
              "Fault tests only: SIGKILL the process at this phase of a checkpoint save (shard, marker, "
              "manifest, cleanup), or PHASE:N at its N-th time.")

#undef HOLO_ENV_KNOB

const std::vector<KnobInfo>& knobs() { return registry(); }

void fault_point(const char* phase) {
  // "PHASE" or "PHASE:N": the N-th time this process reaches PHASE (the first by default).
  static const std::string spec = fault_kill_at();
  if (spec.empty()) return;
  const auto colon = spec.find(':');
  if (spec.substr(0, colon) != phase) return;
  static int seen = 0;
  const int nth = colon == std::string::npos ? 1 : std::atoi(spec.c_str() + colon + 1);
  if (++seen == nth) ::raise(SIGKILL);
}

bool KnobInfo::is_set() const { return raw(name.c_str()) != nullptr; }

std::string KnobInfo::value() const {
  const char* v = raw(name.c_str());
  return v ? std::string(v) : default_value;
}

}  // namespace holo::env
