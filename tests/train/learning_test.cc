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
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

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

class Learning : public ::testing::Test {
 protected:
  static std::string root() {
    const char* t = std::getenv("HOLO_TEST_TMP");
    return std::string(t ? t : "/tmp/holo-test") + "/learning";
  }

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

}  // namespace
}  // namespace holo
