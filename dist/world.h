#pragma once
/// The world of a data-parallel job: which rank this process is, how many there are, and which
/// of them share this host. No LibTorch here.
///
/// The world is discovered from the variables of whatever started the process, with the one
/// precedence of holo::discover_rank (core/rank.h, docs/distributed.md): OpenMPI, PMIx, a SLURM
/// job step, torchrun-style variables, then a SLURM batch script or nothing (rank 0 of 1, MPI
/// not initialised). MPI is initialised (MPI_THREAD_MULTIPLE) for the first three; the values
/// MPI reports win over the variables. A world of several ranks started by torchrun variables
/// alone has no MPI to communicate through; `make_communicator` refuses it with a message
/// saying so.

#include <functional>
#include <string>
#include <vector>

#include "core/rank.h"

namespace holo::dist {

/// Identity of this process in the job.
struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;           ///< rank among the processes on this host
  int local_size = 1;           ///< processes on this host
  std::string host;             ///< this host's name
  /// Every rank's host, by rank: this host alone until init_world gathers them over MPI.
  std::vector<std::string> host_of_rank;
  bool mpi = false;             ///< MPI initialised (collectives go through MPI)
  std::string launcher = "none";  ///< openmpi, pmix, slurm, torchrun or none
};

/// Reads a variable; returns nullptr when unset (holo::EnvLookup, core/rank.h).
using EnvLookup = ::holo::EnvLookup;

/// The world as the launcher's variables describe it, before MPI is asked (pure; no MPI).
/// Throws holo::UsageError for variables that do not parse or contradict each other
/// (rank outside [0, size)).
World discover_world(const EnvLookup& getenv_fn);

/// Discovers the world, initialises MPI when a launcher that speaks it started the process,
/// tells holo::set_process_rank and re-initialises the log so every line carries the rank.
/// Idempotent: later calls return the same object.
const World& init_world();

/// True once init_world() has run.
bool world_initialized();

/// Finalises MPI after a successful run (every rank must call it). Idempotent. A process that
/// leaves without calling it while MPI is up and the world has several ranks aborts the job
/// (see abort_world), so that no peer is left waiting in a collective.
void finalize_world();

/// Ends the whole job now: logs `reason`, then MPI_Abort (every rank exits non-zero) when MPI is
/// up, std::_Exit(exit_code) otherwise.
[[noreturn]] void abort_world(int exit_code, const std::string& reason);

/// "2 ranks on 2 hosts: holo-node1 (rank 0), holo-node2 (rank 1)": which ranks run where, hosts
/// in the order of their first rank, consecutive ranks as ranges ("a (ranks 0-3, 8)").
/// `host_of_rank[r]` is rank r's host. Rank 0 logs it at info level once MPI is up.
std::string describe_hosts(const std::vector<std::string>& host_of_rank);

/// GPU for this process: local_rank modulo the visible devices; -1 when there are none.
int select_device(const World& world, int device_count);

}  // namespace holo::dist
