// World discovery from launcher variables, and the launch plans of `holo launch`: pure
// functions, no MPI started.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/error.h"
#include "dist/world.h"
#include "launcher/launch.h"

namespace holo::dist {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

/// A fake environment for discover_world.
EnvLookup env(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

TEST(World, NoLauncherIsOneRankWithoutMpi) {
  const World w = discover_world(env({}));
  EXPECT_EQ(w.rank, 0);
  EXPECT_EQ(w.size, 1);
  EXPECT_EQ(w.local_rank, 0);
  EXPECT_EQ(w.local_size, 1);
  EXPECT_FALSE(w.mpi);
  EXPECT_EQ(w.launcher, "none");
  EXPECT_FALSE(w.host.empty());
  EXPECT_EQ(w.host_of_rank, std::vector<std::string>{w.host});
}

TEST(World, DescribeHostsGroupsRanksByHostAsRanges) {
  EXPECT_EQ(describe_hosts({"a"}), "1 rank on 1 host: a (rank 0)");
  EXPECT_EQ(describe_hosts({"node1", "node2"}), "2 ranks on 2 hosts: node1 (rank 0), node2 (rank 1)");
  // Hosts in the order of their first rank; consecutive ranks as ranges, others listed.
  EXPECT_EQ(describe_hosts({"b", "b", "b", "a", "a", "b", "c", "a"}),
            "8 ranks on 3 hosts: b (ranks 0-2, 5), a (ranks 3-4, 7), c (rank 6)");
}

TEST(World, OpenMpiVariables) {
  const World w = discover_world(env({{"OMPI_COMM_WORLD_RANK", "5"},
                                      {"OMPI_COMM_WORLD_SIZE", "8"},
                                      {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                      {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                                      {"RANK", "99"}}));  // OpenMPI wins over torchrun's
  EXPECT_EQ(w.launcher, "openmpi");
  EXPECT_TRUE(w.mpi);
  EXPECT_EQ(w.rank, 5);
  EXPECT_EQ(w.size, 8);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.local_size, 4);
}

TEST(World, PmixUnderSrunTakesSizeFromTheStep) {
  const World w = discover_world(env({{"PMIX_RANK", "3"},
                                      {"SLURM_PROCID", "3"},
                                      {"SLURM_STEP_ID", "0"},
                                      {"SLURM_STEP_NUM_TASKS", "6"},
                                      {"SLURM_NTASKS", "12"},
                                      {"SLURM_LOCALID", "1"}}));
  EXPECT_EQ(w.launcher, "pmix");
  EXPECT_TRUE(w.mpi);
  EXPECT_EQ(w.rank, 3);
  EXPECT_EQ(w.size, 6);
  EXPECT_EQ(w.local_rank, 1);
}

TEST(World, SlurmStepWithTasksPerNode) {
  const World w = discover_world(env({{"SLURM_PROCID", "6"},
                                      {"SLURM_STEP_ID", "2"},
                                      {"SLURM_STEP_NUM_TASKS", "7"},
                                      {"SLURM_LOCALID", "0"},
                                      {"SLURM_NODEID", "3"},
                                      {"SLURM_STEP_TASKS_PER_NODE", "2(x3),1"}}));
  EXPECT_EQ(w.launcher, "slurm");
  EXPECT_EQ(w.rank, 6);
  EXPECT_EQ(w.size, 7);
  EXPECT_EQ(w.local_rank, 0);
  EXPECT_EQ(w.local_size, 1);  // node 3 is the fourth entry: "1"
  const World w2 = discover_world(env({{"SLURM_PROCID", "3"},
                                       {"SLURM_STEP_ID", "2"},
                                       {"SLURM_STEP_NUM_TASKS", "7"},
                                       {"SLURM_LOCALID", "1"},
                                       {"SLURM_NODEID", "1"},
                                       {"SLURM_STEP_TASKS_PER_NODE", "2(x3),1"}}));
  EXPECT_EQ(w2.local_size, 2);
}

TEST(World, BatchScriptOutsideAStepIsOneProcess) {
  // sbatch sets SLURM_PROCID and SLURM_NTASKS for the batch script itself, which is one process.
  const World w = discover_world(env({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"},
                                      {"SLURM_JOB_ID", "42"}}));
  EXPECT_EQ(w.launcher, "none");
  EXPECT_EQ(w.size, 1);
  EXPECT_FALSE(w.mpi);
}

TEST(World, TorchrunVariables) {
  const World w = discover_world(env({{"RANK", "2"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"},
                                      {"LOCAL_WORLD_SIZE", "2"}}));
  EXPECT_EQ(w.launcher, "torchrun");
  EXPECT_FALSE(w.mpi);
  EXPECT_EQ(w.rank, 2);
  EXPECT_EQ(w.size, 4);
  EXPECT_EQ(w.local_rank, 0);
  EXPECT_EQ(w.local_size, 2);
}

TEST(World, BadVariablesAreUsageErrors) {
  EXPECT_THAT([] { discover_world(env({{"OMPI_COMM_WORLD_RANK", "x1"}})); },
              ThrowsMessage<UsageError>(HasSubstr("OMPI_COMM_WORLD_RANK='x1'")));
  EXPECT_THAT([] {
    discover_world(env({{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"}}));
  }, ThrowsMessage<UsageError>(HasSubstr("rank 4 of a world of 4")));
}

TEST(World, DeviceByLocalRank) {
  World w;
  w.local_rank = 5;
  EXPECT_EQ(select_device(w, 4), 1);
  EXPECT_EQ(select_device(w, 8), 5);
  EXPECT_EQ(select_device(w, 0), -1);
}

}  // namespace
}  // namespace holo::dist

namespace holo::launch {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::ThrowsMessage;

LaunchOptions options(int np) {
  LaunchOptions o;
  o.np = np;
  o.holo_binary = "/opt/holo/bin/holo";
  o.args = {"r.toml", "--set", "optim.lr=0.05"};
  return o;
}

Machine machine(bool root, int cores, bool slurm = false) {
  Machine m;
  m.root = root;
  m.cores = cores;
  m.in_slurm = slurm;
  m.env_names = {"HOLO_LOG_LEVEL", "PATH"};
  return m;
}

TEST(LaunchPlan, MpirunWithRootOversubscribeAndEnvironment) {
  const LaunchPlan p = plan_launch(options(4), machine(true, 2));
  EXPECT_EQ(p.via, "mpirun");
  EXPECT_EQ(to_command_line(p),
            "mpirun -np 4 --allow-run-as-root --oversubscribe --bind-to none --tag-output "
            "-x HOLO_LOG_LEVEL -x PATH /opt/holo/bin/holo train r.toml --set optim.lr=0.05");
}

TEST(LaunchPlan, NoRootFlagForUsersAndNoOversubscribeWithinCores) {
  const LaunchPlan p = plan_launch(options(2), machine(false, 8));
  EXPECT_THAT(p.argv, Not(Contains("--allow-run-as-root")));
  EXPECT_THAT(p.argv, Not(Contains("--oversubscribe")));
}

TEST(LaunchPlan, HostsGoToMpirun) {
  LaunchOptions o = options(4);
  o.hosts = {"a:2", "b:2"};
  const LaunchPlan p = plan_launch(o, machine(false, 1));
  EXPECT_THAT(to_command_line(p), HasSubstr("--host a:2,b:2"));
  EXPECT_THAT(p.argv, Not(Contains("--oversubscribe")));  // slots are the hosts' business
}

TEST(LaunchPlan, SrunInsideAnAllocation) {
  const LaunchPlan p = plan_launch(options(3), machine(false, 2, true));
  EXPECT_EQ(p.via, "srun");
  EXPECT_EQ(to_command_line(p), "srun --mpi=pmix --ntasks=3 --kill-on-bad-exit=1 --label "
                                "/opt/holo/bin/holo train r.toml --set optim.lr=0.05");
  LaunchOptions o = options(3);
  o.srun_mpi = "pmi2";  // the recipe's slurm.mpi
  EXPECT_THAT(to_command_line(plan_launch(o, machine(false, 2, true))), HasSubstr("srun --mpi=pmi2 "));
  o.via = "srun";
  EXPECT_THAT([&] { plan_launch(o, machine(false, 2, false)); },
              ThrowsMessage<UsageError>(HasSubstr("SLURM allocation")));
}

TEST(LaunchPlan, OneWorkerStartsDirectly) {
  const LaunchPlan p = plan_launch(options(1), machine(true, 2));
  EXPECT_EQ(p.via, "direct");
  EXPECT_THAT(p.argv, ElementsAre("/opt/holo/bin/holo", "train", "r.toml", "--set", "optim.lr=0.05"));
}

TEST(LaunchPlan, BadRequests) {
  EXPECT_THAT([] { plan_launch(options(0), machine(false, 2)); },
              ThrowsMessage<UsageError>(HasSubstr("--np")));
  LaunchOptions o = options(2);
  o.via = "direct";
  EXPECT_THAT([&] { plan_launch(o, machine(false, 2)); },
              ThrowsMessage<UsageError>(HasSubstr("one worker")));
}

TEST(LaunchPlan, CommandLineQuoting) {
  LaunchPlan p;
  p.argv = {"holo", "train", "my recipe.toml", "--set", "run.name=it's"};
  EXPECT_EQ(to_command_line(p), "holo train 'my recipe.toml' --set 'run.name=it'\\''s'");
}

TEST(PrefixRank, MpirunAndSrunLines) {
  bool err = false;
  EXPECT_EQ(prefix_rank("mpirun", "[1,3]<stdout>:step 5 loss 0.1", &err), "[rank 3] step 5 loss 0.1");
  EXPECT_FALSE(err);
  EXPECT_EQ(prefix_rank("mpirun", "[1,0]<stderr>:warning: x", &err), "[rank 0] warning: x");
  EXPECT_TRUE(err);
  EXPECT_EQ(prefix_rank("mpirun", "mpirun noticed that process rank 1 ...", &err),
            "mpirun noticed that process rank 1 ...");
  EXPECT_EQ(prefix_rank("srun", " 12: hello", &err), "[rank 12] hello");
  EXPECT_EQ(prefix_rank("mpirun", "[1,2]<stderr>:12:00 [rank 2] info x", &err), "12:00 [rank 2] info x");
}

/// "E|O text" per line: stderr or stdout, and the text.
std::vector<std::string> shown(const std::vector<RelayedLine>& lines) {
  std::vector<std::string> out;
  for (const auto& l : lines) out.push_back(std::string(l.to_stderr ? "E " : "O ") + l.text);
  return out;
}

TEST(OutputRelay, ATagInTheMiddleOfALineStartsAnotherRanksLine) {
  // What mpirun --tag-output prints when rank 0 writes "abc" without its newline and rank 1 a
  // whole line: rank 1's error must not appear under rank 0.
  OutputRelay relay("mpirun");
  auto lines = shown(relay.feed(1, "[1,0]<stderr>:abc[1,1]<stderr>:holo: error: bad\n"));
  EXPECT_EQ(lines, (std::vector<std::string>{"E [rank 1] holo: error: bad"}));
  // Rank 0's line ends later, split across reads, a tag cut in two.
  lines = shown(relay.feed(1, "[1,0]<std"));
  EXPECT_TRUE(lines.empty());
  lines = shown(relay.feed(1, "err>:def\n[1,1]<stderr>:x [y] z\n"));
  EXPECT_EQ(lines, (std::vector<std::string>{"E [rank 0] abcdef", "E [rank 1] x [y] z"}));
  // Stdout on its own pipe; the launcher's own lines unchanged; unfinished ones at the end.
  lines = shown(relay.feed(0, "[1,1]<stdout>:1 of 2\nmpirun noticed a problem\n[1,0]<stdout>:tail"));
  EXPECT_EQ(lines, (std::vector<std::string>{"O [rank 1] 1 of 2", "O mpirun noticed a problem"}));
  EXPECT_EQ(shown(relay.finish()), (std::vector<std::string>{"O [rank 0] tail"}));
}

TEST(OutputRelay, SrunLabelsAndDirectRunsGiveWholeLines) {
  OutputRelay srun("srun");
  EXPECT_EQ(shown(srun.feed(0, " 3: hel")), std::vector<std::string>{});
  EXPECT_EQ(shown(srun.feed(0, "lo\n 1: x\n")), (std::vector<std::string>{"O [rank 3] hello", "O [rank 1] x"}));
  OutputRelay direct("direct");
  EXPECT_EQ(shown(direct.feed(1, "a\nb")), std::vector<std::string>{"E a"});
  EXPECT_EQ(shown(direct.finish()), std::vector<std::string>{"E b"});
}

}  // namespace
}  // namespace holo::launch
