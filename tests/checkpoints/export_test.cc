// `holo ckpt export` gives files that Python's torch loads into the same networks with the same
// outputs: a Holo-named state dict into bench/model_baseline.py's modules, and a --torchvision
// one into torchvision.models.resnet18. The C++ side is the network the checkpoint came from.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "checkpoints/checkpoint.h"
#include "core/recipe.h"
#include "models/network.h"
#include "tests/test_util.h"
#include "tests/train/python_util.h"

namespace holo {
namespace {

namespace fs = std::filesystem;
using holo::testing::holo_binary;
using holo::testing::run_command;
using ::testing::HasSubstr;

constexpr int64_t kClasses = 3;

std::string data_root() {
  const char* t = std::getenv("HOLO_TEST_TMP");
  return std::string(t ? t : "/tmp/holo-test") + "/export-data";
}

class Export : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::remove_all(data_root());
    const auto r = run_command(holo_binary() + " data synth --kind motion --out " + data_root() +
                               " --frames 8 --size 48x32 --seed 2 --classes 3 --videos 12");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  /// Trains `model` (TOML lines of [model]) for two steps into `dir`/run; returns the recipe.
  static Recipe train(const std::string& dir, const std::string& model) {
    const std::string path = dir + "/recipe.toml";
    std::ofstream(path) << "[run]\nseed = 4\ndir = \"" << dir << "/run\"\n"
                        << "[data]\ndataset = \"kinetics\"\nroot = \"" << data_root() << "\"\ntrain = \""
                        << data_root() << "/train.csv\"\n"
                        << "[sampling]\nnum_frames = 4\nstride = 2\n"
                        << "[transform]\ncrop_size = 32\ntrain_scale_min = 32\ntrain_scale_max = 36\ntest_scale = 32\n"
                        << "[loader]\nbatch_size = 4\nworkers = 1\n"
                        << "[model]\n" << model << "\n"
                        << "[optim]\nlr = 0.05\n"
                        << "[train]\nepochs = 1\nmax_steps = 2\n";
    const auto r = run_command("HOLO_NUM_THREADS=1 " + holo_binary() + " train " + path);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return load_recipe(path);
  }

  /// The network of `recipe` with the checkpoint's weights, in eval mode.
  static std::shared_ptr<models::NetworkImpl> network(const Recipe& recipe) {
    auto net = models::build_network(recipe.model, {kClasses});
    const auto loaded = ckpt::Manager::load_latest(recipe.run.dir + "/checkpoints", 0, 1);
    EXPECT_TRUE(loaded);
    torch::NoGradGuard no_grad;
    int64_t copied = 0;
    auto copy = [&](const std::string& name, torch::Tensor& dst) {
      const auto& src = loaded->replicated.at("model." + name);
      EXPECT_EQ(src.sizes(), dst.sizes()) << name;
      dst.copy_(src);
      ++copied;
    };
    for (auto& p : net->named_parameters()) copy(p.key(), p.value());
    for (auto& b : net->named_buffers()) copy(b.key(), b.value());
    EXPECT_GT(copied, 10);
    net->eval();
    return net;
  }

