// Weights in other tools' names (models/weights.h). Every source file is made by
// /usr/bin/python3 in the tool's own names: torchvision's video models themselves, and
// PySlowFast and MMAction2 state dicts written key by key from their model definitions
// (slowfast/models/{stem,resnet}_helper.py, head_helper.py; mmaction/models/backbones/
// resnet3d.py, x3d.py, heads/x3d_head.py), in their checkpoint wrappers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/recipe.h"
#include "models/network.h"
#include "models/weights.h"
#include "tests/test_util.h"
#include "tests/train/python_util.h"

namespace holo {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<models::NetworkImpl> build(const std::string& name, int64_t classes, int64_t frames = 4) {
  holo::ModelOptions o;
  o.name = name;
  o.frames = frames;
  return models::build_network(o, {classes});
}

std::string family_of(const std::string& name) {
  holo::ModelOptions o;
  o.name = name;
  return models::resolve_model(o).name;
}

std::map<std::string, torch::Tensor> read_weights(const std::string& path) { return models::read_weights_file(path); }

void write_weights(const std::vector<std::pair<std::string, torch::Tensor>>& state, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [k, v] : state) dict.insert(k, v);
  const std::vector<char> bytes = torch::pickle_save(dict);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::pair<std::string, torch::Tensor>> state_of(models::NetworkImpl& net) {
  std::vector<std::pair<std::string, torch::Tensor>> s;
  for (const auto& p : net.named_parameters()) s.emplace_back(p.key(), p.value());
  for (const auto& b : net.named_buffers()) s.emplace_back(b.key(), b.value());
  return s;
}

std::string unmatched_text(const models::ImportReport& r) {
  std::string s;
  for (const auto& u : r.unmatched) s += u + "\n";
  return s;
}

torch::Tensor parse_matrix(const std::string& text) {
  const std::vector<double> v = holo::testing::parse_numbers(text);
  if (v.size() < 2) return {};
  const auto rows = static_cast<int64_t>(v[0]), cols = static_cast<int64_t>(v[1]);
  if (static_cast<int64_t>(v.size()) != 2 + rows * cols) return {};
  return torch::tensor(std::vector<double>(v.begin() + 2, v.end()), torch::kFloat64).view({rows, cols}).to(torch::kFloat32);
}

constexpr const char* kWriteY =
    "with open(OUT, 'w') as f:\n"
    "    f.write('%d %d\\n' % tuple(y.shape))\n"
    "    f.write(' '.join(repr(float(v)) for v in y.flatten()))\n";

class TorchvisionVideo : public ::testing::TestWithParam<std::string> {};

// A torchvision state dict imports with every tensor matched and gives torchvision's outputs;
// Holo's export loads into torchvision with strict=True and gives Holo's outputs.
TEST_P(TorchvisionVideo, ImportsAndExportsExactlyWithEqualOutputs) {
  ASSERT_TRUE(holo::testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string tv = GetParam();
  const std::string holo_name = tv;  // the presets carry torchvision's names
  const std::string d = holo::testing::temp_dir();
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({2, 3, 4, 32, 32});
  {
    c10::Dict<std::string, torch::Tensor> io;
    io.insert("x", x);
    const std::vector<char> bytes = torch::pickle_save(io);
    std::ofstream(d + "/x.pt", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  // torchvision's model with non-trivial batch-norm statistics (a few forwards in training mode).
  const torch::Tensor tv_y = parse_matrix(holo::testing::run_python(
      d, "import torch, torchvision\ntorch.manual_seed(7)\n"
         "m = torchvision.models.video." + tv + "(num_classes=5)\n"
         "m.train()\n"
         "with torch.no_grad():\n"
         "    for _ in range(3): m(torch.randn(2, 3, 4, 32, 32) * 2 + 0.5)\n"
         "m.eval()\n"
         "torch.save(m.state_dict(), '" + d + "/tv.pt')\n"
         "x = torch.load('" + d + "/x.pt')['x']\n"
         "with torch.no_grad(): y = m(x)\n" + kWriteY));
  ASSERT_TRUE(tv_y.defined());

  auto net = build(holo_name, 5);
  const auto file = read_weights(d + "/tv.pt");
  const auto report = models::import_weights(*net, family_of(holo_name), file, "auto");
  EXPECT_EQ(report.layout, models::WeightsLayout::kTorchvision);
  EXPECT_TRUE(report.unmatched.empty()) << unmatched_text(report);
  EXPECT_TRUE(report.classifier_kept.empty());
  EXPECT_EQ(report.loaded, static_cast<int64_t>(file.size()));
  EXPECT_EQ(report.loaded, static_cast<int64_t>(state_of(*net).size()));
  net->eval();
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = net->forward(x);
  }
  ASSERT_EQ(y.sizes(), tv_y.sizes());
  EXPECT_TRUE(torch::allclose(y, tv_y, 1e-4, 1e-4)) << "Holo\n" << y << "\ntorchvision\n" << tv_y;
  EXPECT_FALSE(torch::allclose(y[0], y[1]));

  // Export from a network with other weights (a fresh one), loaded strictly by torchvision.
  torch::manual_seed(11);
  auto fresh = build(holo_name, 5);
  fresh->eval();
  torch::Tensor want;
  {
    torch::NoGradGuard no_grad;
    want = fresh->forward(x);
  }
  write_weights(models::export_weights(state_of(*fresh), family_of(holo_name), models::WeightsLayout::kTorchvision),
                d + "/holo.pt");
  const torch::Tensor got = parse_matrix(holo::testing::run_python(
      d, "import torch, torchvision\n"
         "m = torchvision.models.video." + tv + "(num_classes=5)\n"
         "m.load_state_dict(torch.load('" + d + "/holo.pt'), strict=True)\n"
         "m.eval()\n"
         "x = torch.load('" + d + "/x.pt')['x']\n"
         "with torch.no_grad(): y = m(x)\n" + kWriteY));
  ASSERT_TRUE(got.defined());
  EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-4)) << "Holo\n" << want << "\ntorchvision\n" << got;
  EXPECT_FALSE(torch::allclose(want, y, 1e-3, 1e-3));  // a different network than the imported one
}

INSTANTIATE_TEST_SUITE_P(Weights, TorchvisionVideo, ::testing::Values("r3d_18", "mc3_18", "r2plus1d_18"));

// PySlowFast's and MMAction2's key names, written from their model definitions: the Slow-only
// ResNet-50 (SLOW_8x8_R50 / slowonly_r50) and X3D-M, with every tensor's shape as their code
// builds it. The file imports strictly, and Holo's export in the same layout gives back the same
// keys with the same values.
constexpr const char* kForeignSpecs = R"PY(
import torch
torch.manual_seed(5)
def bn(d, p, c):
    d[p + '.weight'] = torch.rand(c) + 0.5
    d[p + '.bias'] = torch.randn(c)
    d[p + '.running_mean'] = torch.randn(c)
    d[p + '.running_var'] = torch.rand(c) + 0.5
    d[p + '.num_batches_tracked'] = torch.tensor(17)
def conv(d, p, *shape, bias=False):
    d[p + '.weight'] = torch.randn(*shape) * 0.05
    if bias: d[p + '.bias'] = torch.randn(shape[0])

def slow_r50(names, classes):
    # slowfast/models/video_model_builder.py: _TEMPORAL_KERNEL_BASIS['slow'] = [[1],[1],[1],[3],[3]]
    d = {}
    conv(d, names['stem_conv'], 64, 3, 1, 7, 7); bn(d, names['stem_bn'], 64)
    cin = 64
    for s, n, w, t in ((2, 3, 64, 1), (3, 4, 128, 1), (4, 6, 256, 3), (5, 3, 512, 3)):
        for i in range(n):
            b = names['block'](s, i)
            if i == 0:
                conv(d, b + names['short'], 4 * w, cin, 1, 1, 1); bn(d, b + names['short_bn'], 4 * w)
            conv(d, b + names['a'], w, cin if i == 0 else 4 * w, t, 1, 1); bn(d, b + names['a_bn'], w)
            conv(d, b + names['b'], w, w, 1, 3, 3); bn(d, b + names['b_bn'], w)
            conv(d, b + names['c'], 4 * w, w, 1, 1, 1); bn(d, b + names['c_bn'], 4 * w)
        cin = 4 * w
    conv(d, names['fc'], classes, 2048, bias=True)
    return d

def x3d_m(names, classes):
    # X3D-M: widths 24/48/96/192, inner 54/108/216/432, blocks 3/5/11/7, SE (bias) on even blocks
    d = {}
    conv(d, names['stem_xy'], 24, 3, 1, 3, 3)
    conv(d, names['stem_t'], 24, 1, 5, 1, 1); bn(d, names['stem_bn'], 24)
    cin = 24
    for s, n, c, inner, se in ((2, 3, 24, 54, 8), (3, 5, 48, 108, 8), (4, 11, 96, 216, 16), (5, 7, 192, 432, 32)):
        for i in range(n):
            b = names['block'](s, i)
            if i == 0:
                conv(d, b + names['short'], c, cin, 1, 1, 1); bn(d, b + names['short_bn'], c)
            conv(d, b + names['a'], inner, cin if i == 0 else c, 1, 1, 1); bn(d, b + names['a_bn'], inner)
            conv(d, b + names['b'], inner, 1, 3, 3, 3); bn(d, b + names['b_bn'], inner)
            if i % 2 == 0:
                conv(d, b + names['se'] + '.fc1', se, inner, 1, 1, 1, bias=True)
                conv(d, b + names['se'] + '.fc2', inner, se, 1, 1, 1, bias=True)
            conv(d, b + names['c'], c, inner, 1, 1, 1); bn(d, b + names['c_bn'], c)
        cin = c
    conv(d, names['conv5'], 432, 192, 1, 1, 1); bn(d, names['conv5_bn'], 432)
    if names['lin5_linear']: conv(d, names['lin5'], 2048, 432)
    else: conv(d, names['lin5'], 2048, 432, 1, 1, 1)
    conv(d, names['fc'], classes, 2048, bias=True)
    return d

def r2plus1d_r34_mm(classes):
    # mmaction/models/backbones/resnet2plus1d.py with common/conv2plus1d.py: each ConvModule
    # X holds X.conv.{conv_s, bn_s, conv_t} and X.bn; mid = int(3*in*out*k*k / (in*k*k + 3*out))
    d = {}
    def c21(p, cin, cout, k, kt):
        mid = int(3 * cin * cout * k * k / (cin * k * k + 3 * cout))
        conv(d, p + '.conv.conv_s', mid, cin, 1, k, k); bn(d, p + '.conv.bn_s', mid)
        conv(d, p + '.conv.conv_t', cout, mid, kt, 1, 1); bn(d, p + '.bn', cout)
    c21('backbone.conv1', 3, 64, 7, 3)
    cin = 64
    for l, n, w in ((1, 3, 64), (2, 4, 128), (3, 6, 256), (4, 3, 512)):
        for i in range(n):
            b = 'backbone.layer%d.%d.' % (l, i)
            if i == 0 and l > 1: c21(b + 'downsample', cin, w, 1, 1)
            c21(b + 'conv1', cin if i == 0 else w, w, 3, 3)
            c21(b + 'conv2', w, w, 3, 3)
        cin = w
    conv(d, 'cls_head.fc_cls', classes, 512, bias=True)
    return d

psf = dict(stem_conv='s1.pathway0_stem.conv', stem_bn='s1.pathway0_stem.bn',
           stem_xy='s1.pathway0_stem.conv_xy', stem_t='s1.pathway0_stem.conv',
           block=lambda s, i: 's%d.pathway0_res%d.' % (s, i), short='branch1', short_bn='branch1_bn',
           a='branch2.a', a_bn='branch2.a_bn', b='branch2.b', b_bn='branch2.b_bn', c='branch2.c',
           c_bn='branch2.c_bn', se='branch2.se', conv5='head.conv_5', conv5_bn='head.conv_5_bn',
           lin5='head.lin_5', lin5_linear=False, fc='head.projection')
mma = dict(stem_conv='backbone.conv1.conv', stem_bn='backbone.conv1.bn',
           stem_xy='backbone.conv1_s.conv', stem_t='backbone.conv1_t.conv',
           block=lambda s, i: 'backbone.layer%d.%d.' % (s - 1, i), short='downsample.conv',
           short_bn='downsample.bn', a='conv1.conv', a_bn='conv1.bn', b='conv2.conv', b_bn='conv2.bn',
           c='conv3.conv', c_bn='conv3.bn', se='se_module', conv5='backbone.conv5.conv',
           conv5_bn='backbone.conv5.bn', lin5='cls_head.fc1', lin5_linear=True, fc='cls_head.fc_cls')
mma_x3d = dict(mma, stem_bn='backbone.conv1_t.bn', fc='cls_head.fc2')
)PY";

