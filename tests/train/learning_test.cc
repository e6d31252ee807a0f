// The demo's networks learn what they should, and only that (ctest label `learning`).
//
// The demo's data (scripts/demo.sh: a shape moving left or right, drawn without the frame
// code) is synthesised with its fixed seed, and both demo recipes are trained through the
// `holo` binary for their whole schedule on one rank, with the demo's global batch of 8 clips.
// The STC-ResNet-18 must read the direction of motion; the 2D ResNet-18, which averages its
// frames' features and so never sees their order, must not. This is a correctness test of
// synthesis, decoding, transforms, models and training together: a change to any of them that
// stops the 3D network from learning, or that lets a single frame reveal the class, fails it.
// It has no time limit; docs/training.md ("The demo") has the figures it guards.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <algorithm>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "tests/test_util.h"

namespace holo {
namespace {

namespace fs = std::filesystem;
using holo::testing::holo_binary;
using holo::testing::run_command;
using holo::testing::source_dir;

/// The demo's synthesis arguments (scripts/demo.sh, SYNTH_ARGS).
constexpr const char* kSynthArgs =
    "--kind motion --classes 2 --videos 600 --frames 32 --size 48x32 --seed 1 --no-frame-code";

/// <tmp>/<name>, where a learning test keeps its data and run.
std::string learning_dir(const std::string& name) {
  const char* t = std::getenv("HOLO_TEST_TMP");
  return std::string(t ? t : "/tmp/holo-test") + "/" + name;
}

class Learning : public ::testing::Test {
 protected:
  static std::string root() { return learning_dir("learning"); }

  /// Synthesised once for both tests; a failure fails the test that asked (a failure in
  /// SetUpTestSuite would only skip them).
  void SetUp() override {
    static bool made = false;
    if (made) return;
    fs::remove_all(root());
    const auto r = run_command(holo_binary() + " data synth " + kSynthArgs + " --out " + root() + "/data");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    made = true;
  }