  /// Runs `python` (which defines `y` from `x`, the input, given the exported file at PATH)
  /// and returns y.
  static torch::Tensor python_output(const std::string& dir, const torch::Tensor& x, const std::string& exported,
                                     const std::string& python) {
    c10::Dict<std::string, torch::Tensor> io;
    io.insert("x", x);
    const std::vector<char> bytes = torch::pickle_save(io);
    std::ofstream(dir + "/io.pt", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(holo::testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
    // y comes back as text: the shape, then every value as Python's repr of the float (exact).
    const std::string text = holo::testing::run_python(
        dir, "import sys, torch\nsys.path.insert(0, '" + holo::testing::source_dir() + "/bench')\n"
             "torch.set_grad_enabled(False)\n"
             "PATH = '" + exported + "'\n"
             "x = torch.load('" + dir + "/io.pt')['x']\n" + python +
             "with open(OUT, 'w') as f:\n"
             "    f.write('%d %d\\n' % tuple(y.shape))\n"
             "    f.write(' '.join(repr(float(v)) for v in y.flatten()))\n");
    const std::vector<double> v = holo::testing::parse_numbers(text);
    EXPECT_GE(v.size(), 2u) << "Python wrote no output";
    if (v.size() < 2) return {};
    const auto rows = static_cast<int64_t>(v[0]), cols = static_cast<int64_t>(v[1]);
    EXPECT_EQ(static_cast<int64_t>(v.size()), 2 + rows * cols) << text;
    if (static_cast<int64_t>(v.size()) != 2 + rows * cols) return {};
    return torch::tensor(std::vector<double>(v.begin() + 2, v.end()), torch::kFloat64)
        .view({rows, cols})
        .to(torch::kFloat32);
  }
};

TEST_F(Export, StateDictLoadsIntoThePythonModelWithEqualOutputs) {
  const std::string d = holo::testing::temp_dir();
  const Recipe recipe = train(d, "name = \"resnet3d\"\ndepth = 10\nwidth = 0.25\nframes = 4\ndropout = 0.3");
  const auto ex = run_command(holo_binary() + " ckpt export " + d + "/run --out " + d + "/model.pt");
  ASSERT_EQ(ex.exit_code, 0) << ex.output;

  torch::manual_seed(11);
  const torch::Tensor x = torch::randn({2, 3, 4, 32, 32});
  torch::Tensor want;
  {
    torch::NoGradGuard no_grad;
    want = network(recipe)->forward(x);
  }
  ASSERT_EQ(want.sizes(), (std::vector<int64_t>{2, kClasses}));
  // As docs/checkpoint-format.md tells users: the module from model_baseline.build, strict load.
  const torch::Tensor got = python_output(
      d, x, d + "/model.pt",
      "import model_baseline\n"
      "m = model_baseline.build('resnet3d', depth=10, classes=3, frames=4, width=0.25)\n"
      "m.load_state_dict(torch.load(PATH), strict=True)\n"
      "m.eval()\n"
      "y = m(x)\n");
  ASSERT_TRUE(got.defined());
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(torch::allclose(got, want, /*rtol=*/1e-5, /*atol=*/1e-5))
      << "C++\n" << want << "\nPython\n" << got;
  // The outputs are not trivially equal (e.g. all zeros): the two clips differ.
  EXPECT_FALSE(torch::allclose(want[0], want[1]));
}

TEST_F(Export, TorchvisionNamesLoadIntoTorchvisionResnetWithEqualOutputs) {
  const std::string d = holo::testing::temp_dir();
  const Recipe recipe = train(d, "name = \"resnet18_2d\"\ndepth = 18\nwidth = 1.0\nframes = 4");
  const auto ex = run_command(holo_binary() + " ckpt export " + d + "/run --torchvision --out " + d + "/tv.pt");
  ASSERT_EQ(ex.exit_code, 0) << ex.output;

  torch::manual_seed(12);
  const torch::Tensor x = torch::randn({2, 3, 4, 32, 32});
  torch::Tensor want;
  {
    torch::NoGradGuard no_grad;
    want = network(recipe)->forward(x);
  }
  // torchvision's ResNet classifies images: every frame through it, the logits averaged over
  // the frames of a clip (equal to Holo's head on the frame-averaged features, the head being
  // linear).
  const torch::Tensor got = python_output(
      d, x, d + "/tv.pt",
      "import torchvision\n"
      "m = torchvision.models.resnet18(num_classes=3)\n"
      "m.load_state_dict(torch.load(PATH), strict=True)\n"
      "m.eval()\n"
      "n, c, t, h, w = x.shape\n"
      "y = m(x.transpose(1, 2).reshape(n * t, c, h, w)).view(n, t, -1).mean(1)\n");
  ASSERT_TRUE(got.defined());
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(torch::allclose(got, want, /*rtol=*/1e-5, /*atol=*/1e-5))
      << "C++\n" << want << "\nPython\n" << got;
  EXPECT_FALSE(torch::allclose(want[0], want[1]));
}

// model.init with another tool's file: torchvision's r3d_18 state dict (an OrderedDict) trains
// from every tensor; a file that leaves tensors unmatched stops before training (exit 2) and
// lists them, unless model.init_strict is false. Export of a network torchvision lacks is refused.
TEST_F(Export, InitFromTorchvisionIsStrictAndExportNamesOnlyWhatTorchvisionHas) {
  ASSERT_TRUE(holo::testing::have_reference_python());
  const std::string d = holo::testing::temp_dir();
  const std::string n = holo::testing::run_python(
      d, "import torch, torchvision\n"
         "sd = torchvision.models.video.r3d_18(num_classes=400).state_dict()\n"
         "torch.save(sd, '" + d + "/r3d.pt')\n"
         "torch.save(torchvision.models.resnet18().state_dict(), '" + d + "/r18.pt')\n"
         "open(OUT, 'w').write(str(len(sd) - 2))\n");  // all but the 400-class fc
  const Recipe ok = train(d, "name = \"r3d_18\"\nwidth = 1.0\nframes = 4\ninit = \"" + d + "/r3d.pt\"");
  std::stringstream log;
  log << std::ifstream(ok.run.dir + "/train.log").rdbuf();
  EXPECT_THAT(log.str(), HasSubstr("initialised " + n + " tensors from " + d + "/r3d.pt (torchvision names)"));
  EXPECT_THAT(log.str(), HasSubstr("the classifier keeps its fresh weights"));

  const std::string bad = d + "/bad.toml";
  std::ofstream(bad) << "[run]\ndir = \"" << d << "/bad\"\n[data]\ndataset = \"kinetics\"\nroot = \"" << data_root()
                     << "\"\ntrain = \"" << data_root() << "/train.csv\"\n[sampling]\nnum_frames = 4\n"
                     << "[transform]\ncrop_size = 32\n[model]\nname = \"r3d_18\"\ninit = \"" << d << "/r18.pt\"\n"
                     << "[train]\nmax_steps = 1\n";
  const auto strict = run_command("HOLO_NUM_THREADS=1 " + holo_binary() + " train " + bad);
  EXPECT_EQ(strict.exit_code, 2) << strict.output;
  EXPECT_THAT(strict.output, HasSubstr("model.init"));
  EXPECT_THAT(strict.output, HasSubstr("did not match"));
  EXPECT_THAT(strict.output, HasSubstr("is not in the file"));
  EXPECT_THAT(strict.output, HasSubstr("has no place in the network"));
  EXPECT_FALSE(fs::exists(d + "/bad/checkpoints/step-1"));
  const auto loose = run_command("HOLO_NUM_THREADS=1 " + holo_binary() + " train " + bad + " --set model.init_strict=false");
  EXPECT_EQ(loose.exit_code, 0) << loose.output;
  EXPECT_THAT(loose.output, HasSubstr("warn"));
  EXPECT_THAT(loose.output, HasSubstr("did not match"));

  const auto tv = run_command(holo_binary() + " ckpt export " + ok.run.dir + " --layout torchvision --out " + d + "/out.pt");
  ASSERT_EQ(tv.exit_code, 0) << tv.output;
  EXPECT_EQ(holo::testing::run_python(d, "import torch, torchvision\n"
                                         "m = torchvision.models.video.r3d_18(num_classes=3)\n"
                                         "m.load_state_dict(torch.load('" + d + "/out.pt'), strict=True)\n"
                                         "open(OUT, 'w').write('loaded')\n"),
            "loaded");
  const std::string hara = d + "/hara";
  fs::create_directories(hara);
  const Recipe h = train(hara, "name = \"r3d10\"\nwidth = 0.25\nframes = 4");
  const auto refused = run_command(holo_binary() + " ckpt export " + h.run.dir + " --torchvision --out " + d + "/no.pt");
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("r3d_18, mc3_18 and r2plus1d_18"));
  EXPECT_FALSE(fs::exists(d + "/no.pt"));
}

}  // namespace
}  // namespace holo
