// Transformers and token reduction (chapter 7): ATS's scores and sampling on hand-made inputs,
// ToMe's matching on hand-made tokens, padded batches against single samples, gradients, the
// per-clip costs against the FLOP recorder, the published sizes and costs, and DeiT, TimeSformer
// and XViT against their PyTorch twins (bench/transformer_baseline.py), timm names included.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/recipe.h"
#include "models/flops.h"
#include "models/network.h"
#include "models/resnet2d.h"
#include "models/token_reduction.h"
#include "models/transformer.h"
#include "models/weights.h"
#include "tests/test_util.h"

namespace holo::models {
namespace {

using ::testing::HasSubstr;

std::string python() { return "/usr/bin/python3 " + holo::testing::source_dir() + "/bench/model_baseline.py"; }

class TransformerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    torch::set_num_threads(2);
  }
};

std::vector<int64_t> kept_tokens(const AtsSample& s, int64_t row = 0) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < s.index.size(1); ++i) {
    if (s.valid[row][i].item<bool>()) out.push_back(s.index[row][i].item<int64_t>());
  }
  return out;
}

torch::Tensor row(std::vector<double> v) { return torch::tensor(v, torch::kFloat64).unsqueeze(0); }

// ---- ATS: scores ------------------------------------------------------------------------------

TEST_F(TransformerTest, AtsScoresPerHeadTimesValueNormThenSummed) {
  // Two heads, CLS and three tokens. Head 0 attends to token 1 and 2 equally, head 1 to token 3.
  auto attn = torch::tensor({{{0.4, 0.3, 0.3, 0.0}, {0.5, 0.0, 0.0, 0.5}}}, torch::kFloat64);  // 1 x 2 x 4
  auto v = torch::zeros({1, 2, 4, 2}, torch::kFloat64);
  v[0][0][1] = torch::tensor({3.0, 4.0});  // ||V|| 5
  v[0][0][2] = torch::tensor({1.0, 0.0});  // 1
  v[0][0][3] = torch::tensor({2.0, 0.0});
  v[0][1][3] = torch::tensor({0.0, 2.0});
  auto s = ats_scores(attn, v, AtsVariant::kThesis);
  // Head 0: 0.3*5, 0.3*1, 0 -> 5/6, 1/6, 0; head 1: 0, 0, 1 -> summed / 2.
  ASSERT_EQ(s.sizes(), (std::vector<int64_t>{1, 3}));
  EXPECT_NEAR(s[0][0].item<double>(), 5.0 / 12, 1e-12);
  EXPECT_NEAR(s[0][1].item<double>(), 1.0 / 12, 1e-12);
  EXPECT_NEAR(s[0][2].item<double>(), 0.5, 1e-12);
  // The release: summed attention (0.3, 0.3, 0.5) times the norm over both heads (5, 1, sqrt 8).
  auto r = ats_scores(attn, v, AtsVariant::kRelease);
  const double a = 0.3 * 5, b = 0.3 * 1, c = 0.5 * std::sqrt(8.0), sum = a + b + c;
  EXPECT_NEAR(r[0][0].item<double>(), a / sum, 1e-12);
  EXPECT_NEAR(r[0][1].item<double>(), b / sum, 1e-12);
  EXPECT_NEAR(r[0][2].item<double>(), c / sum, 1e-12);
}

// ---- ATS: sampling ---------------------------------------------------------------------------

