// The gradient reducer under mpiexec (2 and 3 ranks): data-parallel training equals one process
// on the whole batch, bucketing, accumulation without communication, parameters without
// gradients, and the module broadcast / buffer averaging.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "core/error.h"
#include "dist/reducer.h"
#include "tests/dist/dist_env.h"

namespace holo::dist {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

torch::nn::Sequential make_mlp() {
  return torch::nn::Sequential(torch::nn::Linear(6, 32), torch::nn::Tanh(),
                               torch::nn::Linear(32, 32), torch::nn::Tanh(),
                               torch::nn::Linear(32, 5));
}

torch::nn::Sequential clone_of(const torch::nn::Sequential& m) {
  return torch::nn::Sequential(std::dynamic_pointer_cast<torch::nn::SequentialImpl>(m->clone()));
}

/// Largest absolute difference between two modules' parameters.
double max_difference(torch::nn::Module& a, torch::nn::Module& b) {
  const auto pa = a.parameters(), pb = b.parameters();
  double d = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    d = std::max(d, (pa[i] - pb[i]).abs().max().item<double>());
  }
  return d;
}

/// True when `t` is the same on every rank.
bool same_everywhere(Communicator& comm, const torch::Tensor& t) {
  const auto all = comm.all_gather(t.detach().contiguous());
  for (const auto& x : all) {
    if (!x.equal(all[0])) return false;
  }
  return true;
}

class DataParallel : public ::testing::TestWithParam<std::tuple<double, bool>> {};

TEST_P(DataParallel, EqualsOneProcessOnTheWholeBatch) {
  auto comm = test_comm();
  const int r = comm->rank(), s = comm->size();
  const auto [bucket_mb, overlap] = GetParam();
  constexpr int kSteps = 6, kBatch = 4;
  torch::manual_seed(100 + r);  // different start on every rank: the broadcast must fix it
  auto model = make_mlp();
  EXPECT_FALSE(same_everywhere(*comm, model->parameters()[0]));
  broadcast_module(*model, *comm);
  for (const auto& p : model->parameters()) ASSERT_TRUE(same_everywhere(*comm, p));
  auto reference = clone_of(model);  // one process that sees the whole batch
  auto start = clone_of(model);

  GradientReducer reducer(model->parameters(), comm,
                          ReducerOptions().bucket_mb(bucket_mb).overlap(overlap));
  EXPECT_GT(reducer.bucket_layout().size(), bucket_mb < 1 ? 1u : 0u);
  auto sgd = torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-3);
  torch::optim::SGD opt(model->parameters(), sgd), ref_opt(reference->parameters(), sgd);
  for (int step = 0; step < kSteps; ++step) {
    torch::manual_seed(1000 + step);  // the same global batch on every rank
    const auto x = torch::randn({s * kBatch, 6});
    const auto y = torch::randint(0, 5, {s * kBatch}, torch::kLong);
    opt.zero_grad();
    reducer.prepare_for_backward();
    torch::nn::functional::cross_entropy(model->forward(x.narrow(0, r * kBatch, kBatch)),
                                         y.narrow(0, r * kBatch, kBatch))
        .backward();
    reducer.finish();
    opt.step();
    ref_opt.zero_grad();
    torch::nn::functional::cross_entropy(reference->forward(x), y).backward();
    ref_opt.step();
  }
  EXPECT_LT(max_difference(*model, *reference), 2e-5);
  EXPECT_GT(max_difference(*model, *start), 1e-3);  // training moved the weights
  for (const auto& p : model->parameters()) EXPECT_TRUE(same_everywhere(*comm, p));
  EXPECT_EQ(reducer.stats().steps, kSteps);
  if (overlap) {
    // Every bucket had all its gradients during backward: none waited for finish().
    EXPECT_EQ(reducer.stats().buckets_in_finish, 0);
    EXPECT_EQ(reducer.stats().buckets_in_backward,
              kSteps * static_cast<int64_t>(reducer.bucket_layout().size()));
  } else {
    EXPECT_EQ(reducer.stats().buckets_in_backward, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(BucketsAndOverlap, DataParallel,
                         ::testing::Combine(::testing::Values(0.002, 25.0),
                                            ::testing::Values(true, false)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) < 1 ? "SmallBuckets"
                                                                          : "OneBucket") +
                                  (std::get<1>(info.param) ? "Overlapped" : "AfterBackward");
                         });

