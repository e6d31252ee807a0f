#include "checkpoints/bench.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/run_dir.h"
#include "core/time.h"

extern char** environ;

namespace holo::ckpt {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

uint64_t tensor_bytes(const NamedTensors& tensors) {
  uint64_t n = 0;
  for (const auto& [name, t] : tensors) n += t.numel() * t.element_size();
  return n;
}

uint64_t folder_bytes(const std::string& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) n += e.file_size();
  }
  return n;
}

std::string filesystem_type(const std::string& dir) {
  struct statfs s {};
  if (::statfs(dir.c_str(), &s) != 0) return "unknown";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlay";
    case 0x6969: return "nfs";
    case 0x65735546: return "fuse";
    case 0x0BD00BD0: return "lustre";
    case 0x47504653: return "gpfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(s.f_type));
      return buf;
    }
  }
}

/// Drops the (clean, fsynced) pages of `path` from the page cache.
void evict(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError("cannot open '" + path + "': " + std::strerror(errno));
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

/// Pages of `path` in the page cache, and all its pages.
std::pair<uint64_t, uint64_t> cached_pages(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  const size_t size = static_cast<size_t>(st.st_size);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t pages = (size + page - 1) / page;
  uint64_t resident = 0;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      std::vector<unsigned char> vec(pages);
      if (::mincore(p, size, vec.data()) == 0) {
        for (unsigned char v : vec) resident += v & 1;
      }
      ::munmap(p, size);
    }
  }
  ::close(fd);
  return {resident, pages};
}

/// Evicts every file of `files` and returns the share of their pages that stayed cached.
double evict_all(const std::vector<std::string>& files) {
  uint64_t resident = 0, pages = 0;
  for (const auto& f : files) {
    evict(f);
    const auto [r, n] = cached_pages(f);
    resident += r;
    pages += n;
  }
  return pages ? static_cast<double>(resident) / pages : 0.0;
}

/// Runs dd with `args` (no shell); returns its wall time. Its messages go to `log`, quoted in
/// the error when it fails.
double run_dd(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  std::vector<std::string> all = {"dd"};
  all.insert(all.end(), args.begin(), args.end());
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  const auto t0 = Clock::now();
  const int rc = ::posix_spawnp(&pid, "dd", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw IoError(std::string("cannot start dd: ") + std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw IoError(std::string("waiting for dd: ") + std::strerror(errno));
  }
  const double s = seconds_since(t0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd;
    for (const auto& a : all) cmd += (cmd.empty() ? "" : " ") + a;
    std::string msg;
    try {
      msg = read_file(log);
    } catch (const IoError&) {
    }
    throw IoError("'" + cmd + "' failed: " + msg);
  }
  return s;
}

}  // namespace

