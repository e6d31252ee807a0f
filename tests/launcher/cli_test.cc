// The `holo` binary end to end: exit codes 0 / 1 / 2 and what it prints.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_util.h"

namespace holo {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using holo::testing::holo_binary;
using holo::testing::run_command;

TEST(Cli, VersionListsBuiltInParts) {
  const auto r = run_command(holo_binary() + " version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("holo "), HasSubstr("libtorch "), HasSubstr("CUDA"),
                              HasSubstr("NCCL"), HasSubstr("NVDEC"), HasSubstr("MPI    yes"),
                              HasSubstr("HDF5   yes")));
}

TEST(Cli, EverySubcommandHasHelp) {
  for (const char* sub : {"", "version", "env", "recipe", "recipe check", "recipe show", "recipe doc"}) {
    const auto r = run_command(holo_binary() + " " + sub + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr("Usage")) << sub;
  }
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(run_command(holo_binary()).exit_code, 2);
  EXPECT_EQ(run_command(holo_binary() + " frobnicate").exit_code, 2);
  EXPECT_EQ(run_command(holo_binary() + " recipe check").exit_code, 2);  // missing RECIPE
  const auto r = run_command("HOLO_LOG_LEVEL=loud " + holo_binary() + " version");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("loud"));
}

TEST(Cli, RecipeCheckMisspelledKeyExitsTwoNamingKeyAndLine) {
  const std::string d = holo::testing::temp_dir();
  std::ofstream(d + "/bad.toml") << "[optim]\nlr = 0.1\nweight_dacay = 1e-4\n";
  const auto r = run_command(holo_binary() + " recipe check " + d + "/bad.toml");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("bad.toml:3:1"), HasSubstr("optim.weight_dacay"),
                              HasSubstr("did you mean 'optim.weight_decay'")));
}

TEST(Cli, RecipeCheckAndShowWithOverrides) {
  const std::string d = holo::testing::temp_dir();
  std::ofstream(d + "/ok.toml") << "[optim]\nlr = 0.1\n";
  const auto ok = run_command(holo_binary() + " recipe check " + d + "/ok.toml --set optim.lr=0.05");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("1 override"));
  const auto show = run_command(holo_binary() + " recipe show " + d + "/ok.toml --set optim.lr=0.05");
  EXPECT_EQ(show.exit_code, 0) << show.output;
  EXPECT_THAT(show.output, AllOf(HasSubstr("[optim]\nname = \"sgd\"\nlr = 0.05"),
                                 HasSubstr("[slurm]")));
  const auto bad = run_command(holo_binary() + " recipe show " + d + "/ok.toml --set optim.lr=fast");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("--set optim.lr=fast"));
}

TEST(Cli, RuntimeFailureExitsOne) {
  const std::string d = holo::testing::temp_dir();
  std::ofstream(d + "/ok.toml") << "";
  const auto r = run_command(holo_binary() + " recipe show " + d + "/ok.toml --out /nonexistent/dir/r.toml");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("/nonexistent/dir/r.toml"));
}

TEST(Cli, EnvListsKnobs) {
  const auto r = run_command("HOLO_NUM_THREADS=5 " + holo_binary() + " env");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("HOLO_NUM_THREADS=5\n"), HasSubstr("HOLO_LOG_LEVEL=info  (default)")));
}

TEST(Cli, DocListsEveryKey) {
  const auto r = run_command(holo_binary() + " recipe doc");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("optim.lr (float, default 0.1, allowed 0 .. 100)"),
                              HasSubstr("[slurm]")));
}

}  // namespace
}  // namespace holo
