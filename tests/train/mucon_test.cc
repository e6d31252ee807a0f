// MuCon (thesis ch. 9): the masks by hand and against the released code's grid sampling, the
// network, its decoder and its losses against the PyTorch twin in bench/mucon_baseline.py (the
// release's names, outputs, losses and mask gradients, /usr/bin/python3), and `holo train` of a
// MuCon recipe resuming exactly, then `holo eval` with every inference variant.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "models/mucon.h"
#include "core/error.h"
#include "pipeline/segmentation_data.h"
#include "tests/test_util.h"
#include "tests/train/python_util.h"
#include "tests/train/segmentation_test_util.h"
#include "train/mucon_task.h"

namespace holo {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(MuConMasks, BoxMasksCoverTheirSegmentsAsTheTextDefinesThem) {
  // Two segments of 4 and 6 frames in 10: u = J (t - p') / l' on t = 1..10, template 1..J.
  const torch::Tensor lengths = torch::tensor({4.0f, 6.0f});
  const torch::Tensor w = train::mucon::masks(lengths, 10, train::mucon::mask_template("box"), 0.0, false);
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{2, 10}));
  // Segment 1 (p' = 0, l' = 4): u = 25 t, inside [1, 100] for t = 1..4; t = 5 gives 125: 0.
  for (int64_t t = 0; t < 10; ++t) EXPECT_FLOAT_EQ(w[0][t].item<float>(), t < 4 ? 1.0f : 0.0f) << t;
  // Segment 2 (p' = 4, l' = 6): u = 100 (t - 4) / 6: t = 4 gives 0 (outside), t = 5..10 inside.
  for (int64_t t = 0; t < 10; ++t) EXPECT_FLOAT_EQ(w[1][t].item<float>(), t >= 4 ? 1.0f : 0.0f) << t;
  // A segment of 0.5 frames at p' = 1: u = 200 (t - 1), t = 1 gives u = 0, on the kernel's edge
  // (weight 0), t = 2 gives 200.
  const torch::Tensor tiny = train::mucon::masks(torch::tensor({1.0f, 0.5f, 8.5f}), 10,
                                                 train::mucon::mask_template("box"), 0.0, false);
  EXPECT_FLOAT_EQ(tiny[1][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(tiny[1][1].item<float>(), 0.0f);
  // The templates: bell peaks at 1 in the middle, trapezoid starts at 0.5.
  EXPECT_NEAR(train::mucon::mask_template("bell")[49].item<float>(), 1.0f, 1e-3);
  EXPECT_FLOAT_EQ(train::mucon::mask_template("trapezoid")[0].item<float>(), 0.5f);
  EXPECT_FLOAT_EQ(train::mucon::mask_template("trapezoid")[50].item<float>(), 1.0f);
  EXPECT_THROW(train::mucon::mask_template("round"), Error);
}

TEST(MuCon, EqualsThePyTorchTwinOfTheRelease) {
  ASSERT_TRUE(testing::have_reference_python());
  const std::string dir = testing::temp_dir();
  const std::string out = testing::run_python(dir, R"(
import sys
sys.path.insert(0, ')" + holo::testing::source_dir() + R"(/bench')
import numpy as np, torch
from mucon_baseline import MuCon, losses, masks_release, masks_thesis
torch.manual_seed(0)
D, N, T = 64, 6, 100
m = MuCon(D, N).eval()
torch.save(m.state_dict(), ')" + dir + R"(/mucon.pt')
x = torch.randn(1, D, T)
np.save(')" + dir + R"(/x.npy', x[0].numpy())
transcript = [1, 3, 2, 0]
labels = [1] * 30 + [3] * 20 + [2] * 35 + [0] * 15
res = []
with torch.no_grad():
    z = m.encode(x)
    y = m.classify(z, T)
    lp, ll, _ = m.decode(z, transcript)
    _, _, greedy = m.decode(z)
np.save(')" + dir + R"(/y.npy', np.ascontiguousarray(y.numpy()))
np.save(')" + dir + R"(/lp.npy', lp.numpy())
np.save(')" + dir + R"(/ll.npy', ll.numpy().reshape(1, -1))
res.append(sum(p.numel() for p in m.parameters()))
res.append(len(greedy)); res += greedy
for variant, shape, overlap in [('release', 'box', 0.0), ('thesis', 'trapezoid', 0.1), ('release', 'bell', 0.1), ('thesis', 'box', 0.0)]:
    l = losses(y, lp, ll, transcript, labels, variant, shape, overlap)
    res += [l[k].item() for k in ['transcript', 'consistency', 'length', 'smoothing', 'classification', 'supervised_length']]
# The masks' gradients with respect to the lengths (eq. 9.10), both samplings.
for make in [masks_release, masks_thesis]:
    lengths = torch.tensor([12.5, 30.25, 40.0, 17.25], requires_grad=True)
    w, _ = make(100, lengths, 0.1, 'trapezoid')
    (w * torch.arange(100.0)).sum().backward()
    res += lengths.grad.tolist()
with open(OUT, 'w') as f:
    f.write(' '.join('%.17g' % v for v in res) + '\n')
)");
  const auto ref = testing::parse_numbers(out);
  ASSERT_GE(ref.size(), 2u) << out;
  models::MuConOptions o;
  o.in_dim = 64;
  o.classes = 6;
  models::MuConNet net(o);
  int64_t params = 0;
  for (const auto& p : net->parameters()) params += p.numel();
  EXPECT_EQ(params, static_cast<int64_t>(ref[0]));
  testing::load_twin_state(*net, dir + "/mucon.pt");
  net->eval();
  const auto npy = [&](const std::string& name) { return testing::npy_tensor(dir + "/" + name); };
  torch::NoGradGuard no_grad;
  const torch::Tensor z = net->encode(npy("x.npy").unsqueeze(0));
  const torch::Tensor y = net->classify(z, 100);
  EXPECT_LT((y - npy("y.npy")).abs().max().item<double>(), 1e-4);
  const std::vector<int64_t> transcript = {1, 3, 2, 0};
  const models::MuConSegments s = net->decode_teacher(z, transcript);
  EXPECT_LT((s.log_probs - npy("lp.npy")).abs().max().item<double>(), 1e-4);
  EXPECT_LT((s.log_lengths - npy("ll.npy").reshape({-1})).abs().max().item<double>(), 1e-4);
  const models::MuConSegments greedy = net->decode_greedy(z, 100);
  const auto n_greedy = static_cast<size_t>(ref[1]);
  ASSERT_EQ(greedy.transcript.size(), n_greedy);
  for (size_t i = 0; i < n_greedy; ++i) EXPECT_EQ(greedy.transcript[i], static_cast<int64_t>(ref[2 + i]));
  // The losses on the twin's outputs, four settings of variant, template and overlap.
  std::vector<int64_t> labels(30, 1);
  labels.insert(labels.end(), 20, 3);
  labels.insert(labels.end(), 35, 2);
  labels.insert(labels.end(), 15, 0);
  models::MuConSegments twin{npy("lp.npy"), npy("ll.npy").reshape({-1}), {}};
  size_t k = 2 + n_greedy;
  for (const auto& [release, shape, overlap] : std::vector<std::tuple<bool, std::string, double>>{
           {true, "box", 0.0}, {false, "trapezoid", 0.1}, {true, "bell", 0.1}, {false, "box", 0.0}}) {
    train::mucon::LossOptions lo;
    lo.release = release;
    lo.shape = shape;
    lo.overlap = overlap;
    const auto l = train::mucon::losses(npy("y.npy"), twin, transcript, labels, lo);
    const std::string what = std::string(release ? "release " : "thesis ") + shape;
    EXPECT_NEAR(l.transcript.item<double>(), ref[k++], 1e-4) << what;
    EXPECT_NEAR(l.consistency.item<double>(), ref[k++], 1e-4) << what;
    EXPECT_NEAR(l.length.item<double>(), ref[k++], 1e-5) << what;
    EXPECT_NEAR(l.smoothing.item<double>(), ref[k++], 1e-5) << what;
    EXPECT_NEAR(l.classification.item<double>(), ref[k++], 1e-5) << what;
    EXPECT_NEAR(l.supervised_length.item<double>(), ref[k++], 1e-5) << what;
  }
  // Mask gradients (9.10): the released code's sampling, then the text's.
  for (const bool release : {true, false}) {
    torch::AutoGradMode grad(true);
    const torch::Tensor lengths = torch::tensor({12.5f, 30.25f, 40.0f, 17.25f}).set_requires_grad(true);
    const torch::Tensor w =
        train::mucon::masks(lengths, 100, train::mucon::mask_template("trapezoid"), 0.1, release);
    (w * torch::arange(100.0f)).sum().backward();
    for (int64_t i = 0; i < 4; ++i) {
      EXPECT_NEAR(lengths.grad()[i].item<double>(), ref[k], 1e-3 * (1 + std::abs(ref[k])))
          << (release ? "release" : "thesis") << " segment " << i;
      ++k;
    }
  }
  EXPECT_EQ(k, ref.size());
}

TEST(MuCon, ModelInfoCountsTheTwinsParameters) {
  ASSERT_TRUE(testing::have_reference_python());
  const std::string dir = testing::temp_dir();
  // Breakfast's sizes: D = 2048, 48 classes, the thesis's 11 layers and 128 hidden units.
  const std::string out = testing::run_python(dir, R"(
import sys
sys.path.insert(0, ')" + holo::testing::source_dir() + R"(/bench')
from mucon_baseline import MuCon
m = MuCon(2048, 48)
with open(OUT, 'w') as f:
    f.write('%d %d\n' % (sum(p.numel() for n, p in m.named_parameters() if n.startswith('ft')),
                         sum(p.numel() for p in m.parameters())))
)");
  const auto ref = testing::parse_numbers(out);
  ASSERT_EQ(ref.size(), 2u) << out;
  const auto info = holo::testing::run_command(holo::testing::holo_binary() + " model info mucon");
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, ::testing::ContainsRegex("f_t \\(backbone, group norm\\) +" +
                                                     std::to_string(static_cast<int64_t>(ref[0]))));
  EXPECT_THAT(info.output, ::testing::ContainsRegex("total +" + std::to_string(static_cast<int64_t>(ref[1]))));
}

