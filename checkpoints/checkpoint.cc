#include "checkpoints/checkpoint.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "core/env.h"
#include "core/error.h"
#include "core/json_numbers.h"
#include "core/run_dir.h"
#include "core/time.h"

namespace holo::ckpt {
namespace fs = std::filesystem;
namespace {

constexpr int kFormatVersion = 1;

std::string shard_name(int rank, int world) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "shard-%05d-of-%05d.holo", rank, world);
  return buf;
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(read_file(path));
}

/// Free space of the filesystem holding `path`, for error messages.
std::string free_space(const std::string& path) {
  struct statvfs s {};
  if (::statvfs(path.c_str(), &s) != 0) return "free space unknown";
  const double mib = static_cast<double>(s.f_bavail) * static_cast<double>(s.f_frsize) / (1024.0 * 1024.0);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", mib);
  return std::string(buf) + " MiB free on the filesystem of '" + path + "'";
}

/// Renames `dir` out of the way (".deleting-<name>", atomic) and removes it: a kill in the
/// middle leaves a leftover that the next start removes, never a step-N without its manifest.
void remove_checkpoint_dir(const fs::path& dir) {
  const fs::path doomed = dir.parent_path() / (".deleting-" + dir.filename().string());
  std::error_code ec;
  fs::remove_all(doomed, ec);
  fs::rename(dir, doomed, ec);
  if (ec) {
    spdlog::warn("checkpoint: cannot remove '{}': {}", dir.string(), ec.message());
    return;
  }
  env::fault_point("cleanup");
  fs::remove_all(doomed, ec);
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

std::map<std::string, int> assign_shards(const NamedTensors& tensors, int world_size) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  auto bytes = [&](size_t i) { return tensors[i].second.numel() * tensors[i].second.element_size(); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return bytes(a) > bytes(b); });
  std::vector<int64_t> load(world_size, 0);
  std::map<std::string, int> owner;
  for (size_t i : order) {
    const int r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    load[r] += bytes(i);
    owner[tensors[i].first] = r;
  }
  return owner;
}

std::string Manager::step_dir(const std::string& root, int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return (fs::path(root) / buf).string();
}

Manager::Manager(std::string root, ManagerOptions options)
    : root_(std::move(root)), options_(std::move(options)) {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) throw IoError("cannot create checkpoint folder '" + root_ + "': " + ec.message());
  for (const auto& e : list(root_)) {
    if (e.manifest.contains("score") && e.manifest["score"].is_number()) {
      scores_[e.path] = e.manifest["score"].get<double>();
    }
  }
}

Manager::~Manager() {
  try {
    wait();
  } catch (const std::exception& e) {
    spdlog::error("checkpoint: background save failed: {}", e.what());
  }
}

void Manager::wait() {
  if (worker_.joinable()) worker_.join();
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void Manager::save(Snapshot snapshot, bool wait_commit) {
  wait();  // the write in flight uses the staging buffers
  const auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, torch::Tensor> next;
  snapshot.replicated = stage(snapshot.replicated, "r.", next);
  snapshot.per_rank = stage(snapshot.per_rank, "p.", next);
  staging_ = std::move(next);  // buffers of tensors no longer saved are freed
  last_stall_s_ = seconds_since(t0);
  if (options_.background && !wait_commit) {
    worker_ = std::thread([this, s = std::move(snapshot)]() mutable {
      // A lower priority lets the writer take only idle CPU time instead of preempting an
      // intra-op training thread (docs/benchmarks.md, "Checkpoints", compares the two).
      if (options_.writer_nice > 0) {
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), options_.writer_nice);
      }
      try {
        write(std::move(s));
      } catch (...) {
        error_ = std::current_exception();
      }
    });
  } else {
    write(std::move(snapshot));
  }
}

