#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "train/metrics_torch.h"

namespace holo {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

double bce(double logit, double y) {
  const double p = 1.0 / (1.0 + std::exp(-logit));
  return -(y * std::log(p) + (1 - y) * std::log(1 - p));
}

TEST(MetricsTorch, BatchesMatchPlainArrays) {
  torch::manual_seed(0);
  const auto logits = torch::randn({16, 7}, torch::kFloat64);  // converted to float inside
  const auto labels = torch::randint(0, 7, {16}, torch::kInt64);
  ClassificationMeter a(7), b(7);
  add_batch(a, logits, labels);
  const auto f = logits.to(torch::kFloat32).contiguous();
  b.add(f.data_ptr<float>(), labels.data_ptr<int64_t>(), 16);
  EXPECT_EQ(a.sums(), b.sums());
  // The view shares memory: an in-place all-reduce on it changes the meter.
  auto view = sums_view(a);
  view.mul_(2);
  EXPECT_EQ(a.count(), 32);
  EXPECT_THAT([&] { add_batch(a, logits, labels.narrow(0, 0, 3)); },
              ThrowsMessage<Error>(HasSubstr("labels must be a vector of N = 16")));
}

TEST(MetricsTorch, MaskedBceLeavesUntaggedVideosOut) {
  // Group {0, 1}: v1 has no tag of it and must add neither loss nor gradient.
  const auto targets = torch::tensor({1.f, 0.f, 0.f, 0.f, 0.f, 1.f}).view({3, 2});
  const std::vector<double> l = {0.3, -1.2, 2.0, 0.7, -0.4, 1.5};
  auto logits = torch::tensor(std::vector<float>(l.begin(), l.end())).view({3, 2});
  logits.set_requires_grad(true);
  const auto masks = category_masks(targets, {{"action", {0, 1}}});
  ASSERT_EQ(masks.size(), 1u);
  EXPECT_TRUE(torch::equal(masks[0], torch::tensor({1.f, 0.f, 1.f})));
  auto loss = masked_bce_with_logits(logits, targets, masks[0]);
  const double expected = (bce(0.3, 1) + bce(-1.2, 0) + bce(-0.4, 0) + bce(1.5, 1)) / 4;
  EXPECT_NEAR(loss.item<double>(), expected, 1e-6);
  loss.backward();
  EXPECT_EQ(logits.grad()[1].abs().sum().item<float>(), 0.0f);
  EXPECT_GT(logits.grad()[0].abs().sum().item<float>(), 0.0f);

  // No video masked in: zero loss, zero (not NaN) gradients.
  auto l2 = logits.detach().clone().set_requires_grad(true);
  auto zero = masked_bce_with_logits(l2, targets, torch::zeros({3}));
  zero.backward();
  EXPECT_EQ(zero.item<float>(), 0.0f);
  EXPECT_EQ(l2.grad().abs().sum().item<float>(), 0.0f);
}

TEST(MetricsTorch, MultitaskLossSumsHeadsAndScoresMergeBack) {
  torch::manual_seed(1);
  const std::vector<TagGroup> groups = {{"action", {3, 0}}, {"scene", {1, 4, 2}}};
  auto targets = torch::zeros({4, 5});
  targets.index_put_({0, 3}, 1);  // v0: action only
  targets.index_put_({1, 4}, 1);  // v1: scene only
  targets.index_put_({2, 0}, 1);  // v2: both
  targets.index_put_({2, 2}, 1);  // v3: nothing
  const std::vector<torch::Tensor> heads = {torch::randn({4, 2}), torch::randn({4, 3})};
  const auto loss = multitask_bce_loss(heads, targets, groups);
  const auto a = masked_bce_with_logits(heads[0], targets.index_select(1, torch::tensor({3, 0})),
                                        torch::tensor({1.f, 0.f, 1.f, 0.f}));
  const auto s = masked_bce_with_logits(
      heads[1], targets.index_select(1, torch::tensor({1, 4, 2})), torch::tensor({0.f, 1.f, 1.f, 0.f}));
  EXPECT_NEAR(loss.item<double>(), (a + s).item<double>(), 1e-6);

  const auto merged = merge_head_scores(heads, groups, 5);
  EXPECT_TRUE(torch::allclose(merged.select(1, 3), heads[0].select(1, 0).sigmoid()));
  EXPECT_TRUE(torch::allclose(merged.select(1, 2), heads[1].select(1, 2).sigmoid()));
  EXPECT_THAT([&] { multitask_bce_loss({heads[1], heads[0]}, targets, groups); },
              ThrowsMessage<Error>(HasSubstr("head 'action' has 3 outputs for 2 tags")));

  MultiLabelMeter meter(5);
  add_batch(meter, merged, targets);
  EXPECT_EQ(meter.count(), 4);
}

}  // namespace
}  // namespace holo
