#include "dist/world.h"

#include <mpi.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "core/check.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rank.h"
#include "dist/world_internal.h"

namespace holo::dist {
namespace {

std::string hostname() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) return "unknown";
  return host;
}

struct State {
  std::mutex mutex;
  bool initialized = false;
  bool finalized = false;
  World world;
  int next_hook = 0;
  std::map<int, std::function<void()>> finalize_hooks;
};

State& state() {
  static State s;
  return s;
}

void run_finalize_hooks() {
  std::map<int, std::function<void()>> hooks;
  {
    std::lock_guard<std::mutex> lock(state().mutex);
    hooks.swap(state().finalize_hooks);
  }
  for (auto it = hooks.rbegin(); it != hooks.rend(); ++it) it->second();
}

/// Runs at exit: a process of a multi-rank job that leaves without finalize_world() (an error
/// escaped, a code path forgot) takes the job down instead of leaving peers in a collective.
void exit_guard() {
  int up = 0, down = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  if (!up || down) return;
  if (state().world.size > 1) {
    std::fprintf(stderr, "%sholo: exiting without finalize_world(); aborting the job so that no "
                 "peer waits in a collective\n", where_prefix().c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  run_finalize_hooks();
  MPI_Finalize();
}

}  // namespace

std::string describe_hosts(const std::vector<std::string>& host_of_rank) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<int>> ranks;
  for (size_t r = 0; r < host_of_rank.size(); ++r) {
    auto& list = ranks[host_of_rank[r]];
    if (list.empty()) order.push_back(host_of_rank[r]);
    list.push_back(static_cast<int>(r));
  }
  std::string out = std::to_string(host_of_rank.size()) +
                    (host_of_rank.size() == 1 ? " rank" : " ranks") + " on " +
                    std::to_string(order.size()) + (order.size() == 1 ? " host: " : " hosts: ");
  for (size_t h = 0; h < order.size(); ++h) {
    const auto& list = ranks[order[h]];
    std::string spans;
    for (size_t i = 0; i < list.size();) {
      size_t j = i;
      while (j + 1 < list.size() && list[j + 1] == list[j] + 1) ++j;
      spans += (spans.empty() ? "" : ", ") + std::to_string(list[i]) +
               (j > i ? "-" + std::to_string(list[j]) : std::string());
      i = j + 1;
    }
    out += (h ? ", " : "") + order[h] + (list.size() == 1 ? " (rank " : " (ranks ") + spans + ")";
  }
  return out;
}

World discover_world(const EnvLookup& getenv_fn) {
  const LauncherRank r = discover_rank(getenv_fn);
  World w;
  w.rank = r.rank;
  w.size = r.size;
  w.local_rank = r.local_rank;
  w.local_size = r.local_size;
  w.mpi = r.mpi;
  w.launcher = r.launcher;
  w.host = hostname();
  w.host_of_rank = {w.host};
  return w;
}

const World& init_world() {
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.initialized) return s.world;
  }
  World w = discover_world([](const char* n) { return std::getenv(n); });
  if (w.mpi) {
    int up = 0;
    HOLO_MPI_CHECK(MPI_Initialized(&up));
    if (!up) {
      int provided = 0;
      HOLO_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
      detail::set_thread_level(provided);
    } else {
      int provided = 0;
      HOLO_MPI_CHECK(MPI_Query_thread(&provided));
      detail::set_thread_level(provided);
    }
    // Errors come back as codes and turn into exceptions (HOLO_MPI_CHECK) instead of killing
    // the job from inside MPI with a less useful message.
    HOLO_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    int rank = 0, size = 1;
    HOLO_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    HOLO_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    if (rank != w.rank || size != w.size) {
      spdlog::warn("launcher variables ({}) say rank {} of {}, MPI says rank {} of {}; using MPI's",
                   w.launcher, w.rank, w.size, rank, size);
    }
    w.rank = rank;
    w.size = size;
    MPI_Comm local = MPI_COMM_NULL;
    HOLO_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL,
                                       &local));
    int local_rank = 0, local_size = 1;
    HOLO_MPI_CHECK(MPI_Comm_rank(local, &local_rank));
    HOLO_MPI_CHECK(MPI_Comm_size(local, &local_size));
    HOLO_MPI_CHECK(MPI_Comm_free(&local));
    w.local_rank = local_rank;
    w.local_size = local_size;
    // Every rank's host, so that rank 0's log says where the job runs (one line, info level).
    constexpr int kHostChars = 256;
    std::vector<char> mine(kHostChars, 0), all(static_cast<size_t>(kHostChars) * size, 0);
    w.host.copy(mine.data(), kHostChars - 1);
    HOLO_MPI_CHECK(MPI_Allgather(mine.data(), kHostChars, MPI_CHAR, all.data(), kHostChars,
                                 MPI_CHAR, MPI_COMM_WORLD));
    w.host_of_rank.clear();
    for (int r = 0; r < size; ++r)
      w.host_of_rank.emplace_back(all.data() + static_cast<size_t>(r) * kHostChars);
    std::atexit(exit_guard);
  }
  set_process_rank(w.rank, w.size);
  // Keep the level chosen so far; only the pattern changes (it now carries the rank).
  log::init(std::string(spdlog::level::to_string_view(spdlog::default_logger()->level()).data()));
  spdlog::debug("world: rank {} of {} (local {} of {}) on {}, launcher {}, MPI {}", w.rank, w.size,
                w.local_rank, w.local_size, w.host, w.launcher, w.mpi ? "yes" : "no");
  if (w.rank == 0 && w.size > 1 && static_cast<int>(w.host_of_rank.size()) == w.size) {
    spdlog::info("world: {}", describe_hosts(w.host_of_rank));
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  s.world = w;
  s.initialized = true;
  return s.world;
}

bool world_initialized() {
  std::lock_guard<std::mutex> lock(state().mutex);
  return state().initialized;
}

void finalize_world() {
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.initialized || s.finalized) return;
    s.finalized = true;
  }
  run_finalize_hooks();
  int up = 0, down = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  if (up && !down) HOLO_MPI_CHECK(MPI_Finalize());
}

void abort_world(int exit_code, const std::string& reason) {
  spdlog::critical("{}", reason);
  spdlog::default_logger()->flush();
  std::fprintf(stderr, "%sholo: aborting the job: %s\n", where_prefix().c_str(), reason.c_str());
  std::fflush(stderr);
  int up = 0, down = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  if (up && !down) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

int select_device(const World& world, int device_count) {
  if (device_count <= 0) return -1;
  return world.local_rank % device_count;
}

namespace detail {

int g_thread_level = 0;

void set_thread_level(int level) { g_thread_level = level; }
int thread_level() { return g_thread_level; }

int add_finalize_hook(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(state().mutex);
  const int id = state().next_hook++;
  state().finalize_hooks.emplace(id, std::move(fn));
  return id;
}

void remove_finalize_hook(int id) {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().finalize_hooks.erase(id);
}

}  // namespace detail
}  // namespace holo::dist