  /// Trains a demo recipe on the synthesised data, one rank with the demo's global batch of 8,
  /// and returns the final validation top-1 from summary.json.
  static double train_demo_recipe(const std::string& recipe, const std::string& run) {
    const std::string data = root() + "/data";
    const std::string sets = " --set data.root=" + data + " --set data.train=" + data + "/train.csv" +
                             " --set data.val=" + data + "/val.csv --set data.test=" + data + "/val.csv" +
                             " --set run.dir=" + root() + "/" + run +
                             " --set loader.batch_size=8 --set checkpoint.every_steps=0";
    const auto r = run_command("HOLO_NUM_THREADS=2 " + holo_binary() + " train " + source_dir() +
                               "/recipes/demo/" + recipe + sets);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::ifstream in(root() + "/" + run + "/summary.json");
    if (!in) {
      ADD_FAILURE() << "no summary.json for " << recipe << "\n" << r.output;
      return -1;
    }
    const auto summary = nlohmann::json::parse(in);
    EXPECT_TRUE(summary.contains("val")) << summary.dump();
    return summary.at("val").at("top1").get<double>();
  }
};

TEST_F(Learning, StcResNetReadsTheDirectionOfMotion) {
  const double top1 = train_demo_recipe("motion_stc.toml", "stc");
  EXPECT_GE(top1, 0.85) << "the demo's STC-ResNet-18 did not learn the direction of motion";
}

TEST_F(Learning, FrameAveraging2dNetworkCannotReadIt) {
  const double top1 = train_demo_recipe("motion_2d_baseline.toml", "2d");
  EXPECT_GE(top1, 0.0);
  EXPECT_LE(top1, 0.65) << "a network that averages single frames read the direction of motion: "
                           "a frame reveals the class";
}

// Segmentation (recipes/segmentation/synth_mstcn.toml): MS-TCN on the synthetic per-frame
// features, whose single frames are weak (a per-frame logistic regression reaches 29% MoF on
// them, docs/segmentation.md) but whose segments last 5-50 frames. MS-TCN must use the context:
// far above the majority class and with a segmentation that is mostly right (Edit, F1@10).
/// The majority class of the training frames of synthetic segmentation data in `data`, as MoF
/// on its test split (percent).
double majority_mof(const std::string& data) {
  std::map<std::string, int64_t> train_counts, test_counts;
  const auto count = [&](const std::string& bundle, std::map<std::string, int64_t>& counts) {
    std::ifstream list(data + "/splits/" + bundle);
    for (std::string video; std::getline(list, video);) {
      std::ifstream labels(data + "/groundTruth/" + video);
      for (std::string l; std::getline(labels, l);) ++counts[l];
    }
  };
  count("train.split1.bundle", train_counts);
  count("test.split1.bundle", test_counts);
  std::string majority;
  for (const auto& [label, n] : train_counts) {
    if (majority.empty() || n > train_counts[majority]) majority = label;
  }
  int64_t test_frames = 0;
  for (const auto& [label, n] : test_counts) test_frames += n;
  return 100.0 * static_cast<double>(test_counts[majority]) / static_cast<double>(test_frames);
}

/// The Jaccard index (percent, background left out) on the test split of synthetic segmentation
/// data in `data` of the best constant answer: the one action set that scores best on the
/// training split, predicted for every test video.
double best_constant_set_iou(const std::string& data) {
  const auto sets = [&](const std::string& bundle) {
    std::vector<std::set<std::string>> out;
    std::ifstream list(data + "/splits/" + bundle);
    for (std::string video; std::getline(list, video);) {
      std::ifstream labels(data + "/groundTruth/" + video);
      std::set<std::string> present;
      for (std::string l; std::getline(labels, l);) {
        if (l != "background") present.insert(l);
      }
      out.push_back(present);
    }
    return out;
  };
  const auto jaccard = [](const std::set<std::string>& a, const std::set<std::string>& b) {
    std::set<std::string> all = a;
    all.insert(b.begin(), b.end());
    if (all.empty()) return 1.0;
    double common = 0;
    for (const auto& x : a) common += static_cast<double>(b.count(x));
    return common / static_cast<double>(all.size());
  };
  const auto mean_jaccard = [&](const std::set<std::string>& answer, const std::vector<std::set<std::string>>& videos) {
    double sum = 0;
    for (const auto& v : videos) sum += jaccard(answer, v);
    return sum / static_cast<double>(std::max<size_t>(videos.size(), 1));
  };
  const auto train = sets("train.split1.bundle"), test = sets("test.split1.bundle");
  std::set<std::string> actions;
  for (const auto& v : train) actions.insert(v.begin(), v.end());
  const std::vector<std::string> names(actions.begin(), actions.end());
  std::set<std::string> best;
  double best_score = -1;
  for (uint32_t mask = 0; mask < (1u << names.size()); ++mask) {  // every subset of the actions
    std::set<std::string> answer;
    for (size_t i = 0; i < names.size(); ++i) {
      if (mask & (1u << i)) answer.insert(names[i]);
    }
    const double score = mean_jaccard(answer, train);
    if (score > best_score) {
      best_score = score;
      best = answer;
    }
  }
  return 100.0 * mean_jaccard(best, test);
}

/// Trains recipes/segmentation/<recipe> on `videos` synthetic videos (seed 3; `synth` adds
/// options of holo data synth) in <tmp>/<name>; returns the validation metrics of summary.json
/// and the majority-class MoF.
std::pair<nlohmann::json, double> train_segmentation(const std::string& name, const std::string& recipe,
                                                     const std::string& synth = "", int videos = 64) {
  const std::string dir = learning_dir(name);
  fs::remove_all(dir);
  const std::string data = dir + "/data";
  auto r = run_command(holo_binary() + " data synth --kind segmentation --seed 3 --videos " + std::to_string(videos) + " " + synth + " --out " + data);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_command("HOLO_NUM_THREADS=2 " + holo_binary() + " train " + source_dir() + "/recipes/segmentation/" + recipe +
                  " --set data.root=" + data + " --set data.train=" + data +
                  "/splits/train.split1.bundle --set data.val=" + data + "/splits/test.split1.bundle --set run.dir=" +
                  dir + "/run");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(dir + "/run/summary.json");
  EXPECT_TRUE(in) << r.output;
  if (!in) return {nlohmann::json::object(), 0.0};
  return {nlohmann::json::parse(in).at("val"), majority_mof(data)};
}

TEST(LearningSegmentation, MsTcnSegmentsTheSyntheticActivities) {
  const auto [val, majority] = train_segmentation("learning-segmentation", "synth_mstcn.toml");
  EXPECT_LT(majority, 30.0);
  EXPECT_GT(val.at("mof").get<double>(), majority + 30.0) << val.dump();
  EXPECT_GT(val.at("edit").get<double>(), 50.0) << val.dump();
  EXPECT_GT(val.at("f1@10").get<double>(), 50.0) << val.dump();
}

TEST(LearningSegmentation, MuConLearnsFromTranscriptsAlone) {
  // Weak supervision (ch. 9): only the ordered actions of each training video.
  const auto [val, majority] = train_segmentation("learning-mucon", "synth_mucon.toml");
  EXPECT_LT(majority, 30.0);
  EXPECT_GT(val.at("mof").get<double>(), majority + 15.0) << val.dump();   // MuCon-full
  EXPECT_GT(val.at("edit").get<double>(), 55.0) << val.dump();
  EXPECT_GT(val.at("f1@10").get<double>(), 50.0) << val.dump();
  EXPECT_GT(val.at("matching").get<double>(), 60.0) << val.dump();         // the decoded transcripts
  EXPECT_GT(val.at("s_mof").get<double>(), majority + 10.0) << val.dump();  // MuCon-S
}

TEST(LearningSegmentation, SctLearnsFromActionSetsAlone) {
  // Weak supervision (ch. 8): only the unordered set of actions in each training video. The
  // data's sets vary (every video 2-4 of 8 actions), its frames say more (prototypes of length 3
  // against unit noise) and it has 96 training videos, docs/segmentation.md "SCT".
  const auto [val, majority] =
      train_segmentation("learning-sct", "synth_sct.toml", "--grammar subsets --amplitude 3", /*videos=*/128);
  const double constant_sets = best_constant_set_iou(learning_dir("learning-sct") + "/data");
  EXPECT_LT(majority, 30.0);
  EXPECT_LT(constant_sets, 40.0);
  EXPECT_GT(val.at("mof").get<double>(), majority + 10.0) << val.dump();
  EXPECT_GT(val.at("set_iou").get<double>(), constant_sets + 15.0) << val.dump();
  EXPECT_GT(val.at("f1@10").get<double>(), 25.0) << val.dump();
}

}  // namespace
}  // namespace holo

