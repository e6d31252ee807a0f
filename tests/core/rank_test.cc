// The one rank discovery (core/rank.h): every combination of launcher variables, and the
// identity that logs and errors carry reading the same answer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <ostream>
#include <string>

#include "core/error.h"
#include "core/rank.h"

namespace holo {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

using Vars = std::map<std::string, std::string>;

/// A fake environment for discover_rank.
EnvLookup env(Vars vars) {
  auto shared = std::make_shared<Vars>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

struct Case {
  std::string name;
  Vars vars;
  int rank, size, local_rank, local_size;
  std::string launcher;
  bool mpi;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

const Vars kOpenMpi = {{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                       {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}};
const Vars kPmix = {{"PMIX_RANK", "3"}};
const Vars kSlurmStep = {{"SLURM_PROCID", "6"}, {"SLURM_STEP_ID", "2"},
                         {"SLURM_STEP_NUM_TASKS", "7"}, {"SLURM_NTASKS", "16"},
                         {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "2"},
                         {"SLURM_STEP_TASKS_PER_NODE", "3(x2),1"}};
// What sbatch gives the batch script itself: one process.
const Vars kSlurmBatch = {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}, {"SLURM_JOB_ID", "42"}};
const Vars kTorchrun = {{"RANK", "2"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"},
                        {"LOCAL_WORLD_SIZE", "2"}};

Vars merge(std::initializer_list<Vars> parts) {
  Vars out;
  for (const auto& p : parts) out.insert(p.begin(), p.end());  // earlier parts win a clash
  return out;
}

class Discovery : public ::testing::TestWithParam<Case> {};

TEST_P(Discovery, FirstLauncherInPrecedenceWins) {
  const Case& c = GetParam();
  const LauncherRank r = discover_rank(env(c.vars));
  EXPECT_EQ(r.launcher, c.launcher);
  EXPECT_EQ(r.mpi, c.mpi);
  EXPECT_EQ(r.rank, c.rank);
  EXPECT_EQ(r.size, c.size);
  EXPECT_EQ(r.local_rank, c.local_rank);
  EXPECT_EQ(r.local_size, c.local_size);
}

INSTANTIATE_TEST_SUITE_P(
    Rank, Discovery,
    ::testing::Values(
        Case{"Nothing", {}, 0, 1, 0, 1, "none", false},
        Case{"OpenMpi", kOpenMpi, 5, 8, 1, 4, "openmpi", true},
        Case{"OpenMpiWinsOverEverything",
             merge({kOpenMpi, kPmix, kSlurmStep, kTorchrun}), 5, 8, 1, 4, "openmpi", true},
        Case{"OpenMpiInsideABatchScript", merge({kOpenMpi, kSlurmBatch}), 5, 8, 1, 4, "openmpi",
             true},
        Case{"PmixAloneSizeUnknownUntilMpi", kPmix, 3, 4, -1, -1, "pmix", true},
        Case{"PmixWinsOverItsSlurmStep",
             {{"PMIX_RANK", "4"}, {"SLURM_PROCID", "4"}, {"SLURM_STEP_ID", "0"},
              {"SLURM_STEP_NUM_TASKS", "6"}, {"SLURM_NTASKS", "12"}, {"SLURM_LOCALID", "1"}},
             4, 6, 1, -1, "pmix", true},
        Case{"SlurmStep", kSlurmStep, 6, 7, 0, 1, "slurm", true},
        Case{"SlurmStepWinsOverTorchrun", merge({kSlurmStep, kTorchrun}), 6, 7, 0, 1, "slurm",
             true},
        Case{"SlurmStepSizeFromNtasksWithoutStepCount",
             {{"SLURM_PROCID", "1"}, {"SLURM_STEP_ID", "0"}, {"SLURM_NTASKS", "2"}}, 1, 2, -1,
             -1, "slurm", true},
        Case{"SlurmBatchScriptIsOneProcess", kSlurmBatch, 0, 1, 0, 1, "none", false},
        Case{"SlurmProcidWithoutStepIsNotARank",
             {{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "8"}}, 0, 1, 0, 1, "none", false},
        Case{"TorchrunInsideABatchScript", merge({kTorchrun, kSlurmBatch}), 2, 4, 0, 2,
             "torchrun", false},
        Case{"TorchrunWithoutLocalVariablesIsAloneOnItsHost",
             {{"RANK", "1"}, {"WORLD_SIZE", "3"}}, 1, 3, 0, 1, "torchrun", false},
        Case{"RankWithoutWorldSizeIsNotARank", {{"RANK", "3"}, {"LOCAL_RANK", "1"}}, 0, 1, 0, 1,
             "none", false},
        Case{"EmptyVariablesCountAsUnset",
             {{"OMPI_COMM_WORLD_RANK", ""}, {"PMIX_RANK", ""}, {"SLURM_STEP_ID", ""},
              {"SLURM_PROCID", "2"}},
             0, 1, 0, 1, "none", false}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(Rank, MalformedOrContradictoryVariablesAreUsageErrors) {
  EXPECT_THAT([] { discover_rank(env({{"OMPI_COMM_WORLD_RANK", "x1"}})); },
              ThrowsMessage<UsageError>(HasSubstr("OMPI_COMM_WORLD_RANK='x1'")));
  EXPECT_THAT([] { discover_rank(env({{"SLURM_PROCID", "-1"}, {"SLURM_STEP_ID", "0"}})); },
              ThrowsMessage<UsageError>(HasSubstr("SLURM_PROCID='-1'")));
  EXPECT_THAT([] { discover_rank(env({{"OMPI_COMM_WORLD_RANK", "4"},
                                      {"OMPI_COMM_WORLD_SIZE", "4"}})); },
              ThrowsMessage<UsageError>(HasSubstr("(openmpi) give rank 4 of a world of 4")));
  EXPECT_THAT([] { discover_rank(env({{"RANK", "0"}, {"WORLD_SIZE", "0"}})); },
              ThrowsMessage<UsageError>(HasSubstr("(torchrun) give rank 0 of a world of 0")));
  // A variable of a launcher further down the precedence is not read at all.
  EXPECT_EQ(discover_rank(env({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                               {"SLURM_PROCID", "x"}, {"SLURM_STEP_ID", "0"}}))
                .rank,
            1);
}

/// Sets the variables in this process's environment, clearing the other launcher variables.
void set_environment(const Vars& vars) {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                           "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
                           "PMIX_RANK", "SLURM_PROCID", "SLURM_STEP_ID", "SLURM_NTASKS",
                           "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NODEID",
                           "SLURM_STEP_TASKS_PER_NODE", "SLURM_JOB_ID", "RANK", "WORLD_SIZE",
                           "LOCAL_RANK", "LOCAL_WORLD_SIZE"}) {
    unsetenv(name);
  }
  for (const auto& [name, value] : vars) setenv(name.c_str(), value.c_str(), 1);
}

TEST(Rank, ReadsTheProcessEnvironment) {
  set_environment(merge({kSlurmStep, kTorchrun}));
  const LauncherRank r = discover_rank();
  EXPECT_EQ(r.launcher, "slurm");
  EXPECT_EQ(r.rank, 6);
  set_environment({});
}

/// The identity in log lines and error messages is read once, on first use; a death test in
/// the "threadsafe" style runs the statement in a fresh copy of this binary, where that first
/// use happens after the environment below is set.
void expect_identity(const Vars& vars, const std::string& expected) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  set_environment(vars);
  EXPECT_EXIT(
      {
        std::fprintf(stderr, "identity: rank %d of %d\n", process_identity().rank,
                     process_identity().world_size);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), expected);
  set_environment({});
}

TEST(RankDeathTest, LogAndErrorIdentityUseTheSameDiscovery) {
  expect_identity(kOpenMpi, "identity: rank 5 of 8");
  expect_identity(merge({kOpenMpi, kSlurmStep}), "identity: rank 5 of 8");
  expect_identity(kSlurmStep, "identity: rank 6 of 7");
  // A batch script is one process, whatever SLURM_NTASKS says: no "[rank 0]" prefixes, no
  // rank files.
  expect_identity({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "8"}}, "identity: rank 0 of 1");
  expect_identity(kTorchrun, "identity: rank 2 of 4");
  // Variables that do not parse leave rank 0 of 1 (dist::init_world reports them).
  expect_identity({{"OMPI_COMM_WORLD_RANK", "x"}}, "identity: rank 0 of 1");
}

}  // namespace
}  // namespace holo
