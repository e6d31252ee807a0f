// SCT (thesis ch. 8): the network, its region upsampling and its losses against the PyTorch twin
// of its release in bench/sct_baseline.py (names, outputs, losses, the lengths' gradient through
// grid_sample; /usr/bin/python3), and `holo train` of an SCT recipe resuming exactly, then
// `holo eval`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "models/sct.h"
#include "pipeline/segmentation_data.h"
#include "tests/test_util.h"
#include "tests/train/python_util.h"
#include "tests/train/segmentation_test_util.h"
#include "train/sct_task.h"

namespace holo {
namespace {

using ::testing::HasSubstr;

TEST(SctUpsampling, RegionsCoverTheirRoundedLengths) {
  // Two regions of 6 and 4 frames in 10 (l = log 6, log 4): region 1 fills 6 columns with a_1,
  // region 2 the next 4 with a_2; inside a region every column is whole (g = 1).
  const torch::Tensor a = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}});  // C x K
  const torch::Tensor l = torch::tensor({std::log(6.0f), std::log(4.0f)});
  const torch::Tensor y = models::region_upsample(a, l, 10);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 10}));
  for (int64_t t = 0; t < 10; ++t) {
    EXPECT_NEAR(y[0][t].item<float>(), t < 6 ? 1.0f : 0.0f, 1e-5) << t;
    EXPECT_NEAR(y[1][t].item<float>(), t < 6 ? 0.0f : 1.0f, 1e-5) << t;
  }
}

TEST(Sct, EqualsThePyTorchTwinOfTheRelease) {
  ASSERT_TRUE(testing::have_reference_python());
  const std::string dir = testing::temp_dir();
  const std::string out = testing::run_python(dir, R"(
import sys
sys.path.insert(0, ')" + holo::testing::source_dir() + R"(/bench')
import numpy as np, torch
from sct_baseline import Sct, losses, upsample
torch.manual_seed(0)
D, C, T = 48, 7, 203
m = Sct(D, C).eval()
torch.save(m.state_dict(), ')" + dir + R"(/sct.pt')
x = torch.randn(1, D, T)
np.save(')" + dir + R"(/x.npy', x[0].numpy())
with torch.no_grad():
    a, l, s, y = m(x)
for name, t in [('a', a), ('s', s), ('y', y), ('l', l.view(1, -1))]:
    np.save(')" + dir + R"(/' + name + '.npy', np.ascontiguousarray(t.numpy()))
res = [sum(p.numel() for p in m.parameters())]
weights = [0.001] + [1.0] * (C - 1)
l_ = l.clone().requires_grad_(True)
y_ = upsample(a, l_, T)
for variant in ['thesis', 'release']:
    out = losses(a, l_, s, y_, [0, 2, 5], weights, variant=variant)
    res += [out[k].item() for k in ['set', 'region', 'sparsity', 'consistency', 'transformer', 'length']]
out['transformer'].backward()
res += l_.grad.tolist()
with open(OUT, 'w') as f:
    f.write(' '.join('%.17g' % v for v in res) + '\n')
)");
  const auto ref = testing::parse_numbers(out);
  ASSERT_GE(ref.size(), 7u) << out;
  models::SctOptions o;
  o.in_dim = 48;
  o.classes = 7;
  models::SctNet net(o);
  int64_t params = 0;
  for (const auto& p : net->parameters()) params += p.numel();
  EXPECT_EQ(params, static_cast<int64_t>(ref[0]));
  testing::load_twin_state(*net, dir + "/sct.pt");
  torch::NoGradGuard no_grad;
  net->eval();
  const auto npy = [&](const std::string& name) { return testing::npy_tensor(dir + "/" + name); };
  const models::SctOutput got = net->forward(npy("x.npy").unsqueeze(0));
  EXPECT_LT((got.a - npy("a.npy")).abs().max().item<double>(), 1e-4);
  EXPECT_LT((got.l - npy("l.npy").reshape({-1})).abs().max().item<double>(), 1e-4);
  EXPECT_LT((got.s - npy("s.npy")).abs().max().item<double>(), 1e-4);
  EXPECT_LT((got.y - npy("y.npy")).abs().max().item<double>(), 1e-4);
  // The losses on the twin's outputs, and the SCT loss's gradient with respect to the lengths.
  torch::AutoGradMode grad(true);
  models::SctOutput twin{npy("a.npy"), npy("l.npy").reshape({-1}).set_requires_grad(true), npy("s.npy"), {}};
  twin.y = models::region_upsample(twin.a, twin.l, 203);
  std::vector<double> weights(7, 1.0);
  weights[0] = 0.001;
  size_t k = 1;
  train::sct::Losses l;
  for (const bool release : {false, true}) {
    l = train::sct::losses(twin, {0, 2, 5}, weights, 1.0, release);
    const char* what = release ? "release" : "thesis";
    EXPECT_NEAR(l.set.item<double>(), ref[k++], 1e-5) << what;
    EXPECT_NEAR(l.region.item<double>(), ref[k++], 1e-5) << what;
    EXPECT_NEAR(l.sparsity.item<double>(), ref[k++], 1e-5) << what;
    EXPECT_NEAR(l.consistency.item<double>(), ref[k++], 1e-5) << what;
    EXPECT_NEAR(l.transformer.item<double>(), ref[k++], 1e-5) << what;
    EXPECT_NEAR(l.length.item<double>(), ref[k++], 1e-5) << what;
  }
  l.transformer.backward();
  const torch::Tensor g = twin.l.grad();
  ASSERT_EQ(static_cast<size_t>(g.numel()), ref.size() - k);
  for (int64_t i = 0; i < g.numel(); ++i, ++k) {
    EXPECT_NEAR(g[i].item<double>(), ref[k], 1e-3 * std::abs(ref[k]) + 1e-9) << "region " << i;
  }
}

