// Temporal action segmentation on per-frame features: the MS-TCN layout reader and its refusals,
// the synthetic data, MS-TCN against its PyTorch release (names, sizes, outputs, loss) in
// /usr/bin/python3, and `holo train` of a segmentation recipe resuming exactly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "models/mstcn.h"
#include "models/resnet2d.h"
#include "pipeline/feature_store.h"
#include "pipeline/segmentation_data.h"
#include "pipeline/segmentation_synth.h"
#include "tests/test_util.h"
#include "tests/train/python_util.h"
#include "tests/train/segmentation_test_util.h"
#include "train/segmentation_task.h"

namespace holo {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using pipeline::NpyMatrix;

/// A two-video dataset in MS-TCN's layout: classes background, a, b; features D = 3.
std::string tiny_layout(const std::string& dir) {
  for (const char* sub : {"features", "groundTruth", "splits"}) fs::create_directories(fs::path(dir) / sub);
  std::ofstream(dir + "/mapping.txt") << "0 background\n1 a\n2 b\n";
  std::ofstream(dir + "/splits/train.split1.bundle") << "v1.txt\nv2.txt\n";
  std::ofstream(dir + "/groundTruth/v1.txt") << "background\na\na\nb\nb\nb\n";
  std::ofstream(dir + "/groundTruth/v2.txt") << "a\na\nb\nb\n";
  NpyMatrix m{3, 6, {}};
  for (int i = 0; i < 18; ++i) m.values.push_back(static_cast<float>(i));
  pipeline::write_npy_matrix(dir + "/features/v1.npy", m);
  NpyMatrix m2{3, 4, std::vector<float>(12, 0.5f)};
  pipeline::write_npy_matrix(dir + "/features/v2.npy", m2);
  return dir + "/splits/train.split1.bundle";
}

pipeline::SegmentationDataOptions options(const std::string& dir, int64_t rate = 1) {
  pipeline::SegmentationDataOptions o;
  o.root = dir;
  o.bundle = dir + "/splits/train.split1.bundle";
  o.sample_rate = rate;
  return o;
}

TEST(SegmentationData, ReadsTheLayoutSubsamplesAndDerivesWeakLabels) {
  const std::string dir = testing::temp_dir();
  tiny_layout(dir);
  const pipeline::SegmentationDataset d(options(dir));
  ASSERT_EQ(d.videos().size(), 2u);
  EXPECT_EQ(d.class_names(), (std::vector<std::string>{"background", "a", "b"}));
  EXPECT_EQ(d.background_ids(), (std::vector<int64_t>{0}));
  EXPECT_EQ(d.feature_dim(), 3);
  EXPECT_EQ(d.frames(), 10);
  const auto& v1 = d.videos()[0];
  EXPECT_EQ(v1.name, "v1");
  EXPECT_EQ(v1.labels, (std::vector<int64_t>{0, 1, 1, 2, 2, 2}));
  EXPECT_EQ(v1.transcript(), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(v1.action_set(), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_FLOAT_EQ(v1.features.values[1 * 6 + 4], 10.0f);  // row 1, frame 4
  // Every second frame, as MS-TCN reads 50Salads: frames 0, 2, 4.
  const pipeline::SegmentationDataset half(options(dir, 2));
  const auto& h = half.videos()[0];
  EXPECT_EQ(h.labels, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(h.features.cols, 3);
  EXPECT_FLOAT_EQ(h.features.values[1 * 3 + 2], 10.0f);  // row 1, frame 4 of the original
}

TEST(SegmentationData, RefusesBadInputNamingTheFile) {
  ASSERT_TRUE(testing::have_reference_python());
  const std::string dir = testing::temp_dir();
  tiny_layout(dir);
  const auto fails_with = [&](const std::string& text) {
    EXPECT_THAT([&] { pipeline::SegmentationDataset d(options(dir)); },
                ::testing::ThrowsMessage<Error>(HasSubstr(text)));
  };
  // Features with another number of frames than labels.
  std::ofstream(dir + "/groundTruth/v2.txt") << "a\na\nb\n";
  fails_with(dir + "/features/v2.npy: 4 frames (D x T = 3 x 4), but " + dir + "/groundTruth/v2.txt labels 3");
  // A label the mapping lacks, with its line.
  std::ofstream(dir + "/groundTruth/v2.txt") << "a\na\nc\nb\n";
  fails_with(dir + "/groundTruth/v2.txt:3: label 'c' is not in the mapping");
  std::ofstream(dir + "/groundTruth/v2.txt") << "a\na\nb\nb\n";
  // float64 and Fortran order, written by numpy.
  testing::run_python(dir, "import numpy as np\n"
                           "np.save('" + dir + "/features/v2.npy', np.zeros((3, 4)))\n"
                           "np.save('" + dir + "/f.npy', np.asfortranarray(np.zeros((3, 4), np.float32)))\n"
                           "open(OUT, 'w').write('ok')\n");
  fails_with(dir + "/features/v2.npy: features must be float32 ('<f4'), the file holds '<f8'");
  fs::copy_file(dir + "/f.npy", dir + "/features/v2.npy", fs::copy_options::overwrite_existing);
  fails_with(dir + "/features/v2.npy: a Fortran-order array");
  // An empty split, a missing ground truth, a background the mapping lacks.
  tiny_layout(dir);
  std::ofstream(dir + "/splits/train.split1.bundle") << "\n";
  fails_with("the split '" + dir + "/splits/train.split1.bundle' lists no videos");
  std::ofstream(dir + "/splits/train.split1.bundle") << "v3.txt\n";
  fails_with("cannot read '" + dir + "/groundTruth/v3.txt' (listed in " + dir + "/splits/train.split1.bundle)");
  tiny_layout(dir);
  auto o = options(dir);
  o.background = {"SIL"};
  EXPECT_THAT([&] { pipeline::SegmentationDataset d(o); },
              ::testing::ThrowsMessage<Error>(HasSubstr("the background label 'SIL' is not in it")));
}

TEST(SegmentationData, SynthesisFollowsItsGrammar) {
  const std::string dir = testing::temp_dir();
  pipeline::SegmentationSynthOptions o;
  o.out = dir;
  o.seed = 3;
  o.videos = 24;
  const auto r = pipeline::write_segmentation_synth(o);
  EXPECT_EQ(r.videos, 24);
  pipeline::SegmentationDataOptions d;
  d.root = dir;
  d.bundle = dir + "/splits/train.split1.bundle";
  const pipeline::SegmentationDataset train(d);
  d.bundle = dir + "/splits/test.split1.bundle";
  const pipeline::SegmentationDataset test(d);
  EXPECT_EQ(train.videos().size(), 18u);
  EXPECT_EQ(test.videos().size(), 6u);
  EXPECT_EQ(train.feature_dim(), 24);
  for (const auto& v : train.videos()) {
    const auto t = v.transcript();
    // Background opens and closes every video; "take" (1) comes first and "serve" (8) last.
    EXPECT_EQ(t.front(), 0) << v.name;
    EXPECT_EQ(t.back(), 0) << v.name;
    EXPECT_EQ(t[1], 1) << v.name;
    EXPECT_EQ(t[t.size() - 2], 8) << v.name;
  }
  // The same options write the same bytes.
  const std::string again = dir + "-again";
  fs::remove_all(again);
  o.out = again;
  pipeline::write_segmentation_synth(o);
  const auto read = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  EXPECT_EQ(read(dir + "/features/video_0005.npy"), read(again + "/features/video_0005.npy"));
}

TEST(MsTcn, EqualsTheReleasedPyTorchModel) {
  ASSERT_TRUE(testing::have_reference_python());
  const std::string dir = testing::temp_dir();
  // MS-TCN's model.py (MultiStageModel, SingleStageModel, DilatedResidualLayer), written out
  // once in bench/segmentation_baseline.py, and its loss; 50Salads' sizes: D = 2048, 19
  // classes, 4 stages of 10 layers and 64 maps.
  const std::string out = testing::run_python(dir, R"(
import sys
sys.path.insert(0, ')" + holo::testing::source_dir() + R"(/bench')
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from segmentation_baseline import MultiStageModel
torch.manual_seed(0)
m = MultiStageModel(4, 10, 64, 2048, 19).eval()
torch.save(m.state_dict(), ')" + dir + R"(/mstcn.pt')
T = 50
x = torch.randn(1, 2048, T)
mask = torch.ones(1, 19, T); mask[:, :, 40:] = 0
x[:, :, 40:] = 0
with torch.no_grad():
    y = m(x, mask)
np.save(')" + dir + R"(/x.npy', x[0].numpy())
np.save(')" + dir + R"(/y.npy', y.reshape(4 * 19, T).numpy())
target = torch.randint(0, 19, (1, T)); target[:, 40:] = -100
ce = nn.CrossEntropyLoss(ignore_index=-100); mse = nn.MSELoss(reduction='none')
loss = 0
for p in y:
    loss += ce(p.transpose(2, 1).contiguous().view(-1, 19), target.view(-1))
    loss += 0.15 * torch.mean(torch.clamp(mse(F.log_softmax(p[:, :, 1:], dim=1), F.log_softmax(p.detach()[:, :, :-1], dim=1)), min=0, max=16) * mask[:, :, 1:])
np.save(')" + dir + R"(/target.npy', target.float().numpy())
with open(OUT, 'w') as f:
    f.write('%d %.17g\n' % (sum(p.numel() for p in m.parameters()), loss.item()))
)");
  const auto ref = testing::parse_numbers(out);
  ASSERT_EQ(ref.size(), 2u) << out;
  models::MultiStageTcnOptions o;
  o.in_dim = 2048;
  o.classes = 19;
  models::MultiStageTcn net(o);
  int64_t params = 0;
  for (const auto& p : net->parameters()) params += p.numel();
  EXPECT_EQ(params, static_cast<int64_t>(ref[0]));
  EXPECT_EQ(params, 800'396);  // 50Salads: stage 1 297,491 (D = 2048), stages 2-4 167,635 each
  // The release's state dict loads by name, every tensor of both sides.
  testing::load_twin_state(*net, dir + "/mstcn.pt");
  torch::NoGradGuard no_grad;
  net->eval();
  const NpyMatrix x = pipeline::read_npy_matrix(dir + "/x.npy");
  const NpyMatrix y = pipeline::read_npy_matrix(dir + "/y.npy");
  const NpyMatrix target = pipeline::read_npy_matrix(dir + "/target.npy");
  const torch::Tensor input = torch::from_blob(const_cast<float*>(x.values.data()), {1, 2048, 50}).clone();
  torch::Tensor mask = torch::ones({1, 50});
  mask.narrow(1, 40, 10).zero_();
  const torch::Tensor logits = net->forward(input, mask);
  const torch::Tensor expected = torch::from_blob(const_cast<float*>(y.values.data()), {4, 1, 19, 50}).clone();
  EXPECT_LT((logits - expected).abs().max().item<double>(), 1e-4);
  const torch::Tensor labels =
      torch::from_blob(const_cast<float*>(target.values.data()), {1, 50}).clone().to(torch::kInt64);
  EXPECT_NEAR(train::mstcn_loss(expected, labels, mask, 0.15).item<double>(), ref[1], 1e-5);
}

class SegmentationRun : public ::testing::Test {
 protected:
  static holo::testing::CommandResult holo(const std::string& args) {
    return holo::testing::run_command("HOLO_NUM_THREADS=1 " + holo::testing::holo_binary() + " " + args);
  }
  std::string recipe(const std::string& dir) {
    const std::string data = dir + "/data";
    EXPECT_EQ(holo("data synth --kind segmentation --videos 16 --seed 4 --out " + data).exit_code, 0);
    std::ofstream(dir + "/r.toml") << "[run]\nseed = 2\ndir = \"" << dir << "/run\"\n"
                                   << "[data]\ndataset = \"mstcn\"\nroot = \"" << data << "\"\ntrain = \"" << data
                                   << "/splits/train.split1.bundle\"\nval = \"" << data
                                   << "/splits/test.split1.bundle\"\n"
                                   << "[loader]\nbatch_size = 2\n"
                                   << "[model]\nname = \"mstcn\"\ntcn_stages = 2\ntcn_layers = 4\ntcn_channels = 16\n"
                                   << "[task]\nkind = \"segmentation\"\n"
                                   << "[optim]\nname = \"adamw\"\nlr = 0.001\nweight_decay = 0.0\n"
                                   << "[schedule]\nkind = \"constant\"\n"
                                   << "[train]\nepochs = 4\nlog_every = 1\n"
                                   << "[checkpoint]\nevery_steps = 3\n";
    return dir + "/r.toml";
  }
};

TEST_F(SegmentationRun, TwelveStepsEqualSixAndSixResumed) {
  const std::string dir = holo::testing::temp_dir();
  const std::string r = recipe(dir);
  // 12 training videos in batches of 2: 6 steps per epoch.
  auto a = holo("train " + r + " --set run.dir=" + dir + "/whole --set train.max_steps=12");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_THAT(a.output, HasSubstr("validation at step 6: mof = "));
  ASSERT_EQ(holo("train " + r + " --set run.dir=" + dir + "/part --set train.max_steps=6").exit_code, 0);
  auto b = holo("train " + r + " --set run.dir=" + dir + "/part --set train.max_steps=12");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_THAT(b.output, HasSubstr("resumed from"));
  EXPECT_GT(testing::expect_same_checkpoints(dir + "/whole/checkpoints", dir + "/part/checkpoints", 12), 20);
  const auto whole = ckpt::Manager::load_latest(dir + "/whole/checkpoints", 0, 1);
  ASSERT_TRUE(whole);
  // The validation lines give the segmentation metrics.
  std::ifstream lines(dir + "/whole/metrics.jsonl");
  int64_t validations = 0;
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.at("split") != "val") continue;
    ++validations;
    for (const char* key : {"mof", "edit", "f1@10", "f1@25", "f1@50", "videos"}) EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j.at("videos").get<double>(), 4);
  }
  EXPECT_EQ(validations, 2);

  // holo eval writes the predictions in the groundTruth format; holo metrics segmentation on
  // them, restricted to the split's bundle, gives the same figures as the evaluation.
  auto e = holo("eval " + r + " --set run.dir=" + dir + "/whole --checkpoint " + dir + "/whole --out " + dir +
                "/eval --save-predictions");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_THAT(e.output, HasSubstr("predictions: " + dir + "/eval/predictions-val"));
  const auto evaluated = nlohmann::json::parse(std::ifstream(dir + "/eval/eval-val.json")).at("metrics");
  EXPECT_EQ(evaluated.at("videos").get<double>(), 4);
  EXPECT_NEAR(evaluated.at("mof").get<double>(), whole->meta.at("last_val").at("mof").get<double>(), 1e-9);
  const std::string data = dir + "/data";
  auto m = holo("metrics segmentation --gt " + data + "/groundTruth --pred " + dir + "/eval/predictions-val --mapping " +
                data + "/mapping.txt --bg background --bundle " + data + "/splits/test.split1.bundle");
  ASSERT_EQ(m.exit_code, 0) << m.output;
  char mof[32];
  std::snprintf(mof, sizeof mof, "%.2f", evaluated.at("mof").get<double>());
  EXPECT_THAT(m.output, ::testing::ContainsRegex(std::string("MoF +") + mof)) << m.output;
  EXPECT_THAT(m.output, ::testing::ContainsRegex("videos +4\n"));
}

TEST_F(SegmentationRun, MismatchedRecipesStopBeforeWork) {
  const std::string dir = holo::testing::temp_dir();
  const std::string r = recipe(dir);
  auto c = holo("train " + r + " --set model.name=r3d18");
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_THAT(c.output, HasSubstr("model.name"));
  EXPECT_THAT(c.output, HasSubstr("set model.name = \"mstcn\""));
  c = holo("train " + r + " --set task.kind=classification");
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_THAT(c.output, HasSubstr("set task.kind = \"segmentation\""));
  c = holo("train " + r + " --set data.root=" + dir);
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_THAT(c.output, HasSubstr("has no features/ folder"));
  EXPECT_FALSE(fs::exists(dir + "/run"));
}

TEST_F(SegmentationRun, ResumesOnAnotherNumberOfRanksTrainingEveryVideoOnce) {
  // 12 training videos, 2 per rank and step. From 2 ranks (3 steps an epoch) stopped after 2
  // steps, 4 videos of epoch 0 are left: 3 ranks take them in one uneven step (2, 1, 1). From 3
  // ranks (2 steps) stopped after 1, 6 are left: 2 ranks take a whole step of 4 and an uneven
  // one (1, 1).
  for (const auto& [first, second, steps] : std::vector<std::tuple<int, int, int>>{{2, 3, 2}, {3, 2, 1}}) {
    const std::string d = holo::testing::temp_dir() + "/" + std::to_string(first) + "to" + std::to_string(second);
    fs::create_directories(d);
    const std::string r = recipe(d);
    const std::string env = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HOLO_SAMPLE_LOG=" + d + "/samples ";
    auto a = holo::testing::run_command(env + "HOLO_NUM_THREADS=1 " + holo::testing::holo_binary() + " launch --np " +
                                        std::to_string(first) + " " + r + " --set train.epochs=2 --set train.max_steps=" +
                                        std::to_string(steps));
    ASSERT_EQ(a.exit_code, 0) << a.output;
    auto b = holo::testing::run_command(env + "HOLO_NUM_THREADS=1 " + holo::testing::holo_binary() + " launch --np " +
                                        std::to_string(second) + " " + r + " --set train.epochs=2");
    ASSERT_EQ(b.exit_code, 0) << b.output;
    EXPECT_THAT(b.output, HasSubstr("saved by " + std::to_string(first) + " rank(s)"));
    std::map<int64_t, std::multiset<int64_t>> per_epoch;
    for (int rank = 0; rank < 3; ++rank) {
      std::ifstream in(d + "/samples.rank" + std::to_string(rank));
      int64_t e, step, video;
      while (in >> e >> step >> video) per_epoch[e].insert(video);
    }
    ASSERT_EQ(per_epoch.size(), 2u) << first << "->" << second;
    for (const auto& [epoch, videos] : per_epoch) {
      EXPECT_EQ(videos.size(), 12u) << first << "->" << second << " epoch " << epoch;
      EXPECT_EQ(std::set<int64_t>(videos.begin(), videos.end()).size(), 12u) << first << "->" << second;
    }
    const auto done = nlohmann::json::parse(std::ifstream(d + "/run/summary.json"));
    EXPECT_EQ(done.at("epoch").get<int64_t>(), 2);
  }
}

TEST_F(SegmentationRun, PerFrameFeaturesOfOwnVideosTrainASegmentationRecipe) {
  // A user's own videos: a video network (trained one step here) gives a feature per frame
  // (holo extract --per-frame), per-frame labels in MS-TCN's groundTruth format go beside, and a
  // segmentation recipe trains on them through data.features.
  const std::string dir = holo::testing::temp_dir();
  ASSERT_EQ(holo("data synth --kind motion --classes 2 --videos 8 --frames 12 --size 48x32 --seed 3 --out " + dir +
                 "/videos").exit_code, 0);
  const std::string v = dir + "/videos";
  std::ofstream(dir + "/video.toml") << "[run]\nseed = 3\ndir = \"" << dir << "/vrun\"\n"
                                     << "[data]\ndataset = \"kinetics\"\nroot = \"" << v << "\"\ntrain = \"" << v
                                     << "/train.csv\"\n"
                                     << "[sampling]\nnum_frames = 4\nstride = 2\n"
                                     << "[transform]\ncrop_size = 32\ntrain_scale_min = 32\ntrain_scale_max = 36\n"
                                     << "test_scale = 32\n"
                                     << "[loader]\nbatch_size = 2\nworkers = 1\n"
                                     << "[model]\nname = \"resnet3d\"\ndepth = 10\nwidth = 0.125\n"
                                     << "[train]\nmax_steps = 1\n";
  auto r = holo("train " + dir + "/video.toml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = holo("extract " + dir + "/video.toml --checkpoint " + dir + "/vrun --split train --out " + dir +
           "/store --per-frame");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("wrote per-frame features (frames x D) of"));
  const pipeline::FeatureReader store(dir + "/store");
  const auto ids = store.ids();
  ASSERT_GE(ids.size(), 4u);
  for (const auto& id : ids) {
    const torch::Tensor f = store.read(id);
    ASSERT_EQ(f.dim(), 2) << id;
    EXPECT_EQ(f.size(0), 12) << id;  // a feature for every frame
    EXPECT_EQ(f.size(1), 64) << id;  // resnet3d-10 at width 1/8: 512 / 8
    // Frames far apart see different clips.
    EXPECT_FALSE(torch::allclose(f[0], f[11])) << id;
  }
  // The segmentation layout: the first 6 frames "a", the rest "b".
  const std::string seg = dir + "/seg";
  fs::create_directories(seg + "/groundTruth");
  fs::create_directories(seg + "/splits");
  std::ofstream(seg + "/mapping.txt") << "0 background\n1 a\n2 b\n";
  {
    std::ofstream bundle(seg + "/splits/train.bundle");
    for (const auto& id : ids) {
      bundle << id << ".txt\n";
      std::ofstream gt(seg + "/groundTruth/" + id + ".txt");
      for (int t = 0; t < 12; ++t) gt << (t < 6 ? "a" : "b") << "\n";
    }
  }
  std::ofstream(dir + "/seg.toml") << "[run]\ndir = \"" << dir << "/srun\"\n"
                                   << "[data]\ndataset = \"mstcn\"\nroot = \"" << seg << "\"\ntrain = \"" << seg
                                   << "/splits/train.bundle\"\nfeatures = \"" << dir << "/store\"\n"
                                   << "[loader]\nbatch_size = 2\n"
                                   << "[model]\nname = \"mstcn\"\ntcn_stages = 2\ntcn_layers = 3\ntcn_channels = 8\n"
                                   << "[task]\nkind = \"segmentation\"\n"
                                   << "[optim]\nname = \"adamw\"\nlr = 0.001\n"
                                   << "[train]\nmax_steps = 2\n";
  r = holo("train " + dir + "/seg.toml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("features of dimension 64"));
  // A video the store lacks is named with the store.
  std::ofstream(seg + "/splits/train.bundle", std::ios::app) << "not_extracted.txt\n";
  std::ofstream(seg + "/groundTruth/not_extracted.txt") << "a\n";
  r = holo("train " + dir + "/seg.toml --set run.dir=" + dir + "/srun2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(dir + "/store: no features of video 'not_extracted'"));
}

TEST_F(SegmentationRun, ModelInfoAndListShowMsTcn) {
  // 50Salads' sizes: the release's 800,396 parameters (MsTcn.EqualsTheReleasedPyTorchModel).
  auto r = holo("model info mstcn --classes 19");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::ContainsRegex("total +800396"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("stage1 +2048 +297491"));
  // A recipe's own data sets D and the classes.
  const std::string dir = holo::testing::temp_dir();
  r = holo("model info " + recipe(dir));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("features D = 24, 9 classes (the recipe's training split)"));
  r = holo("model list");
  EXPECT_THAT(r.output, HasSubstr("mstcn"));
}

}  // namespace
}  // namespace holo
