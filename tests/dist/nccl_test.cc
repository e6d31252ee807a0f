// The NCCL communicator on CUDA tensors: the same collectives as collectives_test.cc, on a world
// of any size with one GPU per rank. Every test ends in _CUDA and skips without a GPU; ctest runs
// them a second time as `dist_nccl` (label gpu) under `mpiexec -n 1` (a machine with one GPU: NCCL
// refuses two ranks on one device).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/world.h"
#include "holo/build_config.h"
#include "tests/dist/dist_env.h"

namespace holo::dist {
namespace {

/// The NCCL communicator over the test world, made on first use; null (with `why`) without one.
std::shared_ptr<Communicator> nccl(std::string* why) {
  std::shared_ptr<Communicator>& comm = nccl_comm_slot();
  static std::string reason;
  static bool tried = false;
  if (!tried) {
    tried = true;
    if (!torch::cuda::is_available()) {
      reason = "no CUDA device";
    } else if (!HOLO_WITH_NCCL) {
      reason = "this build has no NCCL";
    } else {
      const World& world = init_world();
      const int device = select_device(world, static_cast<int>(torch::cuda::device_count()));
      DistOptions options;
      options.backend = "nccl";
      comm = make_communicator(options, torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device)));
    }
  }
  if (why != nullptr) *why = reason;
  return comm;
}

#define HOLO_NEED_NCCL()                                   \
  std::string why_;                                        \
  auto comm_ptr = nccl(&why_);                             \
  if (comm_ptr == nullptr) GTEST_SKIP() << "no NCCL: " << why_; \
  Communicator& comm = *comm_ptr

torch::Device gpu() {
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(
      select_device(init_world(), static_cast<int>(torch::cuda::device_count()))));
}

/// Values 0..12 repeated, plus `offset`, made on the GPU: exact in every dtype, summed too.
torch::Tensor base(int64_t n, torch::ScalarType dtype, int64_t offset = 0) {
  return (torch::arange(n, torch::TensorOptions(torch::kLong).device(gpu())) % 13 + offset).to(dtype);
}

class NcclCollective_CUDA : public ::testing::TestWithParam<std::tuple<torch::ScalarType, int64_t>> {
 protected:
  torch::ScalarType dtype() const { return std::get<0>(GetParam()); }
  int64_t n() const { return std::get<1>(GetParam()); }
};

TEST_P(NcclCollective_CUDA, AllReduceSumMaxMinAvg) {
  HOLO_NEED_NCCL();
  EXPECT_EQ(comm.backend(), "nccl");
  const int r = comm.rank(), s = comm.size();
  auto sum = base(n(), dtype(), r);
  auto mx = base(n(), dtype(), r);
  auto mn = base(n(), dtype(), r);
  comm.all_reduce(sum, ReduceOp::kSum);
  comm.all_reduce(mx, ReduceOp::kMax);
  comm.all_reduce(mn, ReduceOp::kMin);
  const int64_t rank_sum = static_cast<int64_t>(s) * (s - 1) / 2;
  ASSERT_TRUE(sum.is_cuda());
  EXPECT_EQ(sum.scalar_type(), dtype());
  const auto want = (torch::arange(n(), torch::kLong) % 13 * s + rank_sum).to(dtype());
  EXPECT_TRUE(sum.cpu().equal(want));
  EXPECT_TRUE(mx.cpu().equal(base(n(), dtype(), s - 1).cpu()));
  EXPECT_TRUE(mn.cpu().equal(base(n(), dtype(), 0).cpu()));
  if (at::isFloatingType(dtype())) {
    auto avg = base(n(), dtype(), 2 * r);
    comm.all_reduce(avg, ReduceOp::kAvg);
    const auto want_avg = torch::arange(n(), torch::kDouble).remainder(13) + (s - 1);
    EXPECT_TRUE(torch::allclose(avg.cpu().to(torch::kDouble), want_avg, 1e-2, 1e-3));
  }
}

