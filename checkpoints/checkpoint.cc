#include "checkpoints/checkpoint.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "core/run_dir.h"

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
    if (e.manifest.contains("score") && !e.manifest["score"].is_null()) {
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
  last_stall_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
  if (fs::exists(final_dir)) {
    // Already committed (e.g. a save at the end of an epoch that was also a periodic step).
    return;
  }
  fs::create_directories(partial);

  // This rank's share of the replicated state plus its own per-rank state.
  const auto owner = assign_shards(snapshot.replicated, options_.world_size);
  NamedTensors mine;
  for (const auto& [name, t] : snapshot.replicated) {
    if (owner.at(name) == options_.rank) mine.emplace_back(name, t);
  }
  for (const auto& [name, t] : snapshot.per_rank) mine.emplace_back("rank." + name, t);
  const std::string file = shard_name(options_.rank, options_.world_size);
  const ShardInfo info = write_shard((fs::path(partial) / file).string(), mine);

  // A marker that this rank's shard is complete, tagged with the attempt so that a leftover of
  // an earlier interrupted attempt is never mistaken for this one.
  nlohmann::json done = {{"rank", options_.rank},
                         {"file", info.file},
                         {"bytes", info.bytes},
                         {"checksum", info.checksum},
                         {"attempt", options_.attempt_id}};
  write_file_atomic((fs::path(partial) / ("done-" + std::to_string(options_.rank) + ".json")).string(),
                    done.dump());
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
      {"meta", snapshot.meta},
      {"score", snapshot.score ? nlohmann::json(*snapshot.score) : nlohmann::json()},
      {"tensors", tensors},
      {"complete", true}};
  manifest["shards"] = nlohmann::json::array();
  for (const auto& s : shards) {
    manifest["shards"].push_back({{"file", s["file"]}, {"rank", s["rank"]}, {"bytes", s["bytes"]},
                                  {"checksum", s["checksum"]}});
  }
  for (int r = 0; r < options_.world_size; ++r) {
    fs::remove(fs::path(partial) / ("done-" + std::to_string(r) + ".json"));
  }
  write_file_atomic((fs::path(partial) / "manifest.json").string(), manifest.dump(2));
  fsync_dir(partial);
  std::error_code ec;
  fs::rename(partial, final_dir, ec);
  if (ec) throw IoError("cannot commit checkpoint '" + final_dir + "': " + ec.message());
  fsync_dir(root_);
  if (snapshot.score) scores_[final_dir] = *snapshot.score;
  spdlog::info("checkpoint: saved {} (step {}, {} shard{})", final_dir, snapshot.step,
               options_.world_size, options_.world_size == 1 ? "" : "s");
  retain(snapshot.step);
}

void Manager::wait_visible(const std::string& final_dir) const {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(options_.commit_timeout_s);
  const auto manifest = fs::path(final_dir) / "manifest.json";
  while (!fs::exists(manifest)) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw IoError("checkpoint '" + final_dir + "' was not committed by rank 0 within " +
                    std::to_string(options_.commit_timeout_s) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Manager::retain(int64_t committed_step) {
  auto entries = list(root_);
  std::string best;
  double best_score = -std::numeric_limits<double>::infinity();
  for (const auto& [dir, s] : scores_) {
    if (fs::exists(dir) && s > best_score) {
      best_score = s;
      best = dir;
    }
  }
  const int64_t n = static_cast<int64_t>(entries.size());
  for (int64_t i = 0; i < n - options_.keep; ++i) {
    if (entries[i].path == best) continue;
    std::error_code ec;
    fs::remove_all(entries[i].path, ec);
    scores_.erase(entries[i].path);
  }
  // Leftovers of interrupted saves of earlier steps are removed; a later step's partial folder
  // may already be in the making by a rank that saw this commit.
  for (const auto& e : fs::directory_iterator(root_)) {
    const std::string name = e.path().filename().string();
    const std::string prefix = ".partial-step-";
    if (name.rfind(prefix, 0) == 0 && std::atoll(name.c_str() + prefix.size()) < committed_step) {
      std::error_code ec;
      fs::remove_all(e.path(), ec);
    }
  }
}

std::vector<Entry> Manager::list(const std::string& root) {
  std::vector<Entry> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) != 0 || !e.is_directory()) continue;
    const auto manifest = e.path() / "manifest.json";
    if (!fs::exists(manifest)) continue;
    try {
      auto j = read_json(manifest.string());
      if (!j.value("complete", false)) continue;
      out.push_back(Entry{e.path().string(), j.at("step").get<int64_t>(), std::move(j)});
    } catch (const std::exception& ex) {
      spdlog::warn("checkpoint: ignoring '{}': unreadable manifest ({})", e.path().string(), ex.what());
    }
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.step < b.step; });
  return out;
}

Loaded Manager::load(const std::string& dir, int rank, int world_size) {
  const std::string mpath = (fs::path(dir) / "manifest.json").string();
  nlohmann::json m;
  try {
    m = read_json(mpath);
  } catch (const std::exception& e) {
    throw IoError("checkpoint '" + dir + "': cannot read manifest: " + e.what());
  }
  if (m.value("format", "") != "holo-checkpoint" || m.value("version", 0) != kFormatVersion) {
    throw IoError("checkpoint '" + dir + "': not a Holo checkpoint of format version " +
                  std::to_string(kFormatVersion));
  }
  Loaded out;
  out.path = dir;
  out.step = m.at("step");
  out.epoch = m.at("epoch");
  out.world_size = m.at("world_size");
  out.meta = m.value("meta", nlohmann::json::object());
  out.recipe_toml = m.value("recipe", "");
  out.dataset_hash = m.value("dataset_hash", "");
  const std::string own_prefix = "rank.";
  for (const auto& s : m.at("shards")) {
    const std::string file = s.at("file");
    const int shard_rank = s.at("rank");
    NamedTensors tensors;
    try {
      tensors = read_shard((fs::path(dir) / file).string(), s.at("checksum"));
    } catch (const IoError& e) {
      throw IoError("checkpoint '" + dir + "': " + e.what());
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
}

std::optional<Loaded> Manager::load_latest(const std::string& root, int rank, int world_size) {
  auto entries = list(root);
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    try {
      return load(it->path, rank, world_size);
    } catch (const IoError& e) {
      spdlog::warn("checkpoint: skipping {}: {}", it->path, e.what());
    }
  }
  return std::nullopt;
}

}  // namespace holo::ckpt