TEST(Reducer, AccumulationCommunicatesOnlyOnTheLastMicroStep) {
  auto comm = test_comm();
  const int r = comm->rank(), s = comm->size();
  constexpr int kSteps = 3, kMicro = 3, kBatch = 2;
  torch::manual_seed(5);
  auto model = make_mlp();
  auto reference = clone_of(model);
  GradientReducer reducer(model->parameters(), comm, ReducerOptions().bucket_mb(0.004));
  torch::optim::SGD opt(model->parameters(), 0.05), ref_opt(reference->parameters(), 0.05);
  for (int step = 0; step < kSteps; ++step) {
    torch::manual_seed(2000 + step);
    const auto x = torch::randn({kMicro, s * kBatch, 6});
    const auto y = torch::randint(0, 5, {kMicro, s * kBatch}, torch::kLong);
    opt.zero_grad();
    ref_opt.zero_grad();
    for (int m = 0; m < kMicro; ++m) {
      reducer.prepare_for_backward(m == kMicro - 1);
      torch::nn::functional::cross_entropy(model->forward(x[m].narrow(0, r * kBatch, kBatch)),
                                           y[m].narrow(0, r * kBatch, kBatch))
          .backward();
      if (m < kMicro - 1) {
        // Local accumulation: each rank still holds the gradient of its own samples.
        EXPECT_FALSE(same_everywhere(*comm, model->parameters()[0].grad()));
      }
      torch::nn::functional::cross_entropy(reference->forward(x[m]), y[m]).backward();
    }
    reducer.finish();
    opt.step();
    ref_opt.step();
  }
  EXPECT_LT(max_difference(*model, *reference), 2e-5);
  EXPECT_EQ(reducer.stats().steps, kSteps);
}

/// 200 small parameters with one huge one in the middle.
struct ManyParams : torch::nn::Module {
  ManyParams() {
    for (int i = 0; i < 201; ++i) {
      params.push_back(register_parameter("p" + std::to_string(i),
                                          torch::zeros({i == 100 ? 3000001 : 3})));
    }
  }
  std::vector<torch::Tensor> params;
};

/// Every parameter exactly once, in reverse order, buckets within the limit unless alone.
void expect_valid_layout(const std::vector<std::vector<int64_t>>& layout,
                         const std::vector<torch::Tensor>& params, double bucket_mb) {
  std::vector<int64_t> order;
  for (const auto& b : layout) {
    int64_t bytes = 0;
    for (int64_t i : b) {
      order.push_back(i);
      bytes += params[i].numel() * 4;
    }
    if (b.size() > 1) EXPECT_LE(bytes, bucket_mb * 1024 * 1024);
  }
  ASSERT_EQ(order.size(), params.size());
  for (size_t k = 0; k < order.size(); ++k) {
    EXPECT_EQ(order[k], static_cast<int64_t>(params.size() - 1 - k));
  }
}

TEST(Reducer, ManySmallAndOneHugeParameter) {
  auto comm = test_comm();
  const int r = comm->rank(), s = comm->size();
  ManyParams m;
  {
    GradientReducer tiny(m.params, comm, ReducerOptions().bucket_mb(24.0 / (1024 * 1024)));
    const auto layout = tiny.bucket_layout();
    expect_valid_layout(layout, m.params, 24.0 / (1024 * 1024));
    EXPECT_EQ(layout.size(), 101u);  // pairs of small ones, and the huge one alone
  }
  GradientReducer reducer(m.params, comm, ReducerOptions().bucket_mb(1.0));
  const auto layout = reducer.bucket_layout();
  expect_valid_layout(layout, m.params, 1.0);
  ASSERT_EQ(layout.size(), 3u);
  EXPECT_EQ(layout[1], std::vector<int64_t>{100});
  for (int step = 0; step < 2; ++step) {
    for (auto& p : m.params) p.mutable_grad() = torch::Tensor();
    reducer.prepare_for_backward();
    torch::Tensor loss = torch::zeros({});
    for (size_t i = 0; i < m.params.size(); ++i) {
      loss = loss + m.params[i].sum() * static_cast<double>((r + 1) * (i + 1 + step));
    }
    loss.backward();
    reducer.finish();
    for (size_t i = 0; i < m.params.size(); ++i) {
      const double want = (s + 1) / 2.0 * static_cast<double>(i + 1 + step);
      ASSERT_TRUE(m.params[i].grad().defined());
      EXPECT_TRUE(torch::allclose(m.params[i].grad(), torch::full_like(m.params[i], want), 1e-6))
          << "parameter " << i << " step " << step;
    }
  }
}

/// A trunk with three heads; a step uses some of them.
struct Heads : torch::nn::Module {
  Heads()
      : trunk(register_module("trunk", torch::nn::Linear(4, 8))),
        a(register_module("a", torch::nn::Linear(8, 3))),
        b(register_module("b", torch::nn::Linear(8, 3))),
        c(register_module("c", torch::nn::Linear(8, 3))) {}
  torch::Tensor loss(const torch::Tensor& x, bool use_a, bool use_b) {
    auto h = torch::relu(trunk(x));
    torch::Tensor l = torch::zeros({});
    if (use_a) l = l + a(h).pow(2).mean();
    if (use_b) l = l + b(h).pow(2).mean();
    return l;
  }
  torch::nn::Linear trunk, a, b, c;
};