class SctRun : public ::testing::Test {
 protected:
  static holo::testing::CommandResult holo(const std::string& args) {
    return holo::testing::run_command("HOLO_NUM_THREADS=1 " + holo::testing::holo_binary() + " " + args);
  }
  static std::string recipe(const std::string& dir) {
    const std::string data = dir + "/data";
    EXPECT_EQ(holo("data synth --kind segmentation --videos 10 --seed 4 --out " + data).exit_code, 0);
    std::ofstream(dir + "/r.toml") << "[run]\nseed = 2\ndir = \"" << dir << "/run\"\n"
                                   << "[data]\ndataset = \"mstcn\"\nroot = \"" << data << "\"\ntrain = \"" << data
                                   << "/splits/train.split1.bundle\"\nval = \"" << data
                                   << "/splits/test.split1.bundle\"\nbackground = [\"background\"]\n"
                                   << "[loader]\nbatch_size = 1\n"
                                   << "[model]\nname = \"sct\"\nsct_hidden = 32\nsct_layers = 6\n"
                                   << "sct_pool_after = [1, 3]\nsct_z_after = 1\n"
                                   << "[task]\nkind = \"segmentation\"\nsupervision = \"set\"\n"
                                   << "[optim]\nname = \"sgd\"\nlr = 0.01\nmomentum = 0.009\nweight_decay = 0.0\n"
                                   << "[schedule]\nkind = \"constant\"\n"
                                   << "[train]\nepochs = 4\nlog_every = 1\n"
                                   << "[checkpoint]\nevery_steps = 3\n";
    return dir + "/r.toml";
  }
};

TEST_F(SctRun, TrainsResumesExactlyAndEvaluates) {
  const std::string dir = holo::testing::temp_dir();
  const std::string r = recipe(dir);
  auto a = holo("train " + r + " --set run.dir=" + dir + "/whole --set train.max_steps=12");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_THAT(a.output, HasSubstr("sct on segmentation (set)"));
  ASSERT_EQ(holo("train " + r + " --set run.dir=" + dir + "/part --set train.max_steps=6").exit_code, 0);
  auto b = holo("train " + r + " --set run.dir=" + dir + "/part --set train.max_steps=12");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_THAT(b.output, HasSubstr("resumed from"));
  EXPECT_GT(testing::expect_same_checkpoints(dir + "/whole/checkpoints", dir + "/part/checkpoints", 12), 20);
  const auto whole = ckpt::Manager::load_latest(dir + "/whole/checkpoints", 0, 1);
  ASSERT_TRUE(whole);
  auto e = holo("eval " + r + " --set run.dir=" + dir + "/whole --checkpoint " + dir + "/whole --out " + dir +
                "/eval --save-predictions");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto m = nlohmann::json::parse(std::ifstream(dir + "/eval/eval-val.json")).at("metrics");
  EXPECT_TRUE(m.contains("mof") && m.contains("edit") && m.contains("f1@10")) << m.dump();
  EXPECT_NEAR(m.at("mof").get<double>(), whole->meta.at("last_val").at("mof").get<double>(), 1e-9);
}

TEST_F(SctRun, RecipeErrorsNameTheKey) {
  const std::string dir = holo::testing::temp_dir();
  const std::string r = recipe(dir);
  auto a = holo("train " + r + " --set task.supervision=transcript");
  EXPECT_EQ(a.exit_code, 2) << a.output;
  EXPECT_THAT(a.output, HasSubstr("task.supervision"));
  auto b = holo("train " + r + " --set model.name=mucon");
  EXPECT_EQ(b.exit_code, 2) << b.output;
  EXPECT_THAT(b.output, HasSubstr("task.supervision"));
  auto info = holo("model info " + r);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr("(sct, 6 layers, hidden 32, 2 poolings of 2)"));
  EXPECT_THAT(info.output, ::testing::ContainsRegex("fer +[0-9]+"));
  auto c = holo("train " + r + " --set model.sct_z_after=7");
  EXPECT_EQ(c.exit_code, 2) << c.output;
  EXPECT_THAT(c.output, HasSubstr("model.sct_z_after"));
}

}  // namespace
}  // namespace holo
