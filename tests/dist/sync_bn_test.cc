// Synchronised BatchNorm under mpiexec (2 and 3 ranks): a conv + BatchNorm network trained on
// b samples per rank, with the gradient reducer, equals one process on the s*b samples (outputs,
// gradients, weights, running statistics); without synchronisation it does not. Also ranks with
// different batch sizes, eval mode, checkpoint names and the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "core/error.h"
#include "dist/reducer.h"
#include "dist/sync_batch_norm.h"
#include "models/batch_norm.h"
#include "tests/dist/dist_env.h"

namespace holo::dist {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

/// Calls its BatchNorm members directly, as the networks in models/ do: the layers must be
/// swapped in place, not replaced in the module tree.
struct NetImpl : torch::nn::Module {
  NetImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)))),
        bn1(register_module("bn1", models::BatchNorm2d(8))),
        conv2(register_module("conv2", torch::nn::Conv3d(torch::nn::Conv3dOptions(8, 6, {1, 3, 3}).stride(2)))),
        bn2(register_module("bn2", models::BatchNorm3d(torch::nn::BatchNormOptions(6).momentum(c10::nullopt)))),
        bn3(register_module("bn3", models::BatchNorm1d(torch::nn::BatchNormOptions(6).momentum(0.3)))),
        fc(register_module("fc", torch::nn::Linear(6, 3))) {}

  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::relu(bn1(conv1(x)));                            // (N, 8, 8, 8)
    h = torch::relu(bn2(conv2(h.unsqueeze(2))));                    // (N, 6, 1, 3, 3)
    return fc(bn3(h.mean({2, 3, 4})));                              // (N, 6) -> (N, 3)
  }

  torch::nn::Conv2d conv1;
  models::BatchNorm2d bn1;
  torch::nn::Conv3d conv2;
  models::BatchNorm3d bn2;
  models::BatchNorm1d bn3;
  torch::nn::Linear fc;
};
TORCH_MODULE(Net);

Net make_net() {
  torch::manual_seed(7);  // the same weights on every rank and in the reference
  Net net;
  torch::NoGradGuard no_grad;
  // Affine parameters away from 1 and 0, so that a wrong weight or bias gradient shows.
  for (auto* bn : {&net->bn1->weight, &net->bn2->weight, &net->bn3->weight}) bn->uniform_(0.5, 1.5);
  for (auto* bn : {&net->bn1->bias, &net->bn2->bias, &net->bn3->bias}) bn->uniform_(-0.5, 0.5);
  return net;
}

