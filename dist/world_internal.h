#pragma once
/// Internals shared by the files of dist/ (not for other folders).

#include <functional>

namespace holo::dist::detail {

/// Thread level MPI granted (MPI_THREAD_*), 0 before MPI is up.
void set_thread_level(int level);
int thread_level();

/// Callbacks run (newest first) just before MPI_Finalize, e.g. to stop a watchdog thread that
/// still polls MPI. Returns an id for remove_finalize_hook.
int add_finalize_hook(std::function<void()> fn);
void remove_finalize_hook(int id);

}  // namespace holo::dist::detail
