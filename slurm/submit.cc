#include "slurm/submit.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "core/run_dir.h"

namespace holo::slurm {
namespace fs = std::filesystem;
namespace {

std::string utc_now() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// Appends one line to the run's event log (O_APPEND: lines from the job and from here do not
/// interleave within a line).
void append_event(const RunFiles& files, const std::string& text) {
  const std::string line = utc_now() + " " + text + "\n";
  const int fd = ::open(files.events.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError("cannot append to '" + files.events + "': " + std::strerror(errno));
  const ssize_t n = ::write(fd, line.data(), line.size());
  const int write_errno = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size())) {
    throw IoError("cannot append to '" + files.events + "': " + std::strerror(write_errno));
  }
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

/// The job id recorded in the run directory, or "" when there is none.
std::string recorded_job_id(const RunFiles& files) {
  if (!fs::exists(files.job_id)) return "";
  std::string id = read_file(files.job_id);
  while (!id.empty() && std::isspace(static_cast<unsigned char>(id.back()))) id.pop_back();
  check_job_id(id, files.job_id);
  return id;
}

std::string this_executable() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw IoError("cannot find this program's path (/proc/self/exe): " + ec.message());
  return p.string();
}

}  // namespace

void apply_flag(Recipe& recipe, const std::string& path, const Value& value, const std::string& flag) {
  const KeyDef* key = find_key(path);
  HOLO_CHECK(key != nullptr, "no schema entry for " + path);
  const std::string problem = check_value(*key, value);
  if (!problem.empty()) throw UsageError(flag + " (" + path + "): " + problem);
  key->set(recipe, value);
}

SubmitResult submit(Recipe recipe, const SubmitOptions& options) {
  SubmitResult result;
  result.run_dir = fs::absolute(run_dir_path(recipe)).lexically_normal().string();
  while (result.run_dir.size() > 1 && result.run_dir.back() == '/') result.run_dir.pop_back();
  recipe.run.dir = result.run_dir;
  const std::string holo = options.holo_binary.empty() ? this_executable() : options.holo_binary;

  std::string origin;
  for (const auto& s : recipe.sources) origin += (origin.empty() ? "" : ", ") + s;
  for (const auto& o : recipe.overrides) origin += " --set " + o;
  result.script = build_script(recipe, ScriptOptions(holo, result.run_dir).set_origin(origin));
  if (options.dry_run) return result;

  const RunFiles files(result.run_dir);
  std::error_code ec;
  fs::create_directories(files.slurm_dir, ec);
  if (ec) throw IoError("cannot create '" + files.slurm_dir + "': " + ec.message());
  const std::string previous = recorded_job_id(files);
  if (!previous.empty()) {
    const JobInfo info = query_job(previous);
    if (info.active()) {
      throw UsageError("run directory '" + result.run_dir + "' already has job " + previous +
                       " (" + info.state + "); wait for it or `holo cancel " + result.run_dir +
                       "` first");
    }
  }
  // A job that needs more nodes than can run jobs now would wait in the queue without end
  // ("Nodes required for job are DOWN, DRAINED ..."): say so instead.
  if (const auto nodes = partition_nodes(recipe.slurm.partition)) {
    const int64_t usable = static_cast<int64_t>(nodes->usable.size());
    if (usable < recipe.slurm.nodes && nodes->total >= recipe.slurm.nodes) {
      std::string bad;
      for (const auto& n : nodes->unusable) bad += (bad.empty() ? "" : ", ") + n;
      throw Error("slurm.nodes = " + std::to_string(recipe.slurm.nodes) + " but only " +
                  std::to_string(usable) + " of the " + std::to_string(nodes->total) +
                  " nodes of partition '" + nodes->partition + "' can run jobs now; not usable: " + bad +
                  ". Bring them back (scontrol update nodename=NODE state=resume) or submit with --nodes " +
                  std::to_string(std::max<int64_t>(usable, 1)));
    }
  }
  write_file_atomic(files.recipe, to_toml(recipe));
  write_file_atomic(files.script, result.script);
  fs::permissions(files.script, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  fs::perm_options::add, ec);
  result.job_id = submit_script(files.script);
  write_file_atomic(files.job_id, result.job_id + "\n");
  append_event(files, "holo submit: submitted job " + result.job_id +
                          (previous.empty() ? "" : " (previous job " + previous + ")"));
  return result;
}

std::optional<CheckpointRef> last_checkpoint(const std::string& run_dir) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  static const std::regex kName("step-([0-9]{8})");
  std::optional<CheckpointRef> best;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !std::regex_match(name, m, kName)) continue;
    const int64_t step = std::stoll(m[1]);
    if (best && best->step >= step) continue;
    // Only a complete checkpoint counts: an interrupted save must not be reported as resumable.
    std::ifstream in(entry.path() / "manifest.json");
    if (!in) continue;
    const auto manifest = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!manifest.is_object() || manifest.value("complete", false) != true) continue;
    best = CheckpointRef{manifest.value("step", step), entry.path().string()};
  }
  return best;
}

