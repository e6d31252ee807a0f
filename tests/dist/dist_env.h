#pragma once
// The world and one MPI communicator shared by the tests of an mpiexec-run test binary: made
// before the first test, finalised after the last.
#include <gtest/gtest.h>

#include <memory>

#include "dist/communicator.h"
#include "dist/world.h"

namespace holo::dist {

inline std::shared_ptr<Communicator>& test_comm_slot() {
  static std::shared_ptr<Communicator> comm;
  return comm;
}

/// The NCCL communicator of nccl_test.cc, when a test made one; released before the world ends.
inline std::shared_ptr<Communicator>& nccl_comm_slot() {
  static std::shared_ptr<Communicator> comm;
  return comm;
}

/// The shared communicator (over all ranks of the test job).
inline std::shared_ptr<Communicator> test_comm() { return test_comm_slot(); }

class WorldEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    init_world();
    test_comm_slot() = make_communicator(DistOptions{}, torch::kCPU);
  }
  void TearDown() override {
    nccl_comm_slot().reset();
    test_comm_slot().reset();
    finalize_world();
  }
};

}  // namespace holo::dist
