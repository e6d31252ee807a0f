#pragma once
/// The core of `holo bench allreduce` (docs/benchmarks.md): bus bandwidth of Holo's MPI
/// communicator against a raw MPI_Allreduce loop, run by every rank of a job. Starting the
/// ranks is the launcher's part.

#include <cstdint>
#include <string>

namespace holo::dist {

/// Options of `holo bench allreduce` (one field per flag).
struct AllreduceBenchOptions {
  int np = 2;                                     ///< ranks the launcher starts (outside mpirun/srun)
  int64_t min_bytes = 1024;                       ///< smallest buffer
  int64_t max_bytes = int64_t{256} << 20;         ///< largest buffer; sizes grow x4
  int rounds = 3;                                 ///< rounds per size; the best is kept
  std::string json;                               ///< rank 0 also writes the figures here
};

/// One rank of the benchmark: initialises the world (at least 2 ranks), times float32 sum
/// all-reduces of every size, raw and Holo's interleaved, rank 0 prints the table (and writes
/// options.json), and finalises the world.
void run_allreduce_bench(const AllreduceBenchOptions& options);

/// The largest `x` over the ranks of MPI_COMM_WORLD (collective).
double max_over_ranks(double x);

}  // namespace holo::dist