TEST_P(NcclCollective_CUDA, BroadcastAndAllGather) {
  HOLO_NEED_NCCL();
  const int r = comm.rank(), s = comm.size();
  const int root = s - 1;
  auto t = r == root ? base(n(), dtype(), 1) : torch::zeros({n()}, torch::TensorOptions(dtype()).device(gpu()));
  comm.broadcast(t, root);
  EXPECT_TRUE(t.cpu().equal(base(n(), dtype(), 1).cpu()));
  auto mine = base(n(), dtype(), r % 2).reshape({1, n()});
  const auto all = comm.all_gather(mine);
  ASSERT_EQ(static_cast<int>(all.size()), s);
  for (int k = 0; k < s; ++k) {
    EXPECT_TRUE(all[k].is_cuda());
    EXPECT_TRUE(all[k].cpu().equal(base(n(), dtype(), k % 2).reshape({1, n()}).cpu())) << "rank " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSizes, NcclCollective_CUDA,
    ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble, torch::kHalf, torch::kBFloat16,
                                         torch::kInt, torch::kLong, torch::kByte),
                       ::testing::Values<int64_t>(0, 1, 7, 1000, (1 << 20) + 1)),
    [](const auto& info) {
      return std::string(c10::toString(std::get<0>(info.param))) + "_" + std::to_string(std::get<1>(info.param));
    });

TEST(NcclCommunicator_CUDA, ReadsWhatTheDefaultStreamWroteJustBefore) {
  HOLO_NEED_NCCL();
  // Kernels queued on LibTorch's stream right before the collective: NCCL's own stream must wait
  // for them, and work queued after must wait for NCCL. 64 rounds of write-reduce-read.
  const int s = comm.size();
  auto t = torch::zeros({1 << 22}, torch::TensorOptions(torch::kFloat).device(gpu()));
  for (int i = 1; i <= 64; ++i) {
    t.fill_(static_cast<float>(i));
    comm.all_reduce(t, ReduceOp::kSum);
    t.mul_(2);
    EXPECT_EQ(t.min().item<float>(), static_cast<float>(2 * i * s)) << "round " << i;
    EXPECT_EQ(t.max().item<float>(), static_cast<float>(2 * i * s)) << "round " << i;
  }
}

TEST(NcclCommunicator_CUDA, NonContiguousAndAsyncInFlightTogether) {
  HOLO_NEED_NCCL();
  const int r = comm.rank(), s = comm.size();
  auto storage = torch::arange(24, torch::TensorOptions(torch::kFloat).device(gpu())).reshape({4, 6});
  auto view = storage.t();
  ASSERT_FALSE(view.is_contiguous());
  comm.all_reduce(view, ReduceOp::kSum);
  EXPECT_TRUE(storage.cpu().equal(torch::arange(24, torch::kFloat).reshape({4, 6}) * s));

  std::vector<torch::Tensor> tensors;
  std::vector<std::shared_ptr<Work>> works;
  for (int i = 0; i < 6; ++i) {
    tensors.push_back(torch::full({1000 * (i + 1) + 1}, static_cast<float>(r + i),
                                  torch::TensorOptions(torch::kFloat).device(gpu())));
    works.push_back(comm.all_reduce_async(tensors.back(), i % 2 ? ReduceOp::kAvg : ReduceOp::kSum));
  }
  for (int i = 5; i >= 0; --i) works[i]->wait();
  for (int i = 0; i < 6; ++i) {
    const float sum = static_cast<float>(s * (s - 1) / 2 + s * i);
    const float want = i % 2 ? sum / s : sum;
    EXPECT_TRUE(tensors[i].cpu().equal(torch::full({1000 * (i + 1) + 1}, want))) << i;
    EXPECT_TRUE(works[i]->test());
  }
}

TEST(NcclCommunicator_CUDA, CpuTensorsAreRefusedWithAClearError) {
  HOLO_NEED_NCCL();
  auto t = torch::ones({4});
  EXPECT_THAT([&] { comm.all_reduce(t, ReduceOp::kSum); },
              ::testing::ThrowsMessage<UsageError>(::testing::HasSubstr("got a tensor on cpu")));
}

}  // namespace
}  // namespace holo::dist