class MuConRun : public ::testing::Test {
 protected:
  static holo::testing::CommandResult holo(const std::string& args) {
    return holo::testing::run_command("HOLO_NUM_THREADS=1 " + holo::testing::holo_binary() + " " + args);
  }
  static std::string recipe(const std::string& dir, const std::string& supervision) {
    const std::string data = dir + "/data";
    EXPECT_EQ(holo("data synth --kind segmentation --videos 10 --seed 4 --out " + data).exit_code, 0);
    std::ofstream(dir + "/r.toml") << "[run]\nseed = 2\ndir = \"" << dir << "/run\"\n"
                                   << "[data]\ndataset = \"mstcn\"\nroot = \"" << data << "\"\ntrain = \"" << data
                                   << "/splits/train.split1.bundle\"\nval = \"" << data
                                   << "/splits/test.split1.bundle\"\n"
                                   << "[loader]\nbatch_size = 1\n"
                                   << "[model]\nname = \"mucon\"\nmucon_hidden = 32\nmucon_layers = 5\n"
                                   << "mucon_pool_after = [1, 2]\nmucon_overlap = 0.1\n"
                                   << "[task]\nkind = \"segmentation\"\nsupervision = \"" << supervision
                                   << "\"\nsmoothing = 0.1\nfull_fraction = 0.5\n"
                                   << "[optim]\nname = \"adamw\"\nlr = 0.001\nweight_decay = 0.0\n"
                                   << "[schedule]\nkind = \"constant\"\n"
                                   << "[train]\nepochs = 4\nlog_every = 1\n"
                                   << "[checkpoint]\nevery_steps = 3\n";
    return dir + "/r.toml";
  }
};