namespace holo {
namespace {

// Transformers (chapter 7, recipes/transformers/synth_xvit_ats.toml): a small XViT with ATS in
// three of its four blocks must read the direction of motion of 2400 synthetic videos (one
// frame cannot tell it), trained like every other network: `holo launch` on two ranks,
// interrupted by SIGUSR1 after its first checkpoint, launched again to resume, then `holo eval`.
// The per-clip costs of the sampler must be recorded: fewer tokens than the blocks receive.
TEST(LearningTransformers, XvitWithAtsReadsTheDirectionOfMotionAcrossAnInterruption) {
  const std::string dir = learning_dir("learning-xvit");
  fs::remove_all(dir);
  const std::string data = dir + "/data", run = dir + "/run";
  auto r = run_command(holo_binary() + " data synth --kind motion --classes 2 --videos 2400 --frames 32 --size 48x32 "
                       "--seed 2 --no-frame-code --out " + data);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string recipe = source_dir() + "/recipes/transformers/synth_xvit_ats.toml";
  const std::string sets = " --set data.root=" + data + " --set data.train=" + data + "/train.csv --set data.val=" + data +
                           "/val.csv --set data.test=" + data + "/val.csv --set run.dir=" + run +
                           " --set loader.batch_size=4";  // two ranks: the recipe's batch of 8
  const std::string launch = "HOLO_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " +
                             holo_binary() + " launch --np 2 " + recipe + sets;
  // As scripts/demo.sh: interrupt after the first checkpoint; every worker saves and exits 3.
  // ([h]olo: the pattern must not match this shell's own command line.)
  r = run_command("(" + launch + ") & pid=$!; for i in $(seq 1 1200); do ls " + run +
                  "/checkpoints/step-* > /dev/null 2>&1 && break; kill -0 $pid 2> /dev/null || break; sleep 0.5; done; "
                  "pkill -USR1 -f '[h]olo train " + recipe + "'; wait $pid; echo \"first launch: $?\"");
  EXPECT_THAT(r.output, ::testing::HasSubstr("first launch: 3")) << r.output;
  r = run_command(launch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::HasSubstr("resum")) << r.output;
  r = run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + holo_binary() + " launch --np 2 --command eval " +
                  recipe + sets + " -- --checkpoint " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(run + "/eval-val.json");
  ASSERT_TRUE(in) << r.output;
  const auto eval = nlohmann::json::parse(in);
  EXPECT_GE(eval.at("metrics").at("top1").get<double>(), 0.85) << eval.dump();
  // 16 positions and CLS enter block 1; K_1 = max(round(0.75 * 17), 8) = 13 at most.
  const auto& cost = eval.at("cost");
  EXPECT_LE(cost.at("tokens_1").at("max").get<double>(), 14.0) << cost.dump();
  EXPECT_LT(cost.at("tokens_3").at("mean").get<double>(), cost.at("tokens_1").at("mean").get<double>()) << cost.dump();
  EXPECT_GT(cost.at("gflops").at("mean").get<double>(), 0.0) << cost.dump();
}

}  // namespace
}  // namespace holo
