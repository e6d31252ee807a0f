// What a terminal shows of a job of several ranks: rank 0's log lines and progress only, every
// other rank's warnings and errors tagged with its rank, and each rank's whole log in
// <run dir>/logs/rank-<N>.log. Under `holo launch` (mpirun), under a pseudo-terminal made by
// script(1), and under a bare mpirun on a pseudo-terminal (the rank comes from OpenMPI's
// variables, as from SLURM's under srun).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace holo::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string data_root() {
  const char* t = std::getenv("HOLO_TEST_TMP");
  return std::string(t ? t : "/tmp/holo-test") + "/launch-log-data";
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// How often `needle` occurs in `text`.
size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

/// What a terminal shows line by line: the text between carriage returns and newlines.
std::vector<std::string> segments(const std::string& out) {
  std::vector<std::string> segs;
  std::string seg;
  for (char c : out + "\n") {
    if (c == '\r' || c == '\n') {
      if (!seg.empty()) segs.push_back(seg);
      seg.clear();
    } else {
      seg += c;
    }
  }
  return segs;
}

class LaunchLog : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::remove_all(data_root());
    const auto r = run_command(holo_binary() + " data synth --kind motion --out " + data_root() +
                               " --classes 2 --videos 16 --frames 16 --size 48x32 --seed 5");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // A video the annotations name but the folder lacks: every rank warns about it.
    std::ofstream(data_root() + "/train.csv", std::ios::app)
        << "moving_left,NoSuchVideo,0,2,train\n";
  }

  /// A small recipe with validation; the run directory is `dir`/run.
  static std::string recipe(const std::string& dir) {
    const std::string m = data_root();
    const std::string path = dir + "/recipe.toml";
    fs::create_directories(dir);
    std::ofstream(path)
        << "[run]\nseed = 3\ndir = \"" << dir << "/run\"\n"
        << "[data]\ndataset = \"kinetics\"\nroot = \"" << m << "\"\ntrain = \"" << m
        << "/train.csv\"\nval = \"" << m << "/val.csv\"\nmax_bad_fraction = 0.5\n"
        << "[sampling]\nnum_frames = 4\nstride = 2\ntest_clips = 1\ntest_crops = 1\n"
        << "[transform]\ncrop_size = 32\ntrain_scale_min = 32\ntrain_scale_max = 36\ntest_scale = "
           "32\n"
        << "[loader]\nbatch_size = 2\nworkers = 1\n"
        << "[model]\nname = \"resnet3d\"\ndepth = 10\nwidth = 0.125\n"
        << "[train]\nepochs = 1\nmax_steps = 3\nlog_every = 1\n"
        << "[checkpoint]\nevery_steps = 0\n";
    return path;
  }

  static constexpr const char* kEnv =
      "HOLO_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";
  static constexpr const char* kTrainLine = "info training resnet3d on classification (2 ranks)";
  static constexpr const char* kWarning =
      "warning kinetics:train: 1 of ";  // "... N videos are missing"

  /// Checks what a terminal shows of a 2-rank training run, and rank 1's log file.
  static void expect_rank_zero_only(const std::string& out, const std::string& run) {
    // Each info line once, from rank 0.
    EXPECT_EQ(count(out, kTrainLine), 1u) << out;
    EXPECT_THAT(out, HasSubstr(std::string("[rank 0] ") + kTrainLine)) << out;
    EXPECT_THAT(out, HasSubstr("[rank 0] info validation at step")) << out;
    EXPECT_EQ(count(out, "validation at step"), 1u) << out;
    for (const auto& seg : segments(out)) {
      if (seg.find("[rank 1]") == std::string::npos) continue;
      // Rank 1 shows its warnings (and errors) only: no info line, no progress.
      EXPECT_TRUE(seg.find("[rank 1] warning") != std::string::npos ||
                  seg.find("[rank 1] error") != std::string::npos)
          << "rank 1 on the terminal: " << seg;
      EXPECT_THAT(seg, Not(HasSubstr("/s ETA"))) << seg;
    }
    // Rank 1's warnings reach the terminal, tagged with its rank.
    EXPECT_THAT(out, HasSubstr(std::string("[rank 1] ") + kWarning)) << out;
    EXPECT_THAT(out, HasSubstr(std::string("[rank 0] ") + kWarning)) << out;
    // Rank 1's whole log is in its own file: info lines, its progress, its warnings.
    const std::string log = read_text(run + "/logs/rank-1.log");
    EXPECT_THAT(log, HasSubstr(std::string("[rank 1] ") + kTrainLine)) << log;
    EXPECT_THAT(log, HasSubstr("[rank 1] info validate")) << log;
    EXPECT_THAT(log, HasSubstr(std::string("[rank 1] ") + kWarning)) << log;
    EXPECT_THAT(log, Not(HasSubstr("[rank 0]"))) << log;
    EXPECT_FALSE(fs::exists(run + "/logs/rank-0.log"));
    // Rank 0's own file is train.log, as for one rank.
    EXPECT_THAT(read_text(run + "/train.log"), HasSubstr(std::string("[rank 0] ") + kTrainLine));
  }
};

TEST_F(LaunchLog, OnlyRankZeroPrintsInfoLinesAndOtherRanksLogToTheirFiles) {
  const std::string d = temp_dir();
  const auto r = run_command(std::string(kEnv) + holo_binary() + " launch --np 2 " + recipe(d));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_rank_zero_only(r.output, d + "/run");
  EXPECT_THAT(r.output, HasSubstr("rank 1 logs to " + d + "/run/logs/rank-<N>.log")) << r.output;
}

TEST_F(LaunchLog, OnATerminalToo) {
  ASSERT_EQ(run_command("script --version").exit_code, 0) << "script(1) from bsdutils is missing";
  const std::string d = temp_dir();
  // holo launch on a terminal, and a bare mpirun on one (rank 0 then draws its bars).
  const auto launched =
      run_command("script -qec '" + std::string(kEnv) + "HOLO_PROGRESS=auto " + holo_binary() +
                  " launch --np 2 " + recipe(d + "/launch") + "' /dev/null");
  ASSERT_EQ(launched.exit_code, 0) << launched.output;
  expect_rank_zero_only(launched.output, d + "/launch/run");

  const char* mpirun = std::getenv("HOLO_MPIEXEC");
  const auto bare =
      run_command("script -qec '" + std::string(kEnv) + "HOLO_PROGRESS=auto " +
                  (mpirun ? mpirun : "mpirun") + " -np 2 " + "--oversubscribe --bind-to none " +
                  holo_binary() + " train " + recipe(d + "/mpirun") + "' /dev/null");
  ASSERT_EQ(bare.exit_code, 0) << bare.output;
  expect_rank_zero_only(bare.output, d + "/mpirun/run");
  // Rank 0 draws its bars; rank 1 draws none (its validation bar would end at 0%: it does not
  // count the batches, and its rate would be 0, "ETA --:--").
  EXPECT_THAT(bare.output, HasSubstr("\r\033[2Ktrain [")) << "rank 0's bar";
  EXPECT_EQ(count(bare.output, "validate [##############################] 100%"), 1u)
      << bare.output;
  for (const auto& seg : segments(bare.output)) {
    EXPECT_FALSE(seg.find("validate [") != std::string::npos &&
                 seg.find("ETA --:--") != std::string::npos)
        << "rank 1's bar: " << seg;
  }
}

}  // namespace
}  // namespace holo::testing