models::BatchNormTraining synchronised(const std::shared_ptr<Communicator>& comm) {
  return [comm](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                const torch::Tensor& rm, const torch::Tensor& rv, double factor, double eps) {
    return sync_batch_norm(x, w, b, rm, rv, factor, eps, comm);
  };
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

/// A communicator for the BatchNorm collectives, apart from the reducer's (collective).
std::shared_ptr<Communicator> bn_comm() { return make_communicator(DistOptions{}, torch::kCPU); }

struct Differences {
  double output = 0, grad = 0, weights = 0, buffers = 0;
  bool buffers_agree = true;  ///< running statistics equal on every rank
};

/// Trains `steps` SGD steps on s*b samples: each rank on its b with the reducer (BatchNorm
/// synchronised or not), and a reference on all of them in one process; returns the largest
/// differences between the two.
Differences train_against_one_process(bool sync, int steps) {
  auto comm = test_comm();
  const int r = comm->rank(), s = comm->size();
  constexpr int kBatch = 3;
  auto net = make_net();
  auto reference = make_net();
  if (sync) EXPECT_EQ(models::set_batch_norm_training(*net, synchronised(bn_comm())), 3);
  GradientReducer reducer(net->parameters(), comm, ReducerOptions().bucket_mb(0.001));
  auto sgd = torch::optim::SGDOptions(0.2).momentum(0.9);
  torch::optim::SGD opt(net->parameters(), sgd), ref_opt(reference->parameters(), sgd);
  Differences d;
  for (int step = 0; step < steps; ++step) {
    torch::manual_seed(500 + step);  // the same global batch on every rank
    const auto x = torch::randn({s * kBatch, 3, 8, 8}) * 2 + 0.5;
    const auto y = torch::randint(0, 3, {s * kBatch}, torch::kLong);
    opt.zero_grad();
    reducer.prepare_for_backward();
    const auto out = net->forward(x.narrow(0, r * kBatch, kBatch));
    torch::nn::functional::cross_entropy(out, y.narrow(0, r * kBatch, kBatch)).backward();
    reducer.finish();
    ref_opt.zero_grad();
    const auto ref_out = reference->forward(x);
    torch::nn::functional::cross_entropy(ref_out, y).backward();
    d.output = std::max(d.output, max_abs(out, ref_out.narrow(0, r * kBatch, kBatch)));
    const auto p = net->parameters(), q = reference->parameters();
    for (size_t i = 0; i < p.size(); ++i) d.grad = std::max(d.grad, max_abs(p[i].grad(), q[i].grad()));
    opt.step();
    ref_opt.step();
  }
  const auto p = net->parameters(), q = reference->parameters();
  for (size_t i = 0; i < p.size(); ++i) d.weights = std::max(d.weights, max_abs(p[i], q[i]));
  const auto b = net->named_buffers(), c = reference->named_buffers();
  for (const auto& item : b) {
    d.buffers = std::max(d.buffers, max_abs(item.value(), c[item.key()]));
    const auto all = comm->all_gather(item.value().contiguous());
    for (const auto& t : all) d.buffers_agree = d.buffers_agree && t.equal(all[0]);
  }
  // Eval mode: plain BatchNorm with the running statistics, no collective.
  net->eval();
  reference->eval();
  torch::NoGradGuard no_grad;
  torch::manual_seed(99);
  const auto x = torch::randn({2, 3, 8, 8});
  d.output = std::max(d.output, max_abs(net->forward(x), reference->forward(x)));
  return d;
}

TEST(SyncBatchNorm, EqualsOneProcessOnTheWholeBatch) {
  const auto d = train_against_one_process(/*sync=*/true, /*steps=*/4);
  EXPECT_LT(d.output, 1e-4);
  EXPECT_LT(d.grad, 1e-4);
  EXPECT_LT(d.weights, 1e-4);
  EXPECT_LT(d.buffers, 1e-4);
  EXPECT_TRUE(d.buffers_agree);
}

TEST(SyncBatchNorm, WithoutItEachRankNormalisesWithItsOwnStatistics) {
  const auto d = train_against_one_process(/*sync=*/false, /*steps=*/4);
  EXPECT_GT(d.output, 1e-2);
  EXPECT_GT(d.grad, 1e-3);
  EXPECT_GT(d.buffers, 1e-3);
  EXPECT_FALSE(d.buffers_agree);
}

TEST(SyncBatchNorm, RanksWithDifferentBatchSizes) {
  // Rank r holds r + 1 samples. The outputs and running statistics are those of one process on
  // the concatenation, and the gradients of a summed loss, summed over the ranks, are too.
  auto comm = test_comm();
  const int r = comm->rank(), s = comm->size();
  const int total = s * (s + 1) / 2, first = r * (r + 1) / 2;
  auto net = make_net();
  auto reference = make_net();
  models::set_batch_norm_training(*net, synchronised(bn_comm()));
  torch::manual_seed(31);
  const auto x = torch::randn({total, 3, 8, 8});
  const auto w = torch::randn({total, 3});
  const auto out = net->forward(x.narrow(0, first, r + 1));
  (out * w.narrow(0, first, r + 1)).sum().backward();
  const auto ref_out = reference->forward(x);
  (ref_out * w).sum().backward();
  EXPECT_LT(max_abs(out, ref_out.narrow(0, first, r + 1)), 1e-4);
  const auto p = net->named_parameters(), q = reference->named_parameters();
  for (const auto& item : p) {
    auto g = item.value().grad().clone();
    comm->all_reduce(g, ReduceOp::kSum);
    EXPECT_LT(max_abs(g, q[item.key()].grad()), 1e-3) << item.key();
  }
  for (const auto& item : net->named_buffers()) {
    EXPECT_LT(max_abs(item.value(), reference->named_buffers()[item.key()]), 1e-5) << item.key();
  }
}

TEST(SyncBatchNorm, KeepsTorchNamesAndRefusesPlainTorchLayers) {
  // Checkpoints see an ordinary BatchNorm.
  models::BatchNorm3d ours(4);
  torch::nn::BatchNorm3d theirs(4);
  EXPECT_EQ(ours->named_parameters().keys(), theirs->named_parameters().keys());
  EXPECT_EQ(ours->named_buffers().keys(), theirs->named_buffers().keys());
  std::ostringstream printed;
  printed << *ours;
  EXPECT_EQ(printed.str(), "holo::models::BatchNorm3d(4, eps=1e-05, momentum=0.1, affine=true, "
                           "track_running_stats=true)");

  torch::nn::Sequential seq(models::BatchNorm2d(3), torch::nn::ReLU(), torch::nn::BatchNorm2d(3));
  EXPECT_THAT([&] { models::set_batch_norm_training(*seq, synchronised(test_comm())); },
              ThrowsMessage<UsageError>(HasSubstr("BatchNorm layer '2' is a plain torch::nn BatchNorm")));
}

TEST(SyncBatchNorm, OneValuePerChannelIsAnError) {
  auto self = std::make_shared<SelfCommunicator>();
  EXPECT_THAT([&] { sync_batch_norm(torch::randn({1, 3}), {}, {}, {}, {}, 0.1, 1e-5, self); },
              ThrowsMessage<UsageError>(HasSubstr("more than 1 value per channel")));
  // One process: exactly torch's batch_norm, affine and running statistics included.
  auto x = torch::randn({5, 3, 4}, torch::requires_grad());
  auto w = torch::rand({3}, torch::requires_grad()), b = torch::randn({3}, torch::requires_grad());
  auto rm = torch::zeros({3}), rv = torch::ones({3}), rm2 = rm.clone(), rv2 = rv.clone();
  const auto g = torch::randn({5, 3, 4});
  const auto y = sync_batch_norm(x, w, b, rm, rv, 0.1, 1e-5, self);
  const auto gx = torch::autograd::grad({y}, {x, w, b}, {g});
  const auto y2 = torch::batch_norm(x, w, b, rm2, rv2, true, 0.1, 1e-5, false);
  const auto gx2 = torch::autograd::grad({y2}, {x, w, b}, {g});
  EXPECT_LT(max_abs(y, y2), 1e-5);
  for (size_t i = 0; i < 3; ++i) EXPECT_LT(max_abs(gx[i], gx2[i]), 1e-4) << i;
  EXPECT_LT(max_abs(rm, rm2), 1e-6);
  EXPECT_LT(max_abs(rv, rv2), 1e-6);
}

}  // namespace
}  // namespace holo::dist
