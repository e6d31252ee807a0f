// The log of a job of several ranks: rank 0 writes everything to the terminal; any other rank
// writes only its warnings and errors there, and its whole log, the lines from before its folder
// was known included, to <folder>/rank-<N>.log. Only rank 0 draws progress bars.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "tests/test_util.h"

namespace holo {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

/// Makes this process rank `rank` of `size` while alive; rank 0 of 1 again after.
struct AsRank {
  AsRank(int rank, int size) {
    set_process_rank(rank, size);
    log::init("info");
  }
  ~AsRank() {
    set_process_rank(0, 1);
    log::init("warn");
  }
};

TEST(Log, OtherRanksShowOnlyWarningsAndKeepTheirWholeLogInTheirFile) {
  unsetenv("HOLO_LOG_DIR");
  const std::string dir = holo::testing::temp_dir();
  std::string terminal;
  {
    AsRank r(1, 2);
    ::testing::internal::CaptureStderr();
    spdlog::info("a line from before the folder is known");
    spdlog::warn("a warning of rank 1");
    EXPECT_EQ(log::rank_log_path(), "");
    log::set_rank_log_dir(dir + "/logs");
    spdlog::info("a line from after");
    EXPECT_EQ(log::rank_log_path(), dir + "/logs/rank-1.log");
    log::set_rank_log_dir(dir + "/elsewhere");  // the first folder stays
    log::flush();
    terminal = ::testing::internal::GetCapturedStderr();
  }
  EXPECT_THAT(terminal, HasSubstr("[rank 1] warning a warning of rank 1"));
  EXPECT_THAT(terminal, Not(HasSubstr("a line from")));
  std::ifstream in(dir + "/logs/rank-1.log");
  std::stringstream file;
  file << in.rdbuf();
  const std::string text = file.str();
  const auto before = text.find("[rank 1] info a line from before the folder is known");
  const auto warning = text.find("[rank 1] warning a warning of rank 1");
  const auto after = text.find("[rank 1] info a line from after");
  ASSERT_NE(before, std::string::npos) << text;
  ASSERT_NE(warning, std::string::npos) << text;
  ASSERT_NE(after, std::string::npos) << text;
  EXPECT_LT(before, warning);
  EXPECT_LT(warning, after);
  // Rank 0 of one: everything on the terminal, no rank file.
  EXPECT_EQ(log::rank_log_path(), "");
  ::testing::internal::CaptureStderr();
  spdlog::warn("rank 0 again");
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("warning rank 0 again"));
}

TEST(Log, RankZeroOfSeveralShowsEverything) {
  AsRank r(0, 2);
  ::testing::internal::CaptureStderr();
  spdlog::info("an info line of rank 0");
  EXPECT_THAT(::testing::internal::GetCapturedStderr(),
              HasSubstr("[rank 0] info an info line of rank 0"));
  EXPECT_EQ(log::rank_log_path(), "");
}

TEST(Log, OnlyRankZeroDrawsABar) {
  {
    AsRank r(1, 2);
    Progress p({"epoch", 10, "steps", ProgressOptions::Mode::kBar, 1000.0});
    EXPECT_EQ(p.mode(), ProgressOptions::Mode::kLines);
    Progress off({"epoch", 10, "steps", ProgressOptions::Mode::kOff, 1000.0});
    EXPECT_EQ(off.mode(), ProgressOptions::Mode::kOff);
  }
  AsRank r(0, 2);
  Progress p({"epoch", 10, "steps", ProgressOptions::Mode::kBar, 1000.0});
  EXPECT_EQ(p.mode(), ProgressOptions::Mode::kBar);
}

}  // namespace
}  // namespace holo