NamedTensors Manager::stage(const NamedTensors& tensors, const std::string& prefix,
                            std::map<std::string, torch::Tensor>& next) {
  NamedTensors out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    HOLO_CHECK(t.defined(), "checkpoint: tensor '" + name + "' is undefined");
    const torch::Tensor src = t.detach();
    const std::string key = prefix + name;
    HOLO_CHECK(!next.count(key), "checkpoint: tensor '" + name + "' appears twice in the snapshot");
    torch::Tensor buf;
    auto it = staging_.find(key);
    if (it != staging_.end() && it->second.sizes() == src.sizes() && it->second.scalar_type() == src.scalar_type()) {
      buf = it->second;
    } else {
      buf = torch::empty(src.sizes(), torch::TensorOptions().dtype(src.scalar_type()));
    }
    buf.copy_(src);
    next[key] = buf;
    out.emplace_back(name, buf);
  }
  return out;
}

void Manager::write(Snapshot snapshot) {
  const std::string final_dir = step_dir(root_, snapshot.step);
  const std::string partial =
      (fs::path(root_) / (".partial-" + fs::path(final_dir).filename().string())).string();
  // An existing step-N (the end of training on a periodic step, a re-run of a finished run, a
  // resume from an older checkpoint) is replaced when this one commits, never kept instead.
  try {
    fs::create_directories(partial);
    write_parts(snapshot, partial, final_dir);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(partial, ec);
    throw IoError("checkpoint '" + final_dir + "' (step " + std::to_string(snapshot.step) +
                  ") was not saved: " + e.what() + "; its partial folder '" + partial +
                  "' was removed, the previous checkpoint is kept; " + free_space(root_));
  }
}

void Manager::write_parts(const Snapshot& snapshot, const std::string& partial,
                          const std::string& final_dir) {
  // This rank's share of the replicated state plus its own per-rank state.
  const auto owner = assign_shards(snapshot.replicated, options_.world_size);
  NamedTensors mine;
  for (const auto& [name, t] : snapshot.replicated) {
    if (owner.at(name) == options_.rank) mine.emplace_back(name, t);
  }
  for (const auto& [name, t] : snapshot.per_rank) mine.emplace_back("rank." + name, t);
  const std::string file = shard_name(options_.rank, options_.world_size);
  const ShardInfo info = write_shard((fs::path(partial) / file).string(), mine);
  env::fault_point("shard");

  // A marker that this rank's shard is complete, tagged with the attempt so that a leftover of
  // an earlier interrupted attempt is never mistaken for this one.
  nlohmann::json done = {{"rank", options_.rank},
                         {"file", info.file},
                         {"bytes", info.bytes},
                         {"checksum", info.checksum},
                         {"host", process_identity().host},
                         {"attempt", options_.attempt_id}};
  write_file_atomic((fs::path(partial) / ("done-" + std::to_string(options_.rank) + ".json")).string(),
                    done.dump());
  env::fault_point("marker");
  if (options_.rank == 0) {
    commit(snapshot, partial, final_dir);
  } else {
    wait_visible(final_dir);
  }
}