TEST_F(TransformerTest, AtsSamplesTheNearestCdfValueOfEachFixedPoint) {
  // CDF 0.1, 0.3, 0.6, 1.0; points 1/8, 3/8, 5/8, 7/8 -> tokens 0, 1, 2, 3.
  auto s = ats_sample(row({0.1, 0.2, 0.3, 0.4}), 4, AtsVariant::kThesis);
  EXPECT_EQ(kept_tokens(s), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(s.kept[0].item<int64_t>(), 4);
  // One dominant token: CDF 0.01, 0.98, 0.99, 1 -> 1/8 and 3/8 go to token 0, 5/8 and 7/8 to 1.
  auto d = ats_sample(row({0.01, 0.97, 0.01, 0.01}), 4, AtsVariant::kThesis);
  EXPECT_EQ(kept_tokens(d), (std::vector<int64_t>{0, 1}));
  // Two points: 1/4 is nearest to 0.3 (token 1), 3/4 to 0.6 (token 2).
  auto two = ats_sample(row({0.1, 0.2, 0.3, 0.4}), 2, AtsVariant::kThesis);
  EXPECT_EQ(kept_tokens(two), (std::vector<int64_t>{1, 2}));
}

TEST_F(TransformerTest, AtsKeepsCloseToKTokensOfUniformScoresAndAllOfThemWithKAboveN) {
  const int64_t n = 196;
  auto uniform = torch::full({1, n}, 1.0 / n, torch::kFloat64);
  for (int64_t k : {8, 50, 100, 150}) {
    const int64_t kept = ats_sample(uniform, k, AtsVariant::kThesis).kept[0].item<int64_t>();
    EXPECT_LE(kept, k);
    EXPECT_GE(kept, k - 1) << "K = " << k;
  }
  // K = N + 1 (197, as DeiT-S trains, §7.3.4.1) keeps every token of scores within 0.2% of
  // uniform, and K = 2N every token of scores within 5%.
  auto within = [&](double spread) {
    auto s = torch::full({1, n}, 1.0, torch::kFloat64) + spread * (2 * torch::rand({1, n}, torch::kFloat64) - 1);
    return s / s.sum();
  };
  EXPECT_EQ(ats_sample(uniform, n + 1, AtsVariant::kThesis).kept[0].item<int64_t>(), n);
  EXPECT_EQ(ats_sample(within(0.002), n + 1, AtsVariant::kThesis).kept[0].item<int64_t>(), n);
  EXPECT_EQ(ats_sample(within(0.05), 2 * n, AtsVariant::kThesis).kept[0].item<int64_t>(), n);
  // A token with a tiny score can still be dropped at K = N + 1: CDF 0.3, 0.3, 0.6, 1 and
  // points 0.1, 0.3, 0.5, 0.7, 0.9 never reach token 1.
  auto s = ats_sample(row({0.3, 1e-6, 0.3, 0.4}), 5, AtsVariant::kThesis);
  EXPECT_EQ(kept_tokens(s), (std::vector<int64_t>{0, 2, 3}));
}

TEST_F(TransformerTest, AtsReleaseVariantSortsScoresAndKeepsScoreOrder) {
  // Sorted: 0.1 (token 1), 0.2 (3), 0.3 (2), 0.4 (0); CDF min-max normalised 0, 2/9, 5/9, 1;
  // points from 2/9 to 1: 2/9 -> token 3, 0.48 and 0.74 -> token 2, 1 -> token 0. The smallest
  // score's token is never taken (its normalised CDF is 0).
  auto s = ats_sample(row({0.4, 0.1, 0.3, 0.2}), 4, AtsVariant::kRelease);
  EXPECT_EQ(kept_tokens(s), (std::vector<int64_t>{3, 2, 0}));
  // The thesis keeps token order.
  auto t = ats_sample(row({0.4, 0.1, 0.3, 0.2}), 8, AtsVariant::kThesis);
  EXPECT_EQ(kept_tokens(t), (std::vector<int64_t>{0, 1, 2, 3}));
}

TEST_F(TransformerTest, AtsBatchRowsArePaddedToTheLargestKeptCount) {
  auto scores = torch::cat({row({0.1, 0.2, 0.3, 0.4}), row({0.01, 0.97, 0.01, 0.01})});
  auto s = ats_sample(scores, 4, AtsVariant::kThesis);
  EXPECT_EQ(s.index.size(1), 4);
  EXPECT_EQ(s.kept[0].item<int64_t>(), 4);
  EXPECT_EQ(s.kept[1].item<int64_t>(), 2);
  EXPECT_EQ(kept_tokens(s, 1), (std::vector<int64_t>{0, 1}));
  EXPECT_FALSE(s.valid[1][2].item<bool>());
  // Per-row budgets give each row its own points.
  auto per_row = ats_sample(scores, torch::tensor({2, 4}, torch::kLong), AtsVariant::kThesis);
  EXPECT_EQ(per_row.kept[0].item<int64_t>(), 2);
  EXPECT_EQ(kept_tokens(per_row, 1), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(ats_budget(0, 0.5, 197), 99);
  EXPECT_EQ(ats_budget(0, 0.01, 197), 8);
  EXPECT_EQ(ats_budget(50, 0, 197), 50);
  EXPECT_EQ(ats_budget(0, 0, 197), 197);
}

// ---- ToMe ------------------------------------------------------------------------------------

TEST_F(TransformerTest, TomeMergesTheMostSimilarPairAndWeighsBySize) {
  // Tokens: 0 CLS, 1 and 2 identical, 3 and 4 close. A = {0, 2, 4}, B = {1, 3}.
  auto metric = torch::tensor({{{1.0, 0.0}, {0.0, 1.0}, {0.0, 1.0}, {1.0, 0.0}, {1.0, 0.1}}});
  auto m = tome_match(metric, 1, torch::Tensor(), /*protect_first=*/true);
  ASSERT_EQ(m.r, 1);
  EXPECT_EQ(m.source[0][0][0].item<int64_t>(), 1);  // A index 1 = token 2
  EXPECT_EQ(m.target[0][0][0].item<int64_t>(), 0);  // B index 0 = token 1
  auto x = torch::arange(5, torch::kFloat32).view({1, 5, 1}) * 10;  // token i holds 10 i
  auto [merged, sizes] = tome_merge_weighted(m, x, torch::Tensor());
  // [CLS, token 4, (token 1 + token 2) / 2, token 3]
  EXPECT_TRUE(torch::equal(merged.view({4}), torch::tensor({0.0f, 40.0f, 15.0f, 30.0f})));
  EXPECT_TRUE(torch::equal(sizes.view({4}), torch::tensor({1.0f, 1.0f, 2.0f, 1.0f})));
  // With r = 2, token 4 merges into token 3 as well; sizes weigh the next merge.
  auto m2 = tome_match(metric, 2, torch::Tensor(), true);
  auto [merged2, sizes2] = tome_merge_weighted(m2, x, torch::tensor({{1.0f, 1.0f, 3.0f, 1.0f, 1.0f}}));
  EXPECT_TRUE(torch::allclose(merged2.view({3}), torch::tensor({0.0f, (10.0f + 60.0f) / 4, 35.0f})));
  EXPECT_TRUE(torch::equal(sizes2.view({3}), torch::tensor({1.0f, 4.0f, 2.0f})));
  // The CLS token is never merged, and r is clipped to (n - 1) / 2.
  EXPECT_EQ(tome_match(metric, 10, torch::Tensor(), true).r, 2);
}

// ---- the networks ----------------------------------------------------------------------------

holo::ModelOptions small(const std::string& family, int64_t depth = 3) {
  holo::ModelOptions o;
  o.name = family;
  o.depth = depth;
  o.embed_dim = 32;
  o.num_heads = 2;
  o.patch_size = 8;
  o.image_size = 32;  // 16 positions
  o.frames = 4;
  o.dropout = 0;
  return o;
}

/// Makes attention peaked, so that ATS keeps different numbers of tokens per sample.
void sharpen(NetworkImpl& net, double factor) {
  torch::NoGradGuard no_grad;
  for (auto& p : net.named_parameters()) {
    if (p.key().find("attn.qkv.weight") != std::string::npos) p.value().mul_(factor);
  }
}

TEST_F(TransformerTest, PublishedSizesAndCosts) {
  holo::ModelOptions o;
  o.name = "deit_s";
  o.frames = 1;
  auto deit_s = build_network(o, {1000});
  EXPECT_EQ(count_parameters(*deit_s), 22050664);  // DeiT-S, 22.05M
  o.name = "deit_ti";
  EXPECT_NEAR(count_parameters(*build_network(o, {1000})) / 1e6, 5.7, 0.05);
  o.name = "deit_b";
  EXPECT_NEAR(count_parameters(*build_network(o, {1000})) / 1e6, 86.6, 0.05);
  {
    torch::NoGradGuard no_grad;
    deit_s->eval();
    FlopRecorder rec;
    deit_s->forward_all(torch::zeros({1, 3, 1, 224, 224}));
    rec.finish();
    EXPECT_NEAR(rec.total_macs() / 1e9, 4.6, 0.05);  // Table 7.6: DeiT-S 4.6 GFLOPs
  }
  o.name = "timesformer_b";
  o.frames = 8;
  EXPECT_NEAR(count_parameters(*build_network(o, {400})) / 1e6, 121.4, 0.3);  // Bertasius et al.: 121.4M
  // Its cost, from networks of its width with one and two blocks (a whole one takes minutes
  // here): Bertasius et al. give 0.59 TFLOPs for 3 views of 8 x 224^2, 196 GFLOPs each.
  auto macs_with_blocks = [](int64_t blocks) {
    holo::ModelOptions b;
    b.name = "timesformer";
    b.depth = blocks;
    b.embed_dim = 768;
    b.num_heads = 12;
    b.frames = 8;
    auto net = build_network(b, {400});
    torch::NoGradGuard no_grad;
    net->eval();
    FlopRecorder rec;
    net->forward_all(torch::zeros({1, 3, 8, 224, 224}));
    rec.finish();
    return rec.total_macs();
  };
  const double one = macs_with_blocks(1), two = macs_with_blocks(2);
  EXPECT_NEAR((one + 11 * (two - one)) / 1e9, 196, 4);
}

TEST_F(TransformerTest, EveryFamilyGivesShapesAndRefusesWrongInputs) {
  for (const std::string family : {"deit", "timesformer", "xvit"}) {
    auto multitask = small(family);
    multitask.heads = "multitask";
    auto net = build_network(multitask, {5, 3});
    auto out = net->forward_all(torch::randn({2, 3, 4, 32, 32}));
    ASSERT_EQ(out.logits.size(), 2u) << family;
    EXPECT_EQ(out.logits[0].sizes(), (std::vector<int64_t>{2, 5}));
    EXPECT_EQ(out.logits[1].sizes(), (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(out.features.sizes(), (std::vector<int64_t>{2, 32}));
    EXPECT_TRUE(out.per_clip.empty()) << "no reducer, no per-clip costs";
    EXPECT_THAT([&] { net->forward_all(torch::randn({1, 3, 4, 48, 48})); },
                ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("model.image_size")));
  }
  auto tsf = build_network(small("timesformer"), {5});
  EXPECT_THAT([&] { tsf->forward_all(torch::randn({1, 3, 6, 32, 32})); },
              ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("model.frames")));
  auto bad = small("deit");
  bad.num_heads = 3;
  EXPECT_THAT([&] { build_network(bad, {5}); }, ::testing::ThrowsMessage<RecipeError>(HasSubstr("model.num_heads")));
  bad = small("deit");
  bad.token_reducer = "ats";
  bad.reducer_blocks = {7};
  EXPECT_THAT([&] { build_network(bad, {5}); }, ::testing::ThrowsMessage<RecipeError>(HasSubstr("model.reducer_blocks")));
  holo::ModelOptions r3d;
  r3d.name = "r3d18";
  r3d.token_reducer = "tome";
  EXPECT_THAT([&] { build_network(r3d, {5}); }, ::testing::ThrowsMessage<RecipeError>(HasSubstr("model.token_reducer")));
  holo::ModelOptions preset;
  preset.name = "deit_s";
  preset.embed_dim = 192;
  EXPECT_THAT([&] { build_network(preset, {5}); }, ::testing::ThrowsMessage<RecipeError>(HasSubstr("model.embed_dim")));
}

// model.qk_init_std redraws the query and key rows of every qkv projection (the temporal
// attention's and XViT's temporal head's too) and leaves the value rows at timm's 0.02.
TEST_F(TransformerTest, QkInitStdScalesOnlyTheQueryAndKeyWeights) {
  for (const std::string family : {"timesformer", "xvit"}) {
    auto options = small(family);
    options.qk_init_std = 0.5;
    auto net = build_network(options, {5});
    int64_t seen = 0;
    for (const auto& item : net->named_parameters()) {
      if (item.key().find("attn.qkv.weight") == std::string::npos) continue;
      ++seen;
      const auto& w = item.value();
      const int64_t d = w.size(1);
      EXPECT_NEAR(w.slice(0, 0, 2 * d).std().item<double>(), 0.5, 0.05) << family << " " << item.key();
      EXPECT_NEAR(w.slice(0, 2 * d).std().item<double>(), 0.02, 0.004) << family << " " << item.key();
    }
    EXPECT_GE(seen, 2) << family;
  }
}

TEST_F(TransformerTest, ReducerThatDoesNothingEqualsThePlainNetworkBitwise) {
  for (const std::string family : {"deit", "timesformer", "xvit"}) {
    torch::manual_seed(1);
    auto plain = build_network(small(family), {5});
    auto o = small(family);
    o.token_reducer = "tome";
    o.tome_r = 0;
    o.reducer_blocks = {0, 1, 2};
    torch::manual_seed(1);
    auto idle = build_network(o, {5});
    plain->eval();
    idle->eval();
    torch::NoGradGuard no_grad;
    auto x = torch::randn({2, 3, 4, 32, 32});
    EXPECT_TRUE(torch::equal(plain->forward_all(x).logits[0], idle->forward_all(x).logits[0])) << family;
  }
}

TEST_F(TransformerTest, AtsInTheLastBlockLeavesTheClassTokenAsThePlainNetworkHasIt) {
  // The CLS output row is A_1 V whichever tokens are sampled (7.6 keeps the CLS row).
  torch::manual_seed(2);
  auto plain = build_network(small("deit"), {5});
  auto o = small("deit");
  o.token_reducer = "ats";
  o.ats_tokens = 4;
  o.reducer_blocks = {2};
  torch::manual_seed(2);
  auto ats = build_network(o, {5});
  plain->eval();
  ats->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({3, 3, 2, 32, 32});
  auto a = ats->forward_all(x);
  EXPECT_TRUE(torch::allclose(plain->forward_all(x).logits[0], a.logits[0], 1e-5, 1e-6));
  EXPECT_LE(a.per_clip.at("tokens_2").max().item<double>(), 5.0);
}

TEST_F(TransformerTest, PaddedBatchEqualsEachSampleAlone) {
  for (const std::string family : {"deit", "timesformer", "xvit"}) {
    for (const std::string reducer : {"ats", "tome"}) {
      auto o = small(family);
      o.token_reducer = reducer;
      o.ats_rho = 0.6;  // K_n from each sample's own token count
      o.tome_r = 3;
      o.reducer_blocks = {0, 1, 2};
      torch::manual_seed(3);
      auto net = build_network(o, {5});
      sharpen(*net, family == "deit" ? 6.0 : 20.0);
      net->eval();
      torch::NoGradGuard no_grad;
      auto x = torch::randn({4, 3, 4, 32, 32});
      x[1] = x[1] * 0.05;  // a nearly flat clip next to noisy ones
      x[2].slice(1, 0, 2).zero_();
      auto batch = net->forward_all(x);
      std::set<double> kept;
      for (int64_t i = 0; i < 4; ++i) {
        auto alone = net->forward_all(x.slice(0, i, i + 1));
        EXPECT_TRUE(torch::allclose(batch.logits[0][i], alone.logits[0][0], 1e-4, 1e-5))
            << family << " " << reducer << " sample " << i << "\n" << batch.logits[0][i] << alone.logits[0][0];
        for (const auto& [name, v] : batch.per_clip) {
          EXPECT_NEAR(v[i].item<double>(), alone.per_clip.at(name)[0].item<double>(), 1e-9) << family << " " << name;
        }
        kept.insert(batch.per_clip.at("tokens_2")[i].item<double>());
      }
      if (reducer == "ats") EXPECT_GT(kept.size(), 1u) << family << ": the samples should keep different counts";
    }
  }
}

TEST_F(TransformerTest, PerClipCostsEqualTheFlopRecorder) {
  for (const std::string family : {"deit", "timesformer", "xvit"}) {
    for (const std::string reducer : {"none", "ats", "tome"}) {
      auto o = small(family);
      o.token_reducer = reducer;
      o.ats_tokens = 6;
      o.tome_r = 2;
      o.reducer_blocks = {1, 2};
      auto net = build_network(o, {5});
      sharpen(*net, 4.0);
      net->eval();
      torch::NoGradGuard no_grad;
      FlopRecorder rec;
      auto out = net->forward_all(torch::randn({1, 3, 4, 32, 32}));
      rec.finish();
      if (reducer == "none") {
        EXPECT_TRUE(out.per_clip.empty());
        continue;
      }
      const auto costs = net->clip_costs(torch::zeros({1, 3, 4, 32, 32}), out);
      ASSERT_TRUE(costs.count("gflops")) << family;
      EXPECT_NEAR(costs.at("gflops")[0].item<double>() * 1e9, rec.total_macs(), rec.total_macs() * 1e-9) << family << " " << reducer;
      EXPECT_EQ(net->clip_cost_names(), (std::vector<std::string>{"gflops", "tokens_1", "tokens_2"}));
    }
  }
  // Fewer tokens cost less: DeiT-S with ATS at rho 0.72 from block 3 (§7.3.4.1).
  holo::ModelOptions o;
  o.name = "deit_s";
  o.token_reducer = "ats";
  o.ats_rho = 0.5;
  auto net = build_network(o, {1000});
  sharpen(*net, 8.0);
  net->eval();
  torch::NoGradGuard no_grad;
  auto out = net->forward_all(torch::randn({1, 3, 1, 224, 224}));
  EXPECT_LT(out.per_clip.at("gflops")[0].item<double>(), 4.0);
  EXPECT_LE(out.per_clip.at("tokens_11")[0].item<double>(), out.per_clip.at("tokens_3")[0].item<double>() + 1);
}

TEST_F(TransformerTest, GradientsReachEveryParameterAndEveryPatchThroughAts) {
  for (const std::string family : {"deit", "timesformer", "xvit"}) {
    auto o = small(family);
    o.token_reducer = "ats";
    o.ats_tokens = 5;
    o.reducer_blocks = {0, 2};
    auto net = build_network(o, {5});
    sharpen(*net, 4.0);
    auto x = torch::randn({2, 3, 4, 32, 32}).requires_grad_(true);
    auto out = net->forward_all(x);
    torch::nn::functional::cross_entropy(out.logits[0], torch::tensor({1, 3})).backward();
    for (const auto& p : net->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << family << " " << p.key();
      EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << family << " " << p.key();
    }
    EXPECT_GT(net->named_parameters()["blocks.1.attn.qkv.weight"].grad().abs().sum().item<double>(), 0) << family;
    // Every 8x8 patch of every frame reaches the loss (block 0 attends to all of them).
    auto g = x.grad().abs().sum(1).view({2, 4, 4, 8, 4, 8}).sum({3, 5});
    EXPECT_TRUE((g > 0).all().item<bool>()) << family;
  }
}

// ---- against the PyTorch twins ---------------------------------------------------------------

void save_tensors(const std::map<std::string, torch::Tensor>& m, const std::string& path) {
  c10::impl::GenericDict d(c10::StringType::get(), c10::TensorType::get());
  for (const auto& [k, v] : m) d.insert(k, v);
  auto bytes = torch::pickle_save(c10::IValue(d));
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void save_weights(NetworkImpl& net, const std::string& path) {
  std::map<std::string, torch::Tensor> m;
  for (const auto& p : net.named_parameters()) m[p.key()] = p.value().detach();
  for (const auto& b : net.named_buffers()) m[b.key()] = b.value().detach();
  save_tensors(m, path);
}

std::string twin_args(const holo::ModelOptions& o, int64_t classes) {
  return " --classes " + std::to_string(classes) + " --frames " + std::to_string(o.frames) + " --depth " +
         std::to_string(o.depth) + " --embed-dim " + std::to_string(o.embed_dim) + " --num-heads " +
         std::to_string(o.num_heads) + " --patch-size " + std::to_string(o.patch_size) + " --image-size " +
         std::to_string(o.image_size);
}

TEST_F(TransformerTest, ForwardMatchesThePyTorchTwins) {
  const std::string dir = holo::testing::temp_dir();
  for (const std::string family : {"deit", "timesformer", "xvit"}) {
    auto o = small(family, 2);
    auto net = build_network(o, {7});
    net->eval();
    {
      // Random embeddings and temporal_fc, so that every parameter matters.
      torch::NoGradGuard no_grad;
      for (auto& p : net->named_parameters()) {
        if (p.key().find("embed") != std::string::npos || p.key().find("temporal_fc") != std::string::npos) p.value().normal_(0, 0.5);
      }
    }
    save_weights(*net, dir + "/w.pt");
    auto x = torch::randn({2, 3, 4, 32, 32});
    torch::Tensor y;
    {
      torch::NoGradGuard no_grad;
      y = net->forward_all(x).logits[0];
    }
    save_tensors({{"input", x}}, dir + "/io.pt");
    auto r = holo::testing::run_command(python() + " forward " + family + twin_args(o, 7) + " --weights " + dir +
                                        "/w.pt --io " + dir + "/io.pt");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto io = read_state_dict(dir + "/io.pt");
    ASSERT_TRUE(io.count("python")) << r.output;
    EXPECT_TRUE(torch::allclose(io.at("python"), y, 1e-4, 1e-4)) << family << "\n" << io.at("python") << y;
  }
}

TEST_F(TransformerTest, DeitSMatchesItsTwinAndImportsTimmNames) {
  const std::string dir = holo::testing::temp_dir();
  holo::ModelOptions o;
  o.name = "deit_s";
  o.frames = 1;
  o.dropout = 0;
  auto net = build_network(o, {1000});
  net->eval();
  save_weights(*net, dir + "/w.pt");
  auto x = torch::randn({1, 3, 1, 224, 224});
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = net->forward_all(x).logits[0];
  }
  save_tensors({{"input", x}}, dir + "/io.pt");
  auto r = holo::testing::run_command(python() + " forward deit_s --classes 1000 --frames 1 --weights " + dir +
                                      "/w.pt --io " + dir + "/io.pt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto io = read_state_dict(dir + "/io.pt");
  EXPECT_TRUE(torch::allclose(io.at("python"), y, 1e-4, 1e-4));
  // The same weights under timm's names (head.*), as a user's DeiT file has them, import exactly.
  r = holo::testing::run_command(python() + " timm deit_s --classes 1000 --weights " + dir + "/w.pt --out " + dir + "/timm.pt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  torch::manual_seed(5);
  auto fresh = build_network(o, {1000});
  fresh->eval();
  auto report = import_weights(*fresh, "deit", read_weights_file(dir + "/timm.pt"), "auto");
  EXPECT_EQ(report.layout, WeightsLayout::kTimm);
  EXPECT_TRUE(report.unmatched.empty()) << ::testing::PrintToString(report.unmatched);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(fresh->forward_all(x).logits[0], y));
}

TEST_F(TransformerTest, ParameterCountsEqualTheTwins) {
  auto r = holo::testing::run_command(python() + " count deit_ti,deit_s --classes 1000 --frames 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, int64_t> py;
  std::istringstream in(r.output);
  std::string name;
  int64_t n;
  while (in >> name >> n) py[name] = n;
  for (const std::string preset : {"deit_ti", "deit_s"}) {
    holo::ModelOptions o;
    o.name = preset;
    EXPECT_EQ(count_parameters(*build_network(o, {1000})), py[preset]) << preset;
  }
  r = holo::testing::run_command(python() + " count timesformer_s,xvit_s --classes 400 --frames 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream in2(r.output);
  while (in2 >> name >> n) py[name] = n;
  for (const std::string preset : {"timesformer_s", "xvit_s"}) {
    holo::ModelOptions o;
    o.name = preset;
    o.frames = 8;
    EXPECT_EQ(count_parameters(*build_network(o, {400})), py[preset]) << preset;
  }
}

}  // namespace
}  // namespace holo::models
