// holo bench model's core on tiny configurations: throughput against the PyTorch baseline
// (same weights and input, so SGS picks the same bins on both sides), SGS GFLOPs on low- and
// high-motion clips, the synthetic clips themselves, table and JSON.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "models/bench.h"
#include "models/network.h"
#include "tests/test_util.h"

namespace holo::models {
namespace {

using ::testing::HasSubstr;

ModelBenchOptions tiny() {
  return ModelBenchOptions()
      .batch(2)
      .frames(4)
      .size(32)
      .width(0.125)
      .classes(10)
      .threads(1)
      .iters(1)
      .warmup(1)
      .baseline(holo::testing::source_dir() + "/bench/model_baseline.py")
      .work_dir(holo::testing::temp_dir());
}

TEST(ModelBenchTest, ThroughputAgainstPyTorch) {
  auto o = tiny().models({"r3d18", "r3d18_atfr"}).sgs_model("");
  const auto r = run_model_bench(o);
  ASSERT_EQ(r.throughput.size(), 2u);
  EXPECT_FALSE(r.has_sgs);
  for (const auto& t : r.throughput) {
    SCOPED_TRACE(t.model);
    EXPECT_TRUE(t.python_error.empty()) << t.python_error;
    EXPECT_GT(t.holo_clips_per_s, 0);
    EXPECT_GT(t.python_clips_per_s, 0);
    EXPECT_DOUBLE_EQ(t.ratio, t.holo_clips_per_s / t.python_clips_per_s);
    ModelOptions m;
    m.name = t.model;
    m.width = 0.125;
    m.frames = 4;
    EXPECT_EQ(t.parameters, count_parameters(*build_network(m, {10})));
  }
  EXPECT_EQ(r.throughput[0].holo_active_bins, -1);
  EXPECT_EQ(r.throughput[0].python_active_bins, -1);
  // Same weights and input on both sides: SGS keeps the same number of bins.
  EXPECT_GE(r.throughput[1].holo_active_bins, 1);
  EXPECT_LE(r.throughput[1].holo_active_bins, 4);
  EXPECT_DOUBLE_EQ(r.throughput[1].holo_active_bins, r.throughput[1].python_active_bins);

  const std::string table = format_model_bench(r);
  EXPECT_THAT(table, HasSubstr("r3d18_atfr"));
  EXPECT_THAT(table, HasSubstr("torch clips/s"));
  const auto j = nlohmann::json::parse(model_bench_json(r));
  ASSERT_EQ(j.at("models").size(), 2u);
  EXPECT_EQ(j["models"][1]["model"], "r3d18_atfr");
  EXPECT_GT(j["models"][1]["holo_clips_per_s"].get<double>(), 0);
  EXPECT_GT(j["models"][1]["torch_clips_per_s"].get<double>(), 0);
  EXPECT_GT(j["models"][1]["ratio"].get<double>(), 0);
  EXPECT_EQ(j["batch"], 2);
  EXPECT_FALSE(j.contains("sgs"));
}

TEST(ModelBenchTest, MissingBaselineIsReportedNotFatal) {
  auto o = tiny().models({"r3d18"}).sgs_model("").baseline("/nonexistent/model_baseline.py");
  const auto r = run_model_bench(o);
  ASSERT_EQ(r.throughput.size(), 1u);
  EXPECT_GT(r.throughput[0].holo_clips_per_s, 0);
  EXPECT_EQ(r.throughput[0].python_clips_per_s, 0);
  EXPECT_THAT(r.throughput[0].python_error, HasSubstr("/nonexistent/model_baseline.py"));
  EXPECT_THAT(model_bench_json(r), HasSubstr("torch_error"));
}

TEST(ModelBenchTest, Bf16OnCpuRunsBothSides) {
  auto o = tiny().models({"r3d18", "r3d18_atfr"}).sgs_model("").precision("bf16");
  const auto r = run_model_bench(o);
  ASSERT_EQ(r.throughput.size(), 2u);
  for (const auto& t : r.throughput) {
    SCOPED_TRACE(t.model);
    EXPECT_TRUE(t.python_error.empty()) << t.python_error;
    EXPECT_TRUE(std::isfinite(t.holo_clips_per_s));
    EXPECT_TRUE(std::isfinite(t.python_clips_per_s));
    EXPECT_GT(t.holo_clips_per_s, 0);
    EXPECT_GT(t.python_clips_per_s, 0);
    EXPECT_TRUE(t.device_name.empty());  // a GPU's name only
  }
  EXPECT_GE(r.throughput[1].holo_active_bins, 1);
  EXPECT_GE(r.throughput[1].python_active_bins, 1);
  EXPECT_THAT(format_model_bench(r), HasSubstr("device cpu, precision bf16"));
  const auto j = nlohmann::json::parse(model_bench_json(r));
  EXPECT_EQ(j.at("precision"), "bf16");
  EXPECT_EQ(j.at("device"), "cpu");
  EXPECT_FALSE(j.contains("device_name"));
  EXPECT_GT(j["models"][0]["torch_clips_per_s"].get<double>(), 0);
}

TEST(ModelBenchTest, AutocastScope) {
  torch::manual_seed(0);
  torch::nn::Conv3d conv(torch::nn::Conv3dOptions(3, 4, 3));
  const auto x = torch::randn({1, 3, 4, 8, 8});
  const auto reference = conv(x);
  EXPECT_EQ(reference.scalar_type(), torch::kFloat32);
  {
    AutocastScope bf16("bf16", torch::Device("cpu"));
    const auto y = conv(x);
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::allclose(y.to(torch::kFloat32), reference, 0.05, 0.05));
    {
      AutocastScope fp32("fp32", torch::Device("cpu"));  // leaves the outer scope alone
      EXPECT_EQ(conv(x).scalar_type(), torch::kBFloat16);
    }
    EXPECT_EQ(conv(x).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(conv(x).scalar_type(), torch::kFloat32);  // restored
  EXPECT_THROW(AutocastScope("int8", torch::Device("cpu")), Error);
}

TEST(ModelBenchTest, RefusesWhatCannotRun) {
  auto expect_usage = [](const ModelBenchOptions& o, const std::string& option) {
    SCOPED_TRACE(option);
    try {
      run_model_bench(o);
      ADD_FAILURE() << "accepted";
    } catch (const UsageError& e) {
      EXPECT_THAT(e.what(), HasSubstr(option));
    }
  };
  const auto o = tiny().models({"r3d18"}).sgs_model("").python("");
  expect_usage(ModelBenchOptions(o).precision("fp16"), "--precision fp16");
  expect_usage(ModelBenchOptions(o).precision("fp16").device("cpu"), "needs a CUDA device");
  expect_usage(ModelBenchOptions(o).precision("int8"), "--precision int8");
  expect_usage(ModelBenchOptions(o).device("gpu"), "--device gpu");
  expect_usage(ModelBenchOptions(o).device("cuda:x"), "--device cuda:x");
  expect_usage(ModelBenchOptions(o).batch(0), "--batch");
  if (!torch::cuda::is_available()) expect_usage(ModelBenchOptions(o).device("cuda"), "no CUDA device");

  // The command exits 2 with the message.
  const auto r = holo::testing::run_command(holo::testing::holo_binary() +
                                            " bench model --device cpu --precision fp16 --models r3d18 2>&1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--precision fp16 needs a CUDA device"));
}

TEST(ModelBenchTest, MotionClips) {
  auto still = motion_clip(MotionKind::kStill, 0, 6, 32, 1);
  auto slow = motion_clip(MotionKind::kSlow, 0, 6, 32, 1);
  auto fast = motion_clip(MotionKind::kFast, 0, 6, 32, 1);
  EXPECT_EQ(still.sizes(), (std::vector<int64_t>{1, 3, 6, 32, 32}));
  EXPECT_TRUE(torch::equal(still, motion_clip(MotionKind::kStill, 0, 6, 32, 1)));
  EXPECT_FALSE(torch::equal(still, motion_clip(MotionKind::kStill, 1, 6, 32, 1)));
  EXPECT_GE(fast.min().item<double>(), 0);
  EXPECT_LE(fast.max().item<double>(), 1);
  auto change = [](const torch::Tensor& c) {  // mean absolute change between consecutive frames
    return (c.narrow(2, 1, c.size(2) - 1) - c.narrow(2, 0, c.size(2) - 1)).abs().mean().item<double>();
  };
  EXPECT_EQ(change(still), 0);
  EXPECT_GT(change(slow), 0);
  EXPECT_GT(change(fast), 10 * change(slow));
  // The slow square moves by one pixel: the first frames of still and slow differ nowhere.
  EXPECT_TRUE(torch::equal(still.select(2, 0), slow.select(2, 0)));
}

TEST(ModelBenchTest, SgsSpendsLessOnLowMotion) {
  // Width 0.125 leaves SGS one channel per stem filter and a single bin for every clip, so the
  // SGS part runs at width 0.25 and 16 frames (B = 16).
  auto o = tiny().width(0.25).frames(16).sgs_clips(6);
  const SgsFlops s = bench_sgs_flops(o);
  EXPECT_EQ(s.bins, 16);
  ASSERT_EQ(s.rows.size(), 3u);
  EXPECT_EQ(s.rows[0].kind, "still");
  EXPECT_TRUE(s.rows[1].low_motion);
  EXPECT_FALSE(s.rows[2].low_motion);
  for (const auto& row : s.rows) {
    SCOPED_TRACE(row.kind);
    EXPECT_GE(row.min_bins, 1);
    EXPECT_LE(row.max_bins, 16);
    EXPECT_GT(row.gflops, 0);
    EXPECT_LT(row.gflops, s.baseline_gflops);  // fewer than T bins after SGS
  }
  EXPECT_LT(s.low_bins, s.high_bins);
  EXPECT_LT(s.low_gflops, s.high_gflops);
  EXPECT_NEAR(s.low_gflops, (s.rows[0].gflops + s.rows[1].gflops) / 2, 1e-12);

  ModelBenchResult r;
  r.options = o.models({});
  r.sgs = s;
  r.has_sgs = true;
  const auto j = nlohmann::json::parse(model_bench_json(r));
  EXPECT_LT(j["sgs"]["low_gflops"].get<double>(), j["sgs"]["high_gflops"].get<double>());
  EXPECT_EQ(j["sgs"]["kinds"].size(), 3u);
  EXPECT_THAT(format_model_bench(r), HasSubstr("atfr_resnet3d (no SGS)"));
}

}  // namespace
}  // namespace holo::models