RunStatus run_status(const std::string& run_dir, int event_lines) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) throw UsageError("'" + run_dir + "' is not a run directory");
  RunStatus st;
  st.run_dir = fs::absolute(run_dir).lexically_normal().string();
  const RunFiles files(st.run_dir);
  st.job_id = recorded_job_id(files);
  if (!st.job_id.empty()) st.job = query_job(st.job_id);
  const auto events = read_lines(files.events);
  for (const auto& e : events) {
    if (e.find(" started (SLURM_RESTART_COUNT=") != std::string::npos) ++st.starts;
  }
  const size_t first = events.size() > static_cast<size_t>(event_lines) ? events.size() - event_lines : 0;
  st.last_events.assign(events.begin() + static_cast<std::ptrdiff_t>(first), events.end());
  st.checkpoint = last_checkpoint(st.run_dir);
  const auto metrics = read_lines((fs::path(st.run_dir) / "metrics.jsonl").string());
  if (!metrics.empty()) st.last_metrics = metrics.back();
  return st;
}

std::string format_status(const RunStatus& st, bool json) {
  if (json) {
    nlohmann::json j;
    j["run_dir"] = st.run_dir;
    j["job_id"] = st.job_id;
    if (st.job) {
      j["state"] = st.job->state;
      j["reason"] = st.job->reason;
      j["restarts"] = st.job->restarts;
      j["exit_code"] = st.job->exit_code;
      j["elapsed"] = st.job->elapsed;
      j["source"] = st.job->source;
      j["note"] = st.job->note;
      j["active"] = st.job->active();
    }
    j["starts"] = st.starts;
    j["checkpoint_step"] = st.checkpoint ? nlohmann::json(st.checkpoint->step) : nlohmann::json();
    j["checkpoint"] = st.checkpoint ? st.checkpoint->path : "";
    j["last_metrics"] = st.last_metrics.empty()
                            ? nlohmann::json()
                            : nlohmann::json::parse(st.last_metrics, nullptr, false);
    j["events"] = st.last_events;
    return j.dump() + "\n";
  }
  std::ostringstream os;
  os << "run         " << st.run_dir << "\n";
  if (st.job_id.empty()) {
    os << "job         none (not submitted with holo submit)\n";
  } else if (st.job && !st.job->state.empty()) {
    const JobInfo& j = *st.job;
    os << "job         " << j.id << " " << j.state;
    if (!j.reason.empty() && j.reason != "None") os << " (" << j.reason << ")";
    os << ", from " << j.source;
    if (!j.elapsed.empty()) os << ", elapsed " << j.elapsed;
    if (!j.exit_code.empty() && !j.active()) os << ", exit code " << j.exit_code;
    os << "\n";
  } else {
    os << "job         " << st.job_id << " state unknown: " << (st.job ? st.job->note : "") << "\n";
  }
  os << "restarts    ";
  if (st.job && st.job->restarts >= 0) {
    os << st.job->restarts << " (scheduler); ";
  }
  os << st.starts << " start" << (st.starts == 1 ? "" : "s") << " logged\n";
  os << "checkpoint  ";
  if (st.checkpoint) {
    os << "step " << st.checkpoint->step << " (" << st.checkpoint->path << ")\n";
  } else {
    os << "none\n";
  }
  os << "metrics     " << (st.last_metrics.empty() ? "none" : st.last_metrics) << "\n";
  if (!st.last_events.empty()) {
    os << "events\n";
    for (const auto& e : st.last_events) os << "  " << e << "\n";
  }
  return os.str();
}

std::string cancel_run(const std::string& run_dir, const std::string& signal) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) throw UsageError("'" + run_dir + "' is not a run directory");
  const RunFiles files(fs::absolute(run_dir).lexically_normal().string());
  const std::string id = recorded_job_id(files);
  if (id.empty()) {
    throw UsageError("run directory '" + run_dir + "' has no job (no " + files.job_id + ")");
  }
  // scancel says nothing about a job that has already ended: check first, and say so.
  const JobInfo info = query_job(id);
  if (!info.active()) {
    throw UsageError("job " + id + " of '" + files.run_dir + "' is not pending or running (" +
                     (info.state.empty() ? info.note : info.state) + "): nothing to cancel");
  }
  cancel_job(id, signal);
  append_event(files, signal.empty() ? "holo cancel: cancelled job " + id
                                     : "holo cancel: sent " + signal + " to job " + id);
  return id;
}

}  // namespace holo::slurm
