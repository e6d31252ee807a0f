// A small data-parallel training program that fails on purpose, for failure_test.cc. Started
// under mpirun by the tests:
//   holo_dist_worker train STEPS [kill RANK STEP | throw RANK STEP]
//   holo_dist_worker hang RANK
// Prints "rank R step S" after each step, and "rank R kills itself at <unix ms>" just before a
// SIGKILL, so the test can measure how long the others take to exit.
#include <signal.h>
#include <unistd.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "dist/communicator.h"
#include "dist/reducer.h"
#include "dist/world.h"

namespace {

long long unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int train(int argc, char** argv) {
  const int steps = std::atoi(argv[2]);
  const std::string fault = argc > 3 ? argv[3] : "";
  const int fault_rank = argc > 4 ? std::atoi(argv[4]) : -1;
  const int fault_step = argc > 5 ? std::atoi(argv[5]) : -1;
  const auto& w = holo::dist::init_world();
  auto comm = holo::dist::make_communicator(holo::DistOptions{}, torch::kCPU);
  torch::manual_seed(1);
  torch::nn::Sequential model(torch::nn::Linear(16, 64), torch::nn::ReLU(), torch::nn::Linear(64, 4));
  holo::dist::broadcast_module(*model, *comm);
  holo::dist::GradientReducer reducer(model->parameters(), comm,
                                      holo::dist::ReducerOptions().bucket_mb(0.01));
  torch::optim::SGD opt(model->parameters(), 0.01);
  for (int step = 1; step <= steps; ++step) {
    if (w.rank == fault_rank && step == fault_step) {
      if (fault == "kill") {
        std::printf("rank %d kills itself at %lld\n", w.rank, unix_ms());
        std::fflush(stdout);
        raise(SIGKILL);
      }
      if (fault == "throw") throw holo::Error("deliberate failure on rank " + std::to_string(w.rank));
    }
    const auto x = torch::randn({8, 16});
    const auto y = torch::randint(0, 4, {8}, torch::kLong);
    opt.zero_grad();
    reducer.prepare_for_backward();
    torch::nn::functional::cross_entropy(model->forward(x), y).backward();
    reducer.finish();
    opt.step();
    std::printf("rank %d step %d\n", w.rank, step);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  comm.reset();
  holo::dist::finalize_world();
  return 0;
}

int hang(char** argv) {
  const int hang_rank = std::atoi(argv[2]);
  const auto& w = holo::dist::init_world();
  auto comm = holo::dist::make_communicator(holo::DistOptions{}, torch::kCPU);
  comm->barrier();
  if (w.rank == hang_rank) {
    std::printf("rank %d stops taking part at %lld\n", w.rank, unix_ms());
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(600));
    return 0;
  }
  auto t = torch::ones({1000});
  comm->all_reduce(t, holo::dist::ReduceOp::kSum);  // never completes
  std::printf("rank %d: all_reduce returned\n", w.rank);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  holo::log::init("info");
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "train" && argc > 2) return train(argc, argv);
    if (mode == "hang" && argc > 2) return hang(argv);
    std::fprintf(stderr, "usage: %s train STEPS [kill|throw RANK STEP] | hang RANK\n", argv[0]);
    return 2;
  } catch (const std::exception& e) {
    // Leaving without finalize_world(): the exit guard takes the whole job down.
    std::fprintf(stderr, "worker error: %s\n", e.what());
    return 1;
  }
}
