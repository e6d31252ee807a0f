// holo bench allreduce (dist/bench.h).

#include "dist/bench.h"

#include <mpi.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "core/check.h"
#include "core/recipe.h"
#include "core/time.h"
#include "dist/communicator.h"
#include "dist/mpi_communicator.h"
#include "dist/world.h"

namespace holo::dist {
namespace {

std::string human_bytes(int64_t b) {
  const char* units[] = {"B", "KB", "MB", "GB"};
  int u = 0;
  double v = static_cast<double>(b);
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  std::ostringstream s;
  s << v << " " << units[u];
  return s.str();
}

/// Bus bandwidth (nccl-tests' convention): what each rank's link carries, 2 (n - 1) / n of the
/// buffer per all-reduce, per second.
double bus_bandwidth(int64_t bytes, double seconds, int n) {
  return static_cast<double>(bytes) * 2.0 * (n - 1) / n / seconds;
}

}  // namespace

double max_over_ranks(double x) {
  double out = x;
  HOLO_MPI_CHECK(MPI_Allreduce(&x, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return out;
}

void run_allreduce_bench(const AllreduceBenchOptions& a) {
  const auto& w = init_world();
  HOLO_CHECK(w.size >= 2, "holo bench allreduce needs at least 2 ranks (--np)");
  DistOptions opts;
  opts.backend = "mpi";
  auto comm = make_communicator(opts, torch::kCPU);
  // The baseline loop's own duplicate of MPI_COMM_WORLD (no watchdog), freed by its owner.
  auto baseline = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, /*timeout_s=*/0);
  const MPI_Comm raw = baseline->comm();
  nlohmann::json rows = nlohmann::json::array();
  if (w.rank == 0) {
    std::cout << "all-reduce (sum, float32) over " << w.size << " ranks; bus bandwidth = bytes x "
              << "2(n-1)/n / time; best of " << a.rounds << " rounds, raw and holo interleaved\n"
              << std::left << std::setw(10) << "size" << std::right << std::setw(8) << "iters"
              << std::setw(12) << "raw us" << std::setw(12) << "raw GB/s" << std::setw(12)
              << "holo us" << std::setw(12) << "holo GB/s" << std::setw(8) << "ratio" << "\n";
  }
  for (int64_t bytes = a.min_bytes; bytes <= a.max_bytes; bytes *= 4) {
    const int64_t n = std::max<int64_t>(1, bytes / 4);
    torch::Tensor t = torch::ones({n});
    const int iters = static_cast<int>(std::clamp<int64_t>((int64_t{512} << 20) / bytes, 5, 1000));
    double best_raw = 1e30, best_holo = 1e30;
    for (int round = 0; round < a.rounds; ++round) {
      HOLO_MPI_CHECK(MPI_Barrier(raw));
      auto t0 = SteadyClock::now();
      for (int i = 0; i < iters; ++i) {
        HOLO_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr<float>(), static_cast<int>(n),
                                     MPI_FLOAT, MPI_SUM, raw));
      }
      best_raw = std::min(best_raw, max_over_ranks(seconds_since(t0)) / iters);
      HOLO_MPI_CHECK(MPI_Barrier(raw));
      t0 = SteadyClock::now();
      for (int i = 0; i < iters; ++i) comm->all_reduce(t, ReduceOp::kSum);
      best_holo = std::min(best_holo, max_over_ranks(seconds_since(t0)) / iters);
    }
    const double raw_bw = bus_bandwidth(n * 4, best_raw, w.size);
    const double holo_bw = bus_bandwidth(n * 4, best_holo, w.size);
    rows.push_back({{"bytes", n * 4}, {"iters", iters}, {"raw_s", best_raw}, {"holo_s", best_holo},
                    {"raw_busbw", raw_bw}, {"holo_busbw", holo_bw}, {"ratio", holo_bw / raw_bw}});
    if (w.rank == 0) {
      std::cout << std::left << std::setw(10) << human_bytes(n * 4) << std::right << std::setw(8)
                << iters << std::fixed << std::setprecision(1) << std::setw(12) << best_raw * 1e6
                << std::setprecision(3) << std::setw(12) << raw_bw / 1e9 << std::setprecision(1)
                << std::setw(12) << best_holo * 1e6 << std::setprecision(3) << std::setw(12)
                << holo_bw / 1e9 << std::setprecision(2) << std::setw(8) << holo_bw / raw_bw
                << std::defaultfloat << "\n";
      std::cout.flush();
    }
  }
  if (w.rank == 0 && !a.json.empty()) {
    std::ofstream(a.json) << nlohmann::json{{"ranks", w.size}, {"rows", rows}}.dump(2) << "\n";
  }
  baseline.reset();
  comm.reset();
  finalize_world();
}

}  // namespace holo::dist