void Manager::commit(const Snapshot& snapshot, const std::string& partial,
                     const std::string& final_dir) {
  std::vector<nlohmann::json> shards(options_.world_size);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(options_.commit_timeout_s);
  for (int r = 0; r < options_.world_size; ++r) {
    const std::string marker = (fs::path(partial) / ("done-" + std::to_string(r) + ".json")).string();
    for (;;) {
      if (fs::exists(marker)) {
        auto j = read_json(marker);
        if (j.value("attempt", "") == options_.attempt_id) {
          shards[r] = j;
          break;
        }
      }
      if (std::chrono::steady_clock::now() > deadline) {
        throw IoError("checkpoint '" + final_dir + "': rank " + std::to_string(r) +
                      " did not finish its shard within " +
                      std::to_string(options_.commit_timeout_s) + " s; previous checkpoint kept");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // Tensor index: which shard holds which replicated tensor.
  const auto owner = assign_shards(snapshot.replicated, options_.world_size);
  nlohmann::json tensors = nlohmann::json::object();
  for (const auto& [name, t] : snapshot.replicated) {
    tensors[name] = {{"shard", shard_name(owner.at(name), options_.world_size)},
                     {"shape", t.sizes().vec()}};
  }
  nlohmann::json manifest = {
      {"format", "holo-checkpoint"},
      {"version", kFormatVersion},
      {"step", snapshot.step},
      {"epoch", snapshot.epoch},
      {"world_size", options_.world_size},
      {"created", now_iso()},
      {"dataset_hash", snapshot.dataset_hash},
      {"recipe", snapshot.recipe_toml},
      {"run_id", options_.run_id},
      {"attempt", options_.attempt_id},
      {"meta", snapshot.meta},
      {"score", snapshot.score ? nlohmann::json(*snapshot.score) : nlohmann::json()},
      {"tensors", tensors},
      {"complete", true}};
  manifest["shards"] = nlohmann::json::array();
  for (const auto& s : shards) {
    manifest["shards"].push_back({{"file", s["file"]}, {"rank", s["rank"]}, {"host", s.value("host", "")},
                                  {"bytes", s["bytes"]}, {"checksum", s["checksum"]}});
  }
  for (int r = 0; r < options_.world_size; ++r) {
    fs::remove(fs::path(partial) / ("done-" + std::to_string(r) + ".json"));
  }
  write_file_atomic((fs::path(partial) / "manifest.json").string(), manifest.dump(2));
  fsync_dir(partial);
  env::fault_point("manifest");
  bool replaced = false;
  if (fs::exists(final_dir)) {
    // Swap the new checkpoint in atomically; the old one is then where the partial was.
    if (::renameat2(AT_FDCWD, partial.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) != 0) {
      throw IoError("cannot replace checkpoint '" + final_dir + "': " + std::strerror(errno));
    }
    replaced = true;
  } else {
    std::error_code ec;
    fs::rename(partial, final_dir, ec);
    if (ec) throw IoError("cannot commit checkpoint '" + final_dir + "': " + ec.message());
  }
  fsync_dir(root_);
  verified_[final_dir] = "";  // its shards' checksums were recorded as they were written
  if (replaced) remove_checkpoint_dir(partial);
  if (snapshot.score) {
    scores_[final_dir] = *snapshot.score;
  } else {
    scores_.erase(final_dir);
  }
  spdlog::info("checkpoint: saved {} (step {}, {} shard{}){}", final_dir, snapshot.step,
               options_.world_size, options_.world_size == 1 ? "" : "s",
               replaced ? ", replacing the one saved before at that step" : "");
  spdlog::default_logger()->flush();
  retain(snapshot.step);
}

void Manager::wait_visible(const std::string& final_dir) const {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(options_.commit_timeout_s);
  const auto manifest = fs::path(final_dir) / "manifest.json";
  // The manifest of this attempt's commit: an older step-N being replaced has another.
  const auto committed = [&] {
    std::error_code ec;
    if (!fs::exists(manifest, ec)) return false;
    try {
      return read_json(manifest.string()).value("attempt", "") == options_.attempt_id;
    } catch (const std::exception&) {
      return false;  // read while being swapped in
    }
  };
  while (!committed()) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw IoError("checkpoint '" + final_dir + "' was not committed by rank 0 within " +
                    std::to_string(options_.commit_timeout_s) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool Manager::good(const Entry& e) {
  auto it = verified_.find(e.path);
  if (it == verified_.end()) it = verified_.emplace(e.path, verify(e.path)).first;
  return it->second.empty();
}

void Manager::retain(int64_t committed_step) {
  const Survey s = survey(root_, options_.run_id);
  // Leftovers of interrupted saves of earlier steps; a later step's partial folder may already
  // be in the making by a rank that saw this commit.
  for (const auto& dir : s.leftovers) {
    const std::string name = fs::path(dir).filename().string();
    const bool deleting = starts_with(name, ".deleting-");
    const auto digits = name.substr(name.rfind('-') + 1);
    if (deleting || std::atoll(digits.c_str()) < committed_step) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  }
  for (const auto& e : s.foreign) {
    if (reported_.insert(e.path).second) {
      spdlog::warn("checkpoint: {} (step {}) was saved by another run ({}): kept, not counted", e.path,
                   e.step, e.run_id);
    }
  }
  std::string best;
  double best_score = -std::numeric_limits<double>::infinity();
  for (const auto& [dir, score] : scores_) {
    if (fs::exists(dir) && score > best_score) {
      best_score = score;
      best = dir;
    }
  }
  // Newest first: a good checkpoint is deleted once `keep` newer good ones of this run exist.
  int64_t good_newer = 0;
  for (auto it = s.own.rbegin(); it != s.own.rend(); ++it) {
    if (!good(*it)) {
      if (reported_.insert(it->path).second) {
        spdlog::warn("checkpoint: {} (step {}) is corrupt ({}): kept, not counted", it->path, it->step,
                     verified_.at(it->path));
      }
      continue;
    }
    if (good_newer >= options_.keep && it->path != best) {
      remove_checkpoint_dir(it->path);
      verified_.erase(it->path);
      scores_.erase(it->path);
      continue;
    }
    ++good_newer;
  }
}

Survey Manager::survey(const std::string& root, const std::string& run_id) {
  Survey out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory()) continue;
    if (starts_with(name, ".partial-step-") || starts_with(name, ".deleting-step-")) {
      out.leftovers.push_back(e.path().string());
      continue;
    }
    if (!starts_with(name, "step-")) continue;
    const auto manifest = e.path() / "manifest.json";
    if (!fs::exists(manifest)) {
      out.orphans.push_back(e.path().string());
      continue;
    }
    try {
      auto j = read_json(manifest.string());
      if (!j.value("complete", false)) {
        out.unreadable.emplace_back(e.path().string(), "its manifest does not mark it complete");
        continue;
      }
      Entry entry{e.path().string(), json_number_at<int64_t>(j, "step"), j.value("run_id", ""), std::move(j)};
      (entry.run_id.empty() || entry.run_id == run_id ? out.own : out.foreign).push_back(std::move(entry));
    } catch (const std::exception& ex) {
      out.unreadable.emplace_back(e.path().string(), std::string("unreadable manifest: ") + ex.what());
    }
  }
  const auto by_step = [](const Entry& a, const Entry& b) { return a.step < b.step; };
  std::sort(out.own.begin(), out.own.end(), by_step);
  std::sort(out.foreign.begin(), out.foreign.end(), by_step);
  std::sort(out.orphans.begin(), out.orphans.end());
  std::sort(out.leftovers.begin(), out.leftovers.end());
  std::sort(out.unreadable.begin(), out.unreadable.end());
  return out;
}

std::vector<Entry> Survey::all() const {
  std::vector<Entry> out = own;
  out.insert(out.end(), foreign.begin(), foreign.end());
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.step < b.step; });
  return out;
}

void Manager::remove_leftovers(const Survey& s) {
  for (const auto& dir : s.leftovers) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    spdlog::info("checkpoint: removed '{}', left by an interrupted save or cleanup", dir);
  }
  for (const auto& dir : s.orphans) {
    remove_checkpoint_dir(dir);
    spdlog::warn("checkpoint: removed '{}': a checkpoint folder without its manifest (an interrupted "
                 "cleanup or copy)", dir);
  }
}

