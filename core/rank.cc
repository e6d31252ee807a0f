#include "core/rank.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace holo {
namespace {

/// An integer variable; `unset` when it is absent or empty, UsageError when malformed.
int int_var(const EnvLookup& getenv_fn, const char* name, int unset = -1) {
  const char* v = getenv_fn(name);
  if (v == nullptr || *v == '\0') return unset;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < 0 || x > INT_MAX) {
    throw UsageError(std::string("launcher variable ") + name + "='" + v +
                     "' is not a non-negative integer");
  }
  return static_cast<int>(x);
}

bool is_set(const EnvLookup& getenv_fn, const char* name) {
  const char* v = getenv_fn(name);
  return v != nullptr && *v != '\0';
}

/// SLURM_STEP_TASKS_PER_NODE looks like "2(x3),1": tasks on node 0, 1, ... in order.
int slurm_tasks_on_node(const std::string& spec, int node) {
  int index = 0;
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t comma = spec.find(',', pos);
    if (comma == std::string::npos) comma = spec.size();
    const std::string item = spec.substr(pos, comma - pos);
    int tasks = 0, repeat = 1;
    if (std::sscanf(item.c_str(), "%d(x%d)", &tasks, &repeat) < 1) return -1;
    if (node < index + repeat) return tasks;
    index += repeat;
    pos = comma + 1;
  }
  return -1;
}

}  // namespace

LauncherRank discover_rank(const EnvLookup& getenv_fn) {
  LauncherRank r;
  int local_rank = -1, local_size = -1;
  if (is_set(getenv_fn, "OMPI_COMM_WORLD_RANK")) {
    r.launcher = "openmpi";
    r.mpi = true;
    r.rank = int_var(getenv_fn, "OMPI_COMM_WORLD_RANK");
    r.size = int_var(getenv_fn, "OMPI_COMM_WORLD_SIZE", 1);
    local_rank = int_var(getenv_fn, "OMPI_COMM_WORLD_LOCAL_RANK");
    local_size = int_var(getenv_fn, "OMPI_COMM_WORLD_LOCAL_SIZE");
  } else if (is_set(getenv_fn, "PMIX_RANK")) {
    // PMIx tells the rank; the size comes from MPI once it is up. Under srun the SLURM
    // variables of the step fill in the rest.
    r.launcher = "pmix";
    r.mpi = true;
    r.rank = int_var(getenv_fn, "PMIX_RANK");
    r.size = int_var(getenv_fn, "SLURM_STEP_NUM_TASKS",
                     int_var(getenv_fn, "SLURM_NTASKS", r.rank + 1));
    local_rank = int_var(getenv_fn, "SLURM_LOCALID");
  } else if (is_set(getenv_fn, "SLURM_PROCID") && is_set(getenv_fn, "SLURM_STEP_ID")) {
    r.launcher = "slurm";
    r.mpi = true;
    r.rank = int_var(getenv_fn, "SLURM_PROCID");
    r.size = int_var(getenv_fn, "SLURM_STEP_NUM_TASKS", int_var(getenv_fn, "SLURM_NTASKS", 1));
    local_rank = int_var(getenv_fn, "SLURM_LOCALID");
    const char* per_node = getenv_fn("SLURM_STEP_TASKS_PER_NODE");
    const int node = int_var(getenv_fn, "SLURM_NODEID", 0);
    if (per_node != nullptr) local_size = slurm_tasks_on_node(per_node, node);
  } else if (is_set(getenv_fn, "RANK") && is_set(getenv_fn, "WORLD_SIZE")) {
    r.launcher = "torchrun";
    r.rank = int_var(getenv_fn, "RANK");
    r.size = int_var(getenv_fn, "WORLD_SIZE");
    local_rank = int_var(getenv_fn, "LOCAL_RANK");
    local_size = int_var(getenv_fn, "LOCAL_WORLD_SIZE");
  }
  // Otherwise a batch script (SLURM_PROCID outside a step) or no launcher: rank 0 of 1.
  if (r.size < 1 || r.rank >= r.size) {
    throw UsageError("launcher variables (" + r.launcher + ") give rank " +
                     std::to_string(r.rank) + " of a world of " + std::to_string(r.size) +
                     " processes");
  }
  // Without local information every rank is assumed alone on its host; MPI corrects this.
  r.local_rank = local_rank >= 0 ? local_rank : (r.size == 1 ? 0 : -1);
  r.local_size = local_size >= 1 ? local_size : (r.size == 1 ? 1 : -1);
  if ((r.local_rank < 0 || r.local_size < 0) && !r.mpi) {
    // torchrun without LOCAL_*: one rank per host is the only safe guess.
    r.local_rank = 0;
    r.local_size = 1;
  }
  return r;
}

LauncherRank discover_rank() {
  return discover_rank([](const char* name) { return std::getenv(name); });
}

}  // namespace holo
