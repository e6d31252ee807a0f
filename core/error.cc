#include "core/error.h"

#include <unistd.h>

#include <cstdlib>

#include "core/rank.h"

namespace holo {
namespace {

ProcessIdentity make_identity() {
  ProcessIdentity id;
  // The launcher's variables (core/rank.h). The distributed runtime overrides these once MPI
  // is up; until then errors and logs still carry the right rank. Variables that do not parse
  // leave rank 0 of 1 here: dist::init_world reports them.
  try {
    const LauncherRank r = discover_rank();
    id.rank = r.rank;
    id.world_size = r.size;
  } catch (const Error&) {
  }
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
