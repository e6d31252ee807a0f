// Collectives of the MPI communicator, run under mpiexec with 2 and 3 ranks: every dtype and
// size (zero-size and sizes not divisible by the world size included), async all-reduces in
// flight together, and the errors every rank must raise alike.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/world.h"
#include "tests/dist/dist_env.h"

namespace holo::dist {
namespace {

// One world and communicator for the whole binary (reducer_test.cc uses it too).
::testing::Environment* const kWorld = ::testing::AddGlobalTestEnvironment(new WorldEnvironment);

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

/// Values 0..12 repeated, plus `offset`: exact in every dtype tested, even summed over ranks.
torch::Tensor base(int64_t n, torch::ScalarType dtype, int64_t offset = 0) {
  return (torch::arange(n, torch::kLong) % 13 + offset).to(dtype);
}

class Collective : public ::testing::TestWithParam<std::tuple<torch::ScalarType, int64_t>> {
 protected:
  Communicator& comm() { return *test_comm(); }
  torch::ScalarType dtype() const { return std::get<0>(GetParam()); }
  int64_t n() const { return std::get<1>(GetParam()); }
};

TEST_P(Collective, AllReduceSumMaxMin) {
  const int r = comm().rank(), s = comm().size();
  if (dtype() == torch::kBool) {
    auto flags = [&](int rank) { return (torch::arange(n()) + rank) % 3 == 0; };
    auto any = flags(r), all = flags(r);
    comm().all_reduce(any, ReduceOp::kSum);
    comm().all_reduce(all, ReduceOp::kMin);
    auto want_any = torch::zeros({n()}, torch::kBool), want_all = torch::ones({n()}, torch::kBool);
    for (int k = 0; k < s; ++k) {
      want_any = want_any.logical_or(flags(k));
      want_all = want_all.logical_and(flags(k));
    }
    EXPECT_TRUE(any.equal(want_any));
    EXPECT_TRUE(all.equal(want_all));
    return;
  }
  auto sum = base(n(), dtype(), r);
  auto mx = base(n(), dtype(), r);
  auto mn = base(n(), dtype(), r);
  comm().all_reduce(sum, ReduceOp::kSum);
  comm().all_reduce(mx, ReduceOp::kMax);
  comm().all_reduce(mn, ReduceOp::kMin);
  const int64_t rank_sum = static_cast<int64_t>(s) * (s - 1) / 2;
  EXPECT_EQ(sum.scalar_type(), dtype());
  EXPECT_TRUE(sum.equal((torch::arange(n(), torch::kLong) % 13 * s + rank_sum).to(dtype())));
  EXPECT_TRUE(mx.equal(base(n(), dtype(), s - 1)));
  EXPECT_TRUE(mn.equal(base(n(), dtype(), 0)));
}

TEST_P(Collective, AllReduceAvg) {
  if (!at::isFloatingType(dtype())) {
    auto t = base(n(), dtype());
    EXPECT_THAT([&] { comm().all_reduce(t, ReduceOp::kAvg); },
                ThrowsMessage<UsageError>(HasSubstr("avg")));
    return;
  }
  const int r = comm().rank(), s = comm().size();
  auto t = base(n(), dtype(), 2 * r);
  comm().all_reduce(t, ReduceOp::kAvg);
  const auto want = torch::arange(n(), torch::kDouble).remainder(13) + (s - 1);
  EXPECT_TRUE(torch::allclose(t.to(torch::kDouble), want, 1e-2, 1e-3));
}

TEST_P(Collective, Broadcast) {
  const int r = comm().rank(), s = comm().size();
  const int root = s - 1;
  auto t = r == root ? base(n(), dtype(), 1) : torch::zeros({n()}, dtype());
  comm().broadcast(t, root);
  EXPECT_TRUE(t.equal(base(n(), dtype(), 1)));
}

TEST_P(Collective, AllGather) {
  const int r = comm().rank(), s = comm().size();
  auto mine = base(n(), dtype(), r % 2).reshape({1, n()});
  const auto all = comm().all_gather(mine);
  ASSERT_EQ(static_cast<int>(all.size()), s);
  for (int k = 0; k < s; ++k) {
    EXPECT_EQ(all[k].sizes(), mine.sizes());
    EXPECT_TRUE(all[k].equal(base(n(), dtype(), k % 2).reshape({1, n()}))) << "rank " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSizes, Collective,
    ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble, torch::kHalf,
                                         torch::kBFloat16, torch::kInt, torch::kLong,
                                         torch::kByte, torch::kBool),
                       // 0, 1, not divisible by 2 or 3, and a large odd size.
                       ::testing::Values<int64_t>(0, 1, 7, 1000, (1 << 20) + 1)),
    [](const auto& info) {
      return std::string(c10::toString(std::get<0>(info.param))) + "_" +
             std::to_string(std::get<1>(info.param));
    });

TEST(Collectives, NonContiguousTensorIsReducedInPlace) {
  Communicator& comm = *test_comm();
  auto storage = torch::arange(24, torch::kFloat).reshape({4, 6});
  auto view = storage.t();  // 6 x 4, not contiguous, shares storage
  ASSERT_FALSE(view.is_contiguous());
  comm.all_reduce(view, ReduceOp::kSum);
  EXPECT_TRUE(storage.equal(torch::arange(24, torch::kFloat).reshape({4, 6}) * comm.size()));
}

TEST(Collectives, AsyncAllReducesInFlightTogether) {
  Communicator& comm = *test_comm();
  const int r = comm.rank(), s = comm.size();
  std::vector<torch::Tensor> tensors;
  std::vector<std::shared_ptr<Work>> works;
  for (int i = 0; i < 6; ++i) {
    tensors.push_back(torch::full({1000 * (i + 1) + 1}, static_cast<float>(r + i)));
    works.push_back(comm.all_reduce_async(tensors.back(), i % 2 ? ReduceOp::kAvg : ReduceOp::kSum));
  }
  for (int i = 5; i >= 0; --i) works[i]->wait();  // any order of waiting is fine
  for (int i = 0; i < 6; ++i) {
    const float sum = static_cast<float>(s * (s - 1) / 2 + s * i);
    const float want = i % 2 ? sum / s : sum;
    EXPECT_TRUE(tensors[i].equal(torch::full({1000 * (i + 1) + 1}, want))) << i;
    EXPECT_TRUE(works[i]->test());
  }
}

TEST(Collectives, AllGatherShapeMismatchFailsOnEveryRank) {
  Communicator& comm = *test_comm();
  auto t = torch::zeros({comm.rank() == 0 ? 3 : 4});
  EXPECT_THAT([&] { comm.all_gather(t); },
              ThrowsMessage<DistError>(HasSubstr("another shape or dtype")));
  comm.barrier();  // and the communicator is still usable
  auto ok = torch::ones({2});
  comm.all_reduce(ok, ReduceOp::kSum);
  EXPECT_TRUE(ok.equal(torch::full({2}, static_cast<float>(comm.size()))));
}

TEST(Collectives, BadArgumentsAreUsageErrors) {
  Communicator& comm = *test_comm();
  auto t = torch::ones({2});
  EXPECT_THAT([&] { comm.broadcast(t, comm.size()); },
              ThrowsMessage<UsageError>(HasSubstr("root")));
  DistOptions nccl_on_cpu;
  nccl_on_cpu.backend = "nccl";
  EXPECT_THAT([&] { make_communicator(nccl_on_cpu, torch::kCPU); },
              ThrowsMessage<UsageError>(HasSubstr("CUDA tensors")));
}

TEST(Collectives, WorldMatchesTheCommunicator) {
  const World& w = init_world();
  EXPECT_TRUE(w.mpi);
  EXPECT_EQ(w.rank, test_comm()->rank());
  EXPECT_EQ(w.size, test_comm()->size());
  EXPECT_GE(w.local_rank, 0);
  EXPECT_LT(w.local_rank, w.local_size);
  EXPECT_EQ(process_identity().rank, w.rank);
  EXPECT_EQ(test_comm()->backend(), "mpi");
}

TEST(SelfCommunicator, LeavesTensorsAsTheyAre) {
  SelfCommunicator self;
  auto t = torch::arange(5, torch::kFloat);
  self.all_reduce(t, ReduceOp::kAvg);
  self.broadcast(t, 0);
  EXPECT_TRUE(t.equal(torch::arange(5, torch::kFloat)));
  const auto g = self.all_gather(t);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_TRUE(g[0].equal(t));
  EXPECT_THAT([&] { self.broadcast(t, 1); }, ThrowsMessage<UsageError>(HasSubstr("root 1")));
}

}  // namespace
}  // namespace holo::dist
