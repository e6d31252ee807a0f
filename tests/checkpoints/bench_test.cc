// The core of `holo bench checkpoint` on a tiny state: the figures are consistent with each
// other and with what is on disk (no wall-clock limits).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "checkpoints/bench.h"
#include "core/error.h"
#include "tests/test_util.h"

namespace holo::ckpt {
namespace {

namespace fs = std::filesystem;

TEST(CheckpointBench, IoFiguresAreConsistent) {
  const std::string d = holo::testing::temp_dir();
  torch::manual_seed(1);
  const NamedTensors state = {{"model.w", torch::randn({300000})},             // 1.2 MB
                              {"optim.w.momentum_buffer", torch::randn({300000})},
                              {"model.b", torch::arange(10, torch::kLong)}};
  const auto r = bench_io(state, IoBenchOptions(d + "/io").repeat(2));
  EXPECT_EQ(r.rounds, 2);
  EXPECT_EQ(r.state_bytes, 2u * 300000 * 4 + 10 * 8);
  // The checkpoint is the tensors plus the shard header and the manifest: a few KB more.
  EXPECT_GT(r.file_bytes, r.state_bytes);
  EXPECT_LT(r.file_bytes, r.state_bytes + 64 * 1024);
  // dd moves whole 4 MiB blocks covering the same bytes.
  EXPECT_EQ(r.dd_bytes, uint64_t{4} << 20);
  for (double s : {r.save_s, r.snapshot_s, r.load_s, r.dd_write_s, r.dd_read_s}) {
    EXPECT_GT(s, 0.0);
    EXPECT_TRUE(std::isfinite(s));
  }
  EXPECT_LT(r.snapshot_s, r.save_s);  // the snapshot is part of the save
  EXPECT_GT(r.first_snapshot_s, 0.0);
  EXPECT_LT(r.first_snapshot_s, r.first_save_s);
  EXPECT_DOUBLE_EQ(r.save_mb_s(), r.file_bytes / 1e6 / r.save_s);
  EXPECT_DOUBLE_EQ(r.dd_read_mb_s(), r.dd_bytes / 1e6 / r.dd_read_s);
  EXPECT_GE(r.cached_before_load, 0.0);
  EXPECT_LE(r.cached_before_load, 1.0);
  EXPECT_GE(r.cached_before_dd_read, 0.0);
  EXPECT_LE(r.cached_before_dd_read, 1.0);
  EXPECT_FALSE(r.filesystem.empty());
  // Nothing is left behind.
  EXPECT_TRUE(fs::is_empty(d + "/io"));
}

TEST(CheckpointBench, StallRunsTheLoopAndSavesEveryKSteps) {
  const std::string d = holo::testing::temp_dir();
  torch::manual_seed(2);
  torch::nn::Linear net(64, 8);
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const torch::Tensor x = torch::randn({16, 64});
  const torch::Tensor y = torch::randint(8, {16}, torch::kLong);
  int64_t steps = 0;
  auto train_step = [&] {
    sgd.zero_grad();
    torch::nn::functional::cross_entropy(net->forward(x), y).backward();
    sgd.step();
    ++steps;
  };
  std::vector<int64_t> saved_at;
  auto snapshot = [&](int64_t step) {
    saved_at.push_back(step);
    Snapshot s;
    s.step = step;
    for (const auto& p : net->named_parameters()) s.replicated.emplace_back("model." + p.key(), p.value());
    s.per_rank = {{"rng.cpu", torch::zeros({4}, torch::kUInt8)}};
    return s;
  };
  const auto r = bench_stall(train_step, snapshot, StallBenchOptions(d + "/ckpt").every(4).saves(3).warmup(2));
  EXPECT_EQ(steps, 2 + 2 * 3 * 4);
  // An untimed first save after the warm-up, then one at the start of every saving segment.
  EXPECT_EQ(saved_at, (std::vector<int64_t>{2, 6, 14, 22}));
  EXPECT_GT(r.first_snapshot_s, 0.0);
  EXPECT_EQ(r.every, 4);
  EXPECT_EQ(r.saves, 3);
  EXPECT_EQ(r.state_bytes, (64u * 8 + 8) * 4 + 4);
  EXPECT_GT(r.step_plain_s, 0.0);
  EXPECT_GT(r.step_saving_s, 0.0);
  EXPECT_GT(r.snapshot_s, 0.0);
  EXPECT_GE(r.snapshot_max_s, r.snapshot_s);
  EXPECT_GE(r.drain_s, 0.0);
  // The saving segments' time includes the save() calls.
  EXPECT_GE(r.step_saving_s * r.every, r.snapshot_s);
  EXPECT_DOUBLE_EQ(r.stall_per_save_s(), (r.step_saving_s - r.step_plain_s) * 4);
  EXPECT_DOUBLE_EQ(r.overhead(), r.step_saving_s / r.step_plain_s - 1.0);
  // The newest save is committed and holds the parameters as they were at step 22.
  const auto loaded = Manager::load_latest(d + "/ckpt", 0, 1);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->step, 22);
  EXPECT_EQ(Manager::list(d + "/ckpt").size(), 1u);
  EXPECT_EQ(loaded->replicated.size(), 2u);
}

TEST(CheckpointBench, BadOptionsAreRefused) {
  const std::string d = holo::testing::temp_dir();
  EXPECT_THROW(bench_io({{"model.w", torch::zeros({4})}}, IoBenchOptions(d).repeat(0)), Error);
  EXPECT_THROW(bench_stall([] {}, [](int64_t) { return Snapshot{}; }, StallBenchOptions(d).every(0)), Error);
}

}  // namespace
}  // namespace holo::ckpt