IoResult bench_io(const NamedTensors& state, const IoBenchOptions& options) {
  HOLO_CHECK(options.repeat() >= 1, "bench_io: repeat must be >= 1");
  HOLO_CHECK(options.dd_block() > 0, "bench_io: dd_block must be > 0");
  const std::string root = options.dir();
  fs::create_directories(root);
  IoResult out;
  out.state_bytes = tensor_bytes(state);
  out.filesystem = filesystem_type(root);
  std::map<std::string, torch::Tensor> want(state.begin(), state.end());
  std::vector<double> save, snap, load, ddw, ddr, cached_load, cached_dd;

  const std::string ckpt_root = (fs::path(root) / "checkpoints").string();
  const std::string dd_file = (fs::path(root) / "dd.bin").string();
  const std::string dd_log = (fs::path(root) / "dd.log").string();
  ManagerOptions mopts;
  mopts.background = false;
  mopts.keep = options.repeat() + 2;  // nothing is deleted inside a timed save
  Manager manager(ckpt_root, mopts);
  {
    // The first save of a manager allocates its staging buffers (as the first save of a run
    // does); it is reported apart, the rounds measure the saves after it.
    Snapshot s;
    s.step = 0;
    s.replicated = state;
    const auto t0 = Clock::now();
    manager.save(std::move(s), /*wait=*/true);
    out.first_save_s = seconds_since(t0);
    out.first_snapshot_s = manager.last_stall_s();
    fs::remove_all(Manager::step_dir(ckpt_root, 0));
  }
  for (int64_t r = 0; r < options.repeat(); ++r) {
    // Holo: save, evict, load.
    Snapshot s;
    s.step = r + 1;
    s.replicated = state;
    auto t0 = Clock::now();
    manager.save(std::move(s), /*wait=*/true);
    save.push_back(seconds_since(t0));
    snap.push_back(manager.last_stall_s());
    const std::string dir = Manager::step_dir(ckpt_root, r + 1);
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().string());
    out.file_bytes = folder_bytes(dir);
    cached_load.push_back(evict_all(files));
    t0 = Clock::now();
    Loaded loaded = Manager::load(dir, 0, 1);
    load.push_back(seconds_since(t0));
    if (loaded.replicated.size() != want.size()) {
      throw IoError("bench: checkpoint '" + dir + "' loaded " + std::to_string(loaded.replicated.size()) +
                    " tensors, saved " + std::to_string(want.size()));
    }
    for (const auto& [name, t] : want) {
      auto it = loaded.replicated.find(name);
      if (it == loaded.replicated.end() || !torch::equal(it->second, t)) {
        throw IoError("bench: tensor '" + name + "' of '" + dir + "' differs from what was saved");
      }
    }
    loaded = Loaded{};
    fs::remove_all(dir);

    // dd: the same bytes in whole blocks, fsync at the end, then read back from a cold cache.
    const int64_t count = (static_cast<int64_t>(out.file_bytes) + options.dd_block() - 1) / options.dd_block();
    out.dd_bytes = static_cast<uint64_t>(count * options.dd_block());
    const std::string bs = "bs=" + std::to_string(options.dd_block());
    ddw.push_back(run_dd({"if=/dev/zero", "of=" + dd_file, bs, "count=" + std::to_string(count), "conv=fsync"},
                         dd_log));
    cached_dd.push_back(evict_all({dd_file}));
    ddr.push_back(run_dd({"if=" + dd_file, "of=/dev/null", bs}, dd_log));
    fs::remove(dd_file);
  }
  fs::remove(dd_log);
  fs::remove_all(ckpt_root);
  out.rounds = options.repeat();
  out.save_s = median(save);
  out.snapshot_s = median(snap);
  out.load_s = median(load);
  out.dd_write_s = median(ddw);
  out.dd_read_s = median(ddr);
  out.cached_before_load = *std::max_element(cached_load.begin(), cached_load.end());
  out.cached_before_dd_read = *std::max_element(cached_dd.begin(), cached_dd.end());
  return out;
}

StallResult bench_stall(const std::function<void()>& train_step,
                        const std::function<Snapshot(int64_t step)>& snapshot,
                        const StallBenchOptions& options) {
  HOLO_CHECK(options.every() >= 1, "bench_stall: every must be >= 1");
  HOLO_CHECK(options.saves() >= 1, "bench_stall: saves must be >= 1");
  HOLO_CHECK(options.warmup() >= 0, "bench_stall: warmup must be >= 0");
  fs::remove_all(options.dir());
  StallResult out;
  out.every = options.every();
  out.saves = options.saves();
  ManagerOptions mopts;
  mopts.background = options.background();
  mopts.writer_nice = options.writer_nice();
  mopts.keep = 1;
  int64_t step = 0;
  double plain = 0, saving = 0, snap_sum = 0, drain_sum = 0;
  {
    Manager manager(options.dir(), mopts);
    for (int64_t i = 0; i < options.warmup(); ++i, ++step) train_step();
    {
      // The manager's first save allocates its staging buffers: reported apart, untimed in the
      // segments (a run pays it once).
      const auto t0 = Clock::now();
      manager.save(snapshot(step), /*wait=*/false);
      out.first_snapshot_s = seconds_since(t0);
      manager.wait();
    }
    for (int64_t seg = 0; seg < options.saves(); ++seg) {
      auto t0 = Clock::now();
      for (int64_t i = 0; i < options.every(); ++i, ++step) train_step();
      plain += seconds_since(t0);

      t0 = Clock::now();
      Snapshot s = snapshot(step);
      out.state_bytes = tensor_bytes(s.replicated) + tensor_bytes(s.per_rank);
      const auto t_save = Clock::now();
      manager.save(std::move(s), /*wait=*/false);
      const double held = seconds_since(t_save);
      snap_sum += held;
      out.snapshot_max_s = std::max(out.snapshot_max_s, held);
      for (int64_t i = 0; i < options.every(); ++i, ++step) train_step();
      const auto t_drain = Clock::now();
      manager.wait();
      drain_sum += seconds_since(t_drain);
      saving += seconds_since(t0);
    }
  }
  const double steps = static_cast<double>(options.every() * options.saves());
  out.step_plain_s = plain / steps;
  out.step_saving_s = saving / steps;
  out.snapshot_s = snap_sum / options.saves();
  out.drain_s = drain_sum / options.saves();
  return out;
}

}  // namespace holo::ckpt