namespace {

/// "shard 'shard-00001-of-00002.pt' (written by rank 1 on node-b)": which machine to look at when a
/// shard of a multi-node run is damaged. Manifests written before hosts were recorded name the
/// rank only.
std::string shard_label(const nlohmann::json& shard) {
  std::string who = " (written by rank " + std::to_string(json_number_or<int>(shard, "rank", -1));
  const std::string host = shard.value("host", "");
  if (!host.empty()) who += " on " + host;
  return "shard '" + shard.value("file", "") + "'" + who + ")";
}

}  // namespace

std::string Manager::verify(const std::string& dir) {
  try {
    const auto m = read_json((fs::path(dir) / "manifest.json").string());
    for (const auto& s : m.at("shards")) {
      const fs::path file = fs::path(dir) / s.at("file").get<std::string>();
      std::error_code ec;
      const auto size = fs::file_size(file, ec);
      if (ec) return shard_label(s) + ": " + ec.message();
      if (size != json_number_at<uint64_t>(s, "bytes")) {
        return shard_label(s) + " has " + std::to_string(size) + " bytes, the manifest " +
               std::to_string(json_number_at<uint64_t>(s, "bytes"));
      }
      const std::string sum = file_checksum(file.string());
      if (sum != s.at("checksum").get<std::string>()) {
        return shard_label(s) + " has checksum " + sum + ", the manifest " + s.at("checksum").get<std::string>();
      }
    }
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::vector<Entry> Manager::list(const std::string& root) {
  const Survey s = survey(root, "");
  for (const auto& [dir, why] : s.unreadable) spdlog::warn("checkpoint: ignoring '{}': {}", dir, why);
  return s.all();
}

// The function try block turns a manifest that is JSON but not a checkpoint's (another type, a
// missing field) into an IoError like any other damage, so that load_latest goes on to an older
// checkpoint.
Loaded Manager::load(const std::string& dir, int rank, int world_size) try {
  const std::string mpath = (fs::path(dir) / "manifest.json").string();
  nlohmann::json m;
  try {
    m = read_json(mpath);
  } catch (const std::exception& e) {
    throw IoError("checkpoint '" + dir + "': cannot read manifest: " + e.what());
  }
  if (m.value("format", "") != "holo-checkpoint" || json_number_or<int>(m, "version", 0) != kFormatVersion) {
    throw IoError("checkpoint '" + dir + "': not a Holo checkpoint of format version " +
                  std::to_string(kFormatVersion));
  }
  Loaded out;
  out.path = dir;
  out.step = json_number_at<int64_t>(m, "step");
  out.epoch = json_number_at<int64_t>(m, "epoch");
  out.world_size = json_number_at<int>(m, "world_size");
  out.meta = m.value("meta", nlohmann::json::object());
  out.recipe_toml = m.value("recipe", "");
  out.dataset_hash = m.value("dataset_hash", "");
  out.run_id = m.value("run_id", "");
  const std::string own_prefix = "rank.";
  for (const auto& s : m.at("shards")) {
    const std::string file = s.at("file");
    const int shard_rank = json_number_at<int>(s, "rank");
    NamedTensors tensors;
    try {
      tensors = read_shard((fs::path(dir) / file).string(), s.at("checksum"));
    } catch (const IoError& e) {
      throw IoError("checkpoint '" + dir + "', " + shard_label(s) + ": " + e.what());
    }
    for (auto& [name, t] : tensors) {
      if (name.rfind(own_prefix, 0) == 0) {
        if (out.world_size == world_size && shard_rank == rank) {
          out.per_rank[name.substr(own_prefix.size())] = std::move(t);
        }
      } else {
        out.replicated[name] = std::move(t);
      }
    }
  }
  for (const auto& [name, info] : m.at("tensors").items()) {
    if (!out.replicated.count(name)) {
      throw IoError("checkpoint '" + dir + "': tensor '" + name + "' listed in the manifest is in no shard");
    }
  }
  return out;
} catch (const nlohmann::json::exception& e) {
  throw IoError("checkpoint '" + dir + "': manifest.json is not a checkpoint manifest: " + e.what());
} catch (const std::out_of_range& e) {  // json_number_at
  throw IoError("checkpoint '" + dir + "': manifest.json is not a checkpoint manifest: " + e.what());
}

std::optional<Loaded> Manager::load_latest(const std::string& root, int rank, int world_size) {
  const Survey s = survey(root, "");
  const auto entries = s.all();
  std::string failures;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    try {
      return load(it->path, rank, world_size);
    } catch (const IoError& e) {
      spdlog::warn("checkpoint: skipping {}: {}", it->path, e.what());
      failures += "\n  " + it->path + ": " + e.what();
    }
  }
  for (const auto& [dir, why] : s.unreadable) failures += "\n  " + dir + ": " + why;
  if (!failures.empty()) {
    throw IoError("no checkpoint under '" + root + "' can be loaded:" + failures);
  }
  return std::nullopt;
}

Loaded Manager::load_newest_valid(const std::string& path, int rank, int world_size) {
  if (fs::exists(fs::path(path) / "manifest.json")) return load(path, rank, world_size);
  for (const auto& root : {fs::path(path), fs::path(path) / "checkpoints"}) {
    const Survey s = survey(root.string(), "");
    if (s.all().empty() && s.unreadable.empty()) continue;
    if (auto loaded = load_latest(root.string(), rank, world_size)) return std::move(*loaded);
  }
  throw IoError("no checkpoint in '" + path + "' (looked for manifest.json, step-* and checkpoints/step-*)");
}

}  // namespace holo::ckpt
