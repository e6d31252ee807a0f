#include "core/error.h"

#include <unistd.h>

#include <cstdlib>

namespace holo {
namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  return (end && *end == '\0') ? static_cast<int>(x) : fallback;
}

ProcessIdentity make_identity() {
  ProcessIdentity id;
  // Launcher variables, most specific first. The distributed runtime overrides these once MPI
  // is up; until then errors and logs still carry the right rank.
  int rank = env_int("OMPI_COMM_WORLD_RANK", -1);
  if (rank < 0) rank = env_int("PMIX_RANK", -1);
  if (rank < 0) rank = env_int("SLURM_PROCID", -1);
  if (rank < 0) rank = env_int("RANK", 0);
  int size = env_int("OMPI_COMM_WORLD_SIZE", -1);
  if (size < 0) size = env_int("SLURM_NTASKS", -1);
  if (size < 0) size = env_int("WORLD_SIZE", 1);
  id.rank = rank;
  id.world_size = size;
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) == 0) id.host = host;
  return id;
}

ProcessIdentity& mutable_identity() {
  static ProcessIdentity id = make_identity();
  return id;
}

}  // namespace

const ProcessIdentity& process_identity() { return mutable_identity(); }

void set_process_rank(int rank, int world_size) {
  mutable_identity().rank = rank;
  mutable_identity().world_size = world_size;
}

std::string where_prefix() {
  const auto& id = process_identity();
  return "[rank " + std::to_string(id.rank) + " on " + id.host + "] ";
}

RecipeError::RecipeError(const std::string& file, int line, int column, const std::string& key,
                         const std::string& message)
    : Error(file + (line > 0 ? ":" + std::to_string(line) + ":" + std::to_string(column) : "") +
            ": " + (key.empty() ? "" : "key '" + key + "': ") + message),
      file_(file),
      line_(line),
      column_(column),
      key_(key) {}

CallError::CallError(const std::string& library, const std::string& call, long code,
                     const std::string& error_string, const char* file, int line)
    : Error(where_prefix() + library + " call failed: " + call + " returned " +
            std::to_string(code) + " (" + error_string + ") at " + file + ":" +
            std::to_string(line)),
      library_(library),
      call_(call),
      code_(code) {}

void throw_check_failure(const char* condition, const std::string& message, const char* file,
                         int line) {
  throw Error(where_prefix() + message + " [check failed: " + condition + " at " + file + ":" +
              std::to_string(line) + "]");
}

}  // namespace holo
