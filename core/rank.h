#pragma once
/// Which rank of a job this process is, read from the variables of whatever started it. This is
/// the one rank discovery in Holo: the rank in error messages and log lines
/// (holo::process_identity(), core/error.h) and the distributed world (dist/world.h) both come
/// from discover_rank(). No LibTorch and no MPI here.
///
/// Precedence, the first that matches wins (docs/distributed.md):
///   1. OpenMPI's `mpirun`: OMPI_COMM_WORLD_RANK set. Size, local rank and local size from
///      OMPI_COMM_WORLD_SIZE / _LOCAL_RANK / _LOCAL_SIZE.
///   2. PMIx (`srun --mpi=pmix`, `prterun`): PMIX_RANK set. Size from SLURM_STEP_NUM_TASKS, then
///      SLURM_NTASKS (else rank + 1 until MPI tells); local rank from SLURM_LOCALID.
///   3. A SLURM job step (`srun`): SLURM_PROCID *and* SLURM_STEP_ID set. Size from
///      SLURM_STEP_NUM_TASKS (or SLURM_NTASKS), local rank from SLURM_LOCALID, local size from
///      SLURM_STEP_TASKS_PER_NODE at SLURM_NODEID.
///   4. torchrun-style variables: RANK and WORLD_SIZE set (LOCAL_RANK, LOCAL_WORLD_SIZE).
///   5. A SLURM batch script: SLURM_PROCID without SLURM_STEP_ID. sbatch sets SLURM_PROCID=0
///      and SLURM_NTASKS=N for the script itself, which is one process: rank 0 of 1, launcher
///      "none".
///   6. Nothing: rank 0 of 1, launcher "none".
/// torchrun's variables come before the batch script's because a torchrun started from a batch
/// script inherits the script's SLURM variables. A RANK without WORLD_SIZE, or a SLURM_PROCID
/// outside a step, says nothing about the rank.
///
/// 1-3 start their processes in a way MPI can join (`mpi` true): once MPI is up, the rank and
/// size MPI reports win over these variables (dist::init_world).

#include <functional>
#include <string>

namespace holo {

/// Reads an environment variable; returns nullptr when unset. Lets tests feed discovery a fake
/// environment.
using EnvLookup = std::function<const char*(const char* name)>;

/// This process's place in the job as its launcher's variables describe it.
struct LauncherRank {
  int rank = 0;
  int size = 1;
  /// Rank among the processes on this host, and how many there are; -1 when the variables do
  /// not say and the job has several ranks under an MPI launcher (MPI tells later). Without MPI
  /// (torchrun) and without local variables every rank is taken to be alone on its host.
  int local_rank = 0;
  int local_size = 1;
  std::string launcher = "none";  ///< openmpi, pmix, slurm, torchrun or none
  bool mpi = false;               ///< started by a launcher MPI can join (1-3 above)
};

/// Discovers the rank from `getenv_fn` with the precedence above. Throws holo::UsageError naming
/// the variable when one that decides does not parse as a non-negative integer, or when the rank
/// is outside [0, size).
LauncherRank discover_rank(const EnvLookup& getenv_fn);

/// discover_rank() on this process's environment.
LauncherRank discover_rank();

}  // namespace holo