TEST_F(MuConRun, TrainsResumesExactlyAndEvaluatesEveryInferenceVariant) {
  const std::string dir = holo::testing::temp_dir();
  const std::string r = recipe(dir, "mixed");
  // 7 or 8 training videos, one per step.
  auto a = holo("train " + r + " --set run.dir=" + dir + "/whole --set train.max_steps=12");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_THAT(a.output, HasSubstr("mucon on segmentation (mixed)"));
  EXPECT_THAT(a.output, HasSubstr("with frame labels"));
  ASSERT_EQ(holo("train " + r + " --set run.dir=" + dir + "/part --set train.max_steps=6").exit_code, 0);
  auto b = holo("train " + r + " --set run.dir=" + dir + "/part --set train.max_steps=12");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_THAT(b.output, HasSubstr("resumed from"));
  EXPECT_GT(testing::expect_same_checkpoints(dir + "/whole/checkpoints", dir + "/part/checkpoints", 12), 40);
  // holo eval scores MuCon-Y, -S and -full; task.inference's metrics carry the plain names.
  auto e = holo("eval " + r + " --set run.dir=" + dir + "/whole --checkpoint " + dir + "/whole --out " + dir +
                "/eval --save-predictions");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  std::ifstream in(dir + "/eval/eval-val.json");
  ASSERT_TRUE(in) << e.output;
  const auto m = nlohmann::json::parse(in).at("metrics");
  for (const char* key : {"mof", "edit", "f1@10", "matching", "y_mof", "s_mof", "s_matching", "y_edit"}) {
    EXPECT_TRUE(m.contains(key)) << key << " " << m.dump();
  }
  EXPECT_FALSE(m.contains("full_mof")) << m.dump();  // full is the plain one
  // Its predictions score the same through holo metrics segmentation.
  const std::string data = dir + "/data";
  auto s = holo("metrics segmentation --gt " + data + "/groundTruth --pred " + dir + "/eval/predictions-val --mapping " +
                data + "/mapping.txt --bg background --bundle " + data + "/splits/test.split1.bundle");
  ASSERT_EQ(s.exit_code, 0) << s.output;
  char mof[32];
  std::snprintf(mof, sizeof mof, "%.2f", m.at("mof").get<double>());
  EXPECT_THAT(s.output, ::testing::ContainsRegex(std::string("MoF +") + mof)) << s.output;
  // Action alignment: the given transcripts aligned to Y.
  auto al = holo("eval " + r + " --set run.dir=" + dir + "/whole --checkpoint " + dir + "/whole --out " + dir +
                 "/align --set task.inference=align");
  ASSERT_EQ(al.exit_code, 0) << al.output;
  std::ifstream in2(dir + "/align/eval-val.json");
  const auto m2 = nlohmann::json::parse(in2).at("metrics");
  EXPECT_TRUE(m2.contains("full_mof")) << m2.dump();
  // The given transcript is the ground truth's: alignment recovers every segment's label.
  EXPECT_DOUBLE_EQ(m2.at("matching").get<double>(), 100.0) << m2.dump();
}

TEST_F(MuConRun, RecipeErrorsNameTheKey) {
  const std::string dir = holo::testing::temp_dir();
  const std::string r = recipe(dir, "transcript");
  auto a = holo("train " + r + " --set model.name=mstcn");
  EXPECT_EQ(a.exit_code, 2) << a.output;
  EXPECT_THAT(a.output, HasSubstr("task.supervision"));
  auto b = holo("train " + r + " --set model.mucon_pool_after=[1,2,9]");
  EXPECT_EQ(b.exit_code, 2) << b.output;
  EXPECT_THAT(b.output, HasSubstr("model.mucon_pool_after"));
  auto c = holo("train " + r + " --set model.mucon_hidden=48");
  EXPECT_EQ(c.exit_code, 2) << c.output;
  EXPECT_THAT(c.output, HasSubstr("model.mucon_hidden"));
}

}  // namespace
}  // namespace holo