struct ForeignCase {
  std::string network;  ///< Holo preset
  std::string layout;   ///< holo layout name
  std::string python;   ///< expression of the state dict, in the spec above
  std::string wrap;     ///< how the tool saves it
};

class ForeignNames : public ::testing::TestWithParam<ForeignCase> {};

TEST_P(ForeignNames, ImportStrictlyAndExportTheSameKeys) {
  ASSERT_TRUE(holo::testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const ForeignCase c = GetParam();
  const std::string d = holo::testing::temp_dir();
  const std::string made = holo::testing::run_python(
      d, std::string(kForeignSpecs) + "sd = " + c.python + "\n" +
             "torch.save(" + c.wrap + ", '" + d + "/foreign.pt')\n"
             "open(OUT, 'w').write(str(len(sd)))\n");
  ASSERT_FALSE(made.empty());

  auto net = build(c.network, 10, 8);
  const std::string family = family_of(c.network);
  const auto file = read_weights(d + "/foreign.pt");
  EXPECT_EQ(static_cast<int64_t>(file.size()), std::stoll(made));  // the wrapper is gone
  const auto report = models::import_weights(*net, family, file, "auto");
  EXPECT_EQ(models::to_string(report.layout), c.layout);
  EXPECT_TRUE(report.unmatched.empty()) << unmatched_text(report);
  EXPECT_EQ(report.loaded, static_cast<int64_t>(file.size()));

  write_weights(models::export_weights(state_of(*net), family, models::parse_weights_layout(c.layout)), d + "/back.pt");
  const std::string check = holo::testing::run_python(
      d, "import torch\n"
         "a = torch.load('" + d + "/foreign.pt')\n"
         "a = a.get('model_state', a.get('state_dict', a))\n"
         "b = torch.load('" + d + "/back.pt')\n"
         "assert set(a) == set(b), (sorted(set(a) - set(b))[:5], sorted(set(b) - set(a))[:5])\n"
         "for k in a:\n"
         "    assert a[k].shape == b[k].shape, (k, a[k].shape, b[k].shape)\n"
         "    assert torch.equal(a[k].to(b[k].dtype), b[k]), k\n"
         "open(OUT, 'w').write('same %d' % len(a))\n");
  EXPECT_EQ(check, "same " + made);
}

INSTANTIATE_TEST_SUITE_P(
    Weights, ForeignNames,
    ::testing::Values(
        ForeignCase{"slow_r50", "pyslowfast", "slow_r50(psf, 10)",
                    "{'model_state': sd, 'epoch': 196, 'optimizer_state': {}, 'cfg': 'SLOW_8x8_R50'}"},
        ForeignCase{"slow_r50", "mmaction2", "slow_r50(mma, 10)", "{'meta': {'epoch': 256}, 'state_dict': sd}"},
        ForeignCase{"r2plus1d_r34", "mmaction2", "r2plus1d_r34_mm(10)", "{'meta': {'epoch': 180}, 'state_dict': sd}"},
        ForeignCase{"x3d_m", "pyslowfast", "x3d_m(psf, 10)", "{'model_state': sd, 'epoch': 300}"},
        ForeignCase{"x3d_m", "mmaction2", "x3d_m(mma_x3d, 10)", "{'meta': {}, 'state_dict': sd}"}),
    [](const ::testing::TestParamInfo<ForeignCase>& i) { return i.param.network + "_" + i.param.layout; });

// What did not match is listed on both sides; a classifier of another class count is not an error.
TEST(Weights, UnmatchedTensorsAreListedAndAClassifierOfAnotherSizeIsKept) {
  auto src = build("r3d_18", 7);
  auto state = models::export_weights(state_of(*src), "r3d_tv", models::WeightsLayout::kTorchvision);
  std::map<std::string, torch::Tensor> file(state.begin(), state.end());

  auto other_classes = build("r3d_18", 3);
  auto r = models::import_weights(*other_classes, "r3d_tv", file, "auto");
  EXPECT_TRUE(r.unmatched.empty()) << unmatched_text(r);
  ASSERT_EQ(r.classifier_kept.size(), 2u);  // weight and bias
  EXPECT_THAT(r.classifier_kept[0], HasSubstr("heads.0"));

  file.erase("layer2.0.conv1.0.weight");
  file["layer9.extra.weight"] = torch::zeros({2});
  file["layer1.0.conv2.1.running_mean"] = torch::zeros({65});
  r = models::import_weights(*build("r3d_18", 7), "r3d_tv", file, "torchvision");
  const std::string text = unmatched_text(r);
  EXPECT_EQ(r.unmatched.size(), 3u) << text;
  EXPECT_THAT(text, HasSubstr("'res3.0.conv1.weight' (layer2.0.conv1.0.weight) is not in the file"));
  EXPECT_THAT(text, HasSubstr("'layer9.extra.weight' [2] has no place"));
  EXPECT_THAT(text, HasSubstr("'layer1.0.conv2.1.running_mean' is [65] in the file, but 'res2.0.bn2.running_mean'"));
}

TEST(Weights, ExportRefusesALayoutWithoutTheNetwork) {
  auto hara = build("r3d18", 4);  // Hara et al.'s 3D ResNet: a 7x7x7 stem, not torchvision's
  try {
    models::export_weights(state_of(*hara), "resnet3d", models::WeightsLayout::kTorchvision);
    ADD_FAILURE() << "exported";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("r3d_18, mc3_18 and r2plus1d_18"));
  }
  auto stc = build("stc_resnet18", 4);
  EXPECT_THROW(models::export_weights(state_of(*stc), "stc_resnet", models::WeightsLayout::kPySlowFast), UsageError);
  // Holo's own names always work.
  EXPECT_EQ(models::export_weights(state_of(*stc), "stc_resnet", models::WeightsLayout::kHolo).size(),
            state_of(*stc).size());
}

}  // namespace
}  // namespace holo
