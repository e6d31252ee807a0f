#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>

#include "core/allocator.h"
#include "core/env.h"
#include "core/error.h"
#include "core/progress.h"

namespace holo {
namespace {

using ::testing::HasSubstr;

struct ScopedEnv {
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_.empty()) unsetenv(name_); else setenv(name_, old_.c_str(), 1);
  }
  const char* name_;
  std::string old_;
};

TEST(Env, DefaultsAndTypedValues) {
  unsetenv("HOLO_NUM_THREADS");
  EXPECT_EQ(env::num_threads(), 0);
  {
    ScopedEnv e("HOLO_NUM_THREADS", "3");
    EXPECT_EQ(env::num_threads(), 3);
  }
  {
    ScopedEnv e("HOLO_COLLECTIVE_TIMEOUT", "2.5");
    EXPECT_DOUBLE_EQ(env::collective_timeout(), 2.5);
  }
  {
    ScopedEnv e("HOLO_NO_COLOR", "yes");
    EXPECT_TRUE(env::no_color());
  }
}

TEST(Env, BadValueNamesTheVariable) {
  ScopedEnv e("HOLO_NUM_THREADS", "three");
  EXPECT_THAT([] { env::num_threads(); },
              ::testing::ThrowsMessage<UsageError>(HasSubstr("HOLO_NUM_THREADS='three'")));
  ScopedEnv b("HOLO_NO_COLOR", "maybe");
  EXPECT_THAT([] { env::no_color(); },
              ::testing::ThrowsMessage<UsageError>(HasSubstr("HOLO_NO_COLOR")));
}

TEST(Env, EveryKnobListedOnceAndDocumented) {
  std::set<std::string> names;
  for (const auto& k : env::knobs()) {
    EXPECT_EQ(k.name.rfind("HOLO_", 0), 0u) << k.name;
    EXPECT_TRUE(names.insert(k.name).second) << "declared twice: " << k.name;
    EXPECT_FALSE(k.doc.empty()) << k.name;
  }
  EXPECT_EQ(names.count("HOLO_LOG_LEVEL"), 1u);
  EXPECT_EQ(names.count("HOLO_PROGRESS"), 1u);
  ScopedEnv e("HOLO_RUNS_DIR", "/x/runs");
  for (const auto& k : env::knobs()) {
    if (k.name == "HOLO_RUNS_DIR") {
      EXPECT_TRUE(k.is_set());
      EXPECT_EQ(k.value(), "/x/runs");
    }
  }
}

TEST(Progress, RenderShowsFractionRateAndEta) {
  const std::string s = Progress::render("probe", 25, 100, 5.0, "files", "ok", 10);
  EXPECT_THAT(s, HasSubstr("probe [##........]"));
  EXPECT_THAT(s, HasSubstr(" 25% 25/100"));
  EXPECT_THAT(s, HasSubstr("5.00 files/s"));
  EXPECT_THAT(s, HasSubstr("ETA 00:15"));
  EXPECT_THAT(s, HasSubstr("elapsed 00:05"));
  EXPECT_THAT(s, HasSubstr(" ok"));
}

// A resumed run starts at step 100 of 200: the bar counts from 100, the rate and the ETA only
// from the steps this process ran (not 110 steps in 10 s).
TEST(Progress, RateCountsOnlyTheItemsThisProcessDid) {
  const std::string s = Progress::render("train", 110, 200, 10.0, "steps", "", 10, 100);
  EXPECT_THAT(s, HasSubstr(" 55% 110/200"));
  EXPECT_THAT(s, HasSubstr("1.00 steps/s"));
  EXPECT_THAT(s, HasSubstr("ETA 01:30"));
}

TEST(Progress, UnknownTotalHasNoEta) {
  const std::string s = Progress::render("x", 7, 0, 2.0, "it", "", 10);
  EXPECT_THAT(s, HasSubstr("x 7 3.50 it/s"));
  EXPECT_EQ(s.find("ETA"), std::string::npos);
}

TEST(Progress, Durations) {
  EXPECT_EQ(Progress::format_duration(0), "00:00");
  EXPECT_EQ(Progress::format_duration(75), "01:15");
  EXPECT_EQ(Progress::format_duration(3723), "1:02:03");
  EXPECT_EQ(Progress::format_duration(-1), "--:--");
}

TEST(Progress, ModeFromKnobAndTerminal) {
  {
    ScopedEnv e("HOLO_PROGRESS", "off");
    Progress p({"x", 10});
    EXPECT_EQ(p.mode(), ProgressOptions::Mode::kOff);
  }
  {
    ScopedEnv e("HOLO_PROGRESS", "auto");
    Progress p({"x", 10});
    // CTest runs us with stdout on a pipe, never a terminal.
    EXPECT_EQ(p.mode(), ProgressOptions::Mode::kLines);
    p.advance(10);
    EXPECT_EQ(p.done(), 10);
  }
  ScopedEnv e("HOLO_PROGRESS", "sometimes");
  EXPECT_THROW(Progress({"x", 1}), UsageError);
}

// The peak resident memory grows by what the process touches: 64 MiB written raise it by about
// that much (VmHWM, counted per program since its exec).
TEST(Allocator, PeakResidentMemoryCountsTouchedPages) {
  const int64_t before = peak_resident_bytes();
  EXPECT_GT(before, 0);
  constexpr size_t kBytes = size_t{64} << 20;
  std::unique_ptr<char[]> block(new char[kBytes]);
  std::memset(block.get(), 1, kBytes);
  const int64_t after = peak_resident_bytes();
  EXPECT_GE(after - before, static_cast<int64_t>(kBytes) - (int64_t{4} << 20))
      << before << " -> " << after;
  EXPECT_EQ(block[kBytes - 1], 1);
}

}  // namespace
}  // namespace holo