TEST(Reducer, HeadsWithoutGradientDoNotDeadlock) {
  auto comm = test_comm();
  const int r = comm->rank(), s = comm->size();
  torch::manual_seed(9);
  Heads model;
  Heads local;  // same weights, no reducer: the per-rank gradients to average by hand
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < model.parameters().size(); ++i) {
      local.parameters()[i].copy_(model.parameters()[i]);
    }
  }
  GradientReducer reducer(model.parameters(), comm, ReducerOptions().bucket_mb(0.0002));
  for (int step = 0; step < 3; ++step) {
    // Step 0: even ranks use head a, odd ranks head b. Step 1: swapped. Step 2: only a.
    const bool use_a = step == 2 || (r % 2 == 0) == (step == 0);
    const bool use_b = step != 2 && !use_a;
    for (auto* m : {&model, &local}) {
      for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
    }
    torch::manual_seed(300 + step * 10 + r);
    const auto x = torch::randn({5, 4});
    reducer.prepare_for_backward();
    model.loss(x, use_a, use_b).backward();
    reducer.finish();
    local.loss(x, use_a, use_b).backward();
    const auto mp = model.named_parameters(), lp = local.named_parameters();
    for (const auto& item : lp) {
      const auto& name = item.key();
      auto want = item.value().grad().defined() ? item.value().grad().clone()
                                                : torch::zeros_like(item.value());
      comm->all_reduce(want, ReduceOp::kAvg);
      const bool anywhere = (name[0] == 'a') || (name[0] == 'b' && step != 2) || name[0] == 't';
      const auto& got = mp[name].grad();
      if (!anywhere) {
        // No rank produced one: the gradient stays undefined, as in one process.
        EXPECT_FALSE(got.defined()) << name << " step " << step;
        continue;
      }
      ASSERT_TRUE(got.defined()) << name << " step " << step;
      EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-7)) << name << " step " << step;
    }
  }
  EXPECT_EQ(reducer.stats().steps, 3);
  EXPECT_GT(reducer.stats().buckets_in_finish, 0);  // the head buckets waited for finish()
  (void)s;
}

TEST(Reducer, SecondBackwardInOneSynchronisedPassIsAnError) {
  auto comm = test_comm();
  auto w = torch::ones({3}, torch::requires_grad());
  GradientReducer reducer({w}, comm);
  reducer.prepare_for_backward();
  (w * 2).sum().backward();
  EXPECT_THAT([&] { (w * 3).sum().backward(); },
              ThrowsMessage<std::exception>(HasSubstr("second gradient")));
  reducer.finish();  // every rank still completes the pass together
  EXPECT_THAT([&] { reducer.finish(); },
              ThrowsMessage<Error>(HasSubstr("without a synchronised pass")));
  reducer.prepare_for_backward();
  EXPECT_THAT([&] { reducer.prepare_for_backward(); },
              ThrowsMessage<Error>(HasSubstr("before finish()")));
  reducer.finish();
}

TEST(Modules, BroadcastCopiesParametersAndBuffersFromRoot) {
  auto comm = test_comm();
  const int r = comm->rank(), s = comm->size();
  torch::manual_seed(50 + r);
  torch::nn::BatchNorm1d bn(4);
  {
    torch::NoGradGuard g;
    bn->running_mean.fill_(static_cast<float>(r));
  }
  broadcast_module(*bn, *comm, s - 1);
  EXPECT_TRUE(bn->running_mean.equal(torch::full({4}, static_cast<float>(s - 1))));
  for (const auto& p : bn->parameters()) EXPECT_TRUE(same_everywhere(*comm, p));
}

TEST(Modules, AverageBuffersSynchronisesBatchNormStatistics) {
  auto comm = test_comm();
  const int r = comm->rank(), s = comm->size();
  torch::nn::BatchNorm3d bn(3);
  {
    torch::NoGradGuard g;
    bn->running_mean.fill_(static_cast<float>(r));
    bn->running_var.fill_(static_cast<float>(r + 1));
    bn->num_batches_tracked.fill_(10 + r);
  }
  average_buffers(*bn, *comm);
  EXPECT_TRUE(torch::allclose(bn->running_mean, torch::full({3}, (s - 1) / 2.0f)));
  EXPECT_TRUE(torch::allclose(bn->running_var, torch::full({3}, (s + 1) / 2.0f)));
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 10 + r);  // integers left alone
}

TEST(Reducer, OneRankLeavesGradientsAsTheyAre) {
  auto self = std::make_shared<SelfCommunicator>();
  auto w = torch::arange(4, torch::kFloat).requires_grad_();
  auto unused = torch::ones({2}, torch::requires_grad());
  GradientReducer reducer({w, unused}, self);
  reducer.prepare_for_backward();
  (w * w).sum().backward();
  reducer.finish();
  EXPECT_TRUE(w.grad().equal(2 * torch::arange(4, torch::kFloat)));
  EXPECT_FALSE(unused.grad().defined());
}

}  // namespace
}  // namespace holo::dist
