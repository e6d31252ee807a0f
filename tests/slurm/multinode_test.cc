// Runs across nodes for real, on the two-node cluster of `scripts/slurm-local.sh start --nodes 2`
// (each slurmd in network, UTS and mount namespaces of its own, MPI between them over TCP on a
// private bridge): `holo submit --nodes 2` trains like one host with two ranks; a preemption
// saves on both nodes and the run resumes on two nodes, then on one, every sample once; a worker
// killed on one node ends every rank and the job requeues and finishes; a node down gives a
// clear error; and `holo launch --hosts` starts ranks on both nodes through mpirun.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "core/recipe.h"
#include "core/time.h"
#include "slurm/scheduler.h"
#include "slurm/script.h"
#include "slurm/submit.h"
#include "tests/slurm/local_cluster.h"
#include "tests/test_util.h"

namespace holo {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using holo::testing::holo_binary;
using holo::testing::read_text;
using holo::testing::run_command;
using holo::testing::text_lines;
using holo::testing::wait_until;
using slurm::shell_quote;
using holo::testing::TinyRun;
using holo::testing::write_recipe;

holo::testing::LocalCluster* g_cluster = nullptr;

/// One LibTorch thread per worker (as slurm.cpus_per_task = 1 sets in the job), so runs in and
/// out of SLURM compute identically; one cache for the synthetic videos; the cluster's MPI
/// interface.
std::string train_env(const std::string& dir) {
  return "HOLO_NUM_THREADS=1 HOLO_CACHE_DIR=" + shell_quote(dir + "/cache") + " " + g_cluster->env();
}

/// `holo submit` with `flags`; the job id, or "" (and a failure) when it was refused.
std::string submit(const std::string& dir, const std::string& recipe, const std::string& flags,
                   const std::string& env = "") {
  const auto r = run_command(train_env(dir) + env + holo_binary() + " submit " + shell_quote(recipe) + " " + flags);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto pos = r.output.find("submitted job ");
  if (pos == std::string::npos) return "";
  return r.output.substr(pos + 14, r.output.find('\n', pos) - pos - 14);
}

/// Training metric lines by step; the last line of a step wins (a failed run repeats the steps
/// after its last checkpoint). `repeats` counts the steps logged more than once.
std::map<int64_t, nlohmann::json> train_lines(const std::string& run_dir, int* repeats = nullptr) {
  std::map<int64_t, nlohmann::json> by_step;
  if (repeats) *repeats = 0;
  for (const auto& l : text_lines(read_text(run_dir + "/metrics.jsonl"))) {
    const auto j = nlohmann::json::parse(l, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || j.value("split", "") != "train") continue;
    const int64_t step = j.at("step").get<int64_t>();
    if (by_step.count(step) && repeats) ++*repeats;
    by_step[step] = j;
  }
  return by_step;
}

int64_t last_step(const std::string& run_dir) {
  const auto lines = train_lines(run_dir);
  return lines.empty() ? 0 : lines.rbegin()->first;
}

void expect_same_losses(const std::map<int64_t, nlohmann::json>& got,
                        const std::map<int64_t, nlohmann::json>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (const auto& [step, j] : expected) {
    ASSERT_TRUE(got.count(step)) << "step " << step << " missing";
    EXPECT_NEAR(got.at(step)["loss"].get<double>(), j["loss"].get<double>(),
                1e-6 * std::max(1.0, std::abs(j["loss"].get<double>())))
        << "step " << step;
  }
}

std::string job_files(const std::string& run_dir, const std::string& id) {
  return "\n--- events ---\n" + read_text(run_dir + "/slurm/events.log") + "\n--- job output ---\n" +
         read_text(run_dir + "/slurm/job-" + id + ".out") + "\n--- job errors ---\n" +
         read_text(run_dir + "/slurm/job-" + id + ".err");
}

/// The UTS namespace of node `i` (1-based) of the cluster: its hostname.
std::string node_uts(int i) {
  std::string pid = read_text(g_cluster->dir() + "/run/node" + std::to_string(i) + ".pid");
  pid = pid.substr(0, pid.find('\n'));
  std::error_code ec;
  return fs::read_symlink("/proc/" + pid + "/ns/uts", ec).string();
}

/// PIDs of the `holo train RECIPE` processes (the workers, not srun), with their UTS namespace.
std::map<pid_t, std::string> workers_of(const std::string& recipe) {
  std::map<pid_t, std::string> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmd = read_text(e.path().string() + "/cmdline");
    std::vector<std::string> argv;
    for (size_t start = 0, end; start < cmd.size(); start = end + 1) {
      end = cmd.find('\0', start);
      if (end == std::string::npos) end = cmd.size();
      argv.push_back(cmd.substr(start, end - start));
    }
    if (argv.size() < 3 || argv[0] != holo_binary() || argv[1] != "train" || argv[2] != recipe) continue;
    std::error_code ec;
    out[static_cast<pid_t>(std::stol(name))] = fs::read_symlink(e.path() / "ns/uts", ec).string();
  }
  return out;
}

TEST(MultiNode, ClusterHasTwoNodesWithTheirOwnHostnamesAndAddresses) {
  const auto r = run_command("srun --nodes=2 --ntasks-per-node=1 --label sh -c 'echo $(hostname) $(hostname -I)'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("0: holo-node1 10.213."), HasSubstr("1: holo-node2 10.213.")));
  EXPECT_NE(node_uts(1), node_uts(2));
  const auto status = run_command("bash " + shell_quote(holo::testing::source_dir() + "/scripts/slurm-local.sh") +
                                  " status " + shell_quote(g_cluster->dir()));
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_THAT(status.output, AllOf(HasSubstr("slurmd of holo-node1"), HasSubstr("slurmd of holo-node2")));
}

TEST(MultiNode, StartRefusesWithTheReasonWhereNamespacesCannotBeMade) {
  // Root inside a user namespace of its own: root's id, without the capabilities over this
  // machine's network that the cluster's namespaces need (as in an unprivileged container).
  if (run_command("unshare -U -r true").exit_code != 0) GTEST_SKIP() << "no user namespaces here";
  const std::string d = holo::testing::temp_dir() + "/cluster";
  const auto r = run_command("unshare -U -r bash " +
                             shell_quote(holo::testing::source_dir() + "/scripts/slurm-local.sh") +
                             " start --nodes 2 " + shell_quote(d));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("cannot make network namespaces here"),
                              HasSubstr("needs CAP_NET_ADMIN and CAP_SYS_ADMIN")));
  EXPECT_FALSE(fs::exists(d + "/run/multinode.env")) << "nothing is left to stop";
}

TEST(MultiNode, TwoNodesTrainLikeOneHostWithTwoRanks) {
  const std::string d = holo::testing::temp_dir();
  TinyRun t;
  // The reference: the same recipe, two ranks on this one host (mpirun, shared memory).
  const std::string ref = d + "/reference";
  const auto r = run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + train_env(d) +
                             holo_binary() + " launch --np 2 " + shell_quote(write_recipe(d + "/ref", ref, t)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto expected = train_lines(ref);
  ASSERT_EQ(expected.size(), static_cast<size_t>(t.max_steps));

  // One worker on each node (srun --mpi=pmix, MPI over TCP between the namespaces). Debug logs
  // carry each rank's host.
  const std::string run = d + "/run";
  const std::string recipe = write_recipe(d, run, t);
  const std::string id = submit(d, recipe, "--nodes 2", "HOLO_LOG_LEVEL=debug ");
  ASSERT_FALSE(id.empty());
  const auto info = holo::testing::wait_for_end(id);
  ASSERT_EQ(info.state, "COMPLETED") << job_files(run, id);
  EXPECT_THAT(read_text(run + "/slurm/events.log"), HasSubstr("on holo-node[1-2]: 2 node(s), 2 worker(s)"));
  // Two hosts, each rank alone on its own.
  EXPECT_THAT(read_text(run + "/slurm/job-" + id + ".err"),
              HasSubstr("world: rank 0 of 2 (local 0 of 1) on holo-node1"))
      << job_files(run, id);
  EXPECT_THAT(read_text(run + "/logs/rank-1.log"), HasSubstr("world: rank 1 of 2 (local 0 of 1) on holo-node2"));
  // Rank 0 says where every rank runs at the default log level.
  EXPECT_THAT(read_text(run + "/slurm/job-" + id + ".err"),
              HasSubstr("world: 2 ranks on 2 hosts: holo-node1 (rank 0), holo-node2 (rank 1)"));

  // Both hosts' shards in the one checkpoint of the shared run directory.
  const auto saved = slurm::last_checkpoint(run);
  ASSERT_TRUE(saved.has_value()) << job_files(run, id);
  EXPECT_EQ(saved->step, t.max_steps);
  const auto manifest = nlohmann::json::parse(read_text(saved->path + "/manifest.json"));
  EXPECT_EQ(manifest["world_size"], 2);
  ASSERT_EQ(manifest["shards"].size(), 2u);
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(manifest["shards"][rank]["rank"], rank);
    EXPECT_EQ(manifest["shards"][rank]["host"], "holo-node" + std::to_string(rank + 1)) << "the host that wrote it";
    EXPECT_TRUE(fs::exists(saved->path + "/" + manifest["shards"][rank]["file"].get<std::string>()));
  }
  // Over TCP between two hosts the same sums as through shared memory on one.
  expect_same_losses(train_lines(run), expected);
}

TEST(MultiNode, PreemptedOnTwoNodesResumesOnTwoThenOnOneWithEverySampleOnce) {
  const std::string d = holo::testing::temp_dir();
  TinyRun t;
  t.videos = 400;  // an epoch long enough for two warnings inside it
  t.epochs = 2;
  t.max_steps = 0;
  t.max_restarts = 1;
  const std::string run = d + "/run";
  const std::string recipe = write_recipe(d, run, t);
  const std::string samples = "HOLO_SAMPLE_LOG=" + shell_quote(d + "/samples") + " ";
  const std::string id = submit(d, recipe, "--nodes 2", samples);
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(wait_until([&] { return last_step(run) > 0 || !slurm::query_job(id).active(); },
                         "the first training step", 900, 20));
  // What SLURM sends before an allocation ends: both nodes save one checkpoint together.
  ASSERT_EQ(run_command("scancel --signal=USR1 --batch " + id).exit_code, 0);
  holo::testing::wait_for_requeue(id, 1);
  const auto first = slurm::last_checkpoint(run);
  ASSERT_TRUE(first.has_value()) << job_files(run, id);
  const auto m1 = nlohmann::json::parse(read_text(first->path + "/manifest.json"));
  EXPECT_EQ(m1["world_size"], 2);
  EXPECT_EQ(m1["shards"].size(), 2u);
  EXPECT_EQ(m1["epoch"], 0) << "the first warning came after epoch 0; the test needs a longer epoch";

  // The restart resumes on both nodes at the saved step; warned again, it saves and, its
  // restart budget spent, stops.
  ASSERT_TRUE(wait_until([&] { return last_step(run) > first->step || !slurm::query_job(id).active(); },
                         "a step after the resume", 900, 20));
  ASSERT_EQ(run_command("scancel --signal=USR1 --batch " + id).exit_code, 0);
  const auto info = holo::testing::wait_for_end(id);
  EXPECT_EQ(info.state, "FAILED") << job_files(run, id);
  EXPECT_EQ(info.exit_code, "3:0");
  const auto second = slurm::last_checkpoint(run);
  ASSERT_TRUE(second.has_value());
  ASSERT_GT(second->step, first->step);
  const auto m2 = nlohmann::json::parse(read_text(second->path + "/manifest.json"));
  EXPECT_EQ(m2["world_size"], 2);
  EXPECT_EQ(m2["epoch"], 0) << "the second warning came after epoch 0; the test needs a longer epoch";
  EXPECT_THAT(read_text(run + "/slurm/events.log"),
              AllOf(HasSubstr("restart 0: started (SLURM_RESTART_COUNT=0) on holo-node[1-2]"),
                    HasSubstr("restart 1: started (SLURM_RESTART_COUNT=1) on holo-node[1-2]"),
                    HasSubstr("restart 0: workers saved a checkpoint and stopped (exit code 3)"),
                    HasSubstr("restart 1: workers saved a checkpoint and stopped (exit code 3)")));

  // Resubmitted on one node (one worker): it resumes at the second save and finishes.
  const std::string id2 = submit(d, recipe, "--nodes 1", samples);
  ASSERT_FALSE(id2.empty());
  const auto done = holo::testing::wait_for_end(id2);
  ASSERT_EQ(done.state, "COMPLETED") << job_files(run, id2);
  EXPECT_THAT(read_text(run + "/slurm/events.log"), HasSubstr("on holo-node1: 1 node(s), 1 worker(s)"));
  EXPECT_EQ(nlohmann::json::parse(read_text(run + "/summary.json"))["resumed_from"], second->step);

  // Every sample of epoch 0 trained exactly once across the three starts (two nodes, two
  // nodes, one), and the same samples as epoch 1, trained by one worker alone.
  std::map<int64_t, std::multiset<int64_t>> per_epoch;
  for (int rank = 0; rank < 2; ++rank) {
    std::ifstream in(d + "/samples.rank" + std::to_string(rank));
    int64_t e, s, rec;
    while (in >> e >> s >> rec) per_epoch[e].insert(rec);
  }
  ASSERT_EQ(per_epoch.size(), 2u);
  for (int64_t x : per_epoch[0]) EXPECT_EQ(per_epoch[0].count(x), 1u) << "sample " << x;
  EXPECT_EQ(std::set<int64_t>(per_epoch[0].begin(), per_epoch[0].end()),
            std::set<int64_t>(per_epoch[1].begin(), per_epoch[1].end()));
}

TEST(MultiNode, KilledWorkerOnOneNodeEndsEveryRankAndTheJobResumes) {
  const std::string d = holo::testing::temp_dir();
  TinyRun t;
  t.epochs = 100000;
  t.max_steps = 400;
  t.every_steps = 20;
  t.max_restarts = 1;
  const std::string run = d + "/run";
  const std::string id = submit(d, write_recipe(d, run, t), "--nodes 2");
  ASSERT_FALSE(id.empty());
  const std::string recipe = run + "/slurm/recipe.toml";
  // A periodic checkpoint, then a few more steps.
  ASSERT_TRUE(wait_until([&] {
    const auto c = slurm::last_checkpoint(run);
    return (c && last_step(run) > c->step + 2) || !slurm::query_job(id).active();
  }, "a periodic checkpoint", 900, 20));
  const auto workers = workers_of(recipe);
  ASSERT_EQ(workers.size(), 2u);
  pid_t victim = 0;
  for (const auto& [pid, uts] : workers) {
    if (uts == node_uts(2)) victim = pid;
  }
  ASSERT_NE(victim, 0) << "no worker runs on holo-node2";
  const int64_t saved_before = slurm::last_checkpoint(run)->step;
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  // Every rank on every node ends (the one left waits in an all-reduce for its dead peer).
  ASSERT_TRUE(wait_until([&] { return workers_of(recipe).empty(); }, "every worker to end", 900, 100));
  const double ended_s = seconds_since(killed_at);
  EXPECT_LT(ended_s, 60.0) << "the ranks took " << ended_s << " s to end";
  std::cerr << "every rank ended " << ended_s << " s after the kill\n";

  const auto info = holo::testing::wait_for_end(id);
  ASSERT_EQ(info.state, "COMPLETED") << job_files(run, id);
  EXPECT_EQ(info.restarts, 1);
  const std::string err = read_text(run + "/slurm/job-" + id + ".err");
  // srun reports both tasks ending badly: the killed one and the one ended after it.
  EXPECT_THAT(err, AllOf(HasSubstr("holo-node2: task 1: Killed"), HasSubstr("holo-node1: task 0:")))
      << job_files(run, id);
  EXPECT_THAT(err, Not(HasSubstr("holo-node1: task 0: Exited with exit code 0")));
  EXPECT_THAT(read_text(run + "/slurm/events.log"),
              AllOf(HasSubstr("restart 0: workers failed (exit code"),
                    HasSubstr("requeueing: restart 1 of 1; it resumes from the newest checkpoint"),
                    HasSubstr("restart 1: finished: training complete")));
  const auto summary = nlohmann::json::parse(read_text(run + "/summary.json"));
  EXPECT_EQ(summary["resumed_from"].get<int64_t>(), saved_before);
  EXPECT_EQ(summary["step"].get<int64_t>(), t.max_steps);
  EXPECT_EQ(slurm::last_checkpoint(run)->step, t.max_steps);
}

TEST(MultiNode, NodeDownAtSubmitIsRefusedWithAClearError) {
  const std::string d = holo::testing::temp_dir();
  const std::string recipe = write_recipe(d, d + "/run", TinyRun());
  ASSERT_EQ(run_command("scontrol update nodename=holo-node2 state=down reason=holo-test").exit_code, 0);
  const auto r = run_command(train_env(d) + holo_binary() + " submit " + shell_quote(recipe) + " --nodes 2");
  ASSERT_EQ(run_command("scontrol update nodename=holo-node2 state=resume").exit_code, 0);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("slurm.nodes = 2 but only 1 of the 2 nodes of partition 'debug' can run jobs now"),
                              HasSubstr("holo-node2 (down"), HasSubstr("holo-test"), HasSubstr("--nodes 1")));
  EXPECT_FALSE(fs::exists(d + "/run/slurm/job_id"));
  // The node is back before the next test.
  ASSERT_TRUE(wait_until([&] {
    return run_command("sinfo -h -n holo-node2 -o %T").output.rfind("idle\n", 0) == 0;
  }, "holo-node2 to be idle again", 300, 200));
}

TEST(MultiNode, NodeLostAtStartEndsTheJobWithAClearErrorInsteadOfPending) {
  const std::string d = holo::testing::temp_dir();
  const std::string dir = g_cluster->dir();
  const std::string node2 = "nsenter -t $(cat " + shell_quote(dir + "/run/node2.pid") + ") -n -u -m -- ";
  // holo-node2's slurmd dies just before the job starts; the controller still counts the node
  // as idle (it notices only after SlurmdTimeout), so the submission is accepted.
  ASSERT_EQ(run_command("kill $(cat " + shell_quote(dir + "/run/slurmd-holo-node2.pid") + ")").exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return run_command("pgrep -F " + shell_quote(dir + "/run/slurmd-holo-node2.pid")).exit_code != 0; },
                         "holo-node2's slurmd to end", 60, 100));
  TinyRun t;
  const std::string run = d + "/run";
  const std::string id = submit(d, write_recipe(d, run, t), "--nodes 2");
  const auto info = holo::testing::wait_for_end(id);
  // The job ends (it does not pend for the lost node) and says why.
  EXPECT_EQ(info.state, "FAILED") << job_files(run, id);
  EXPECT_THAT(read_text(run + "/slurm/job-" + id + ".err"),
              AllOf(HasSubstr("failed on node holo-node2"),
                    HasSubstr("a node of this allocation (holo-node[1-2]) cannot start tasks"),
                    HasSubstr("not requeueing, as the job would wait for that node")))
      << job_files(run, id);

  // holo-node2 comes back for the next test.
  const auto back = run_command(node2 + "slurmd -f " + shell_quote(dir + "/etc/slurm.conf") + " -N holo-node2");
  ASSERT_EQ(back.exit_code, 0) << back.output;
  run_command("scontrol update nodename=holo-node2 state=resume");
  ASSERT_TRUE(wait_until([&] {
    return run_command("sinfo -h -n holo-node2 -o %T").output.rfind("idle\n", 0) == 0;
  }, "holo-node2 to be idle again", 300, 200));
}

TEST(MultiNode, LaunchWithHostsStartsRanksOnBothNodesThroughMpirun) {
  const std::string d = holo::testing::temp_dir();
  TinyRun t;
  t.max_steps = 12;
  const std::string run = d + "/run";
  const std::string recipe = write_recipe(d, run, t);
  const std::string agent = g_cluster->dir() + "/bin/node-exec";
  const std::string launch = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HOLO_LOG_LEVEL=debug " +
                             train_env(d) + holo_binary() + " launch --np 2 --launch-agent " + shell_quote(agent);
  // Outside SLURM: mpirun starts its daemons on the nodes through the agent (ssh on a real
  // lab's machines).
  const auto r = run_command("env -u SLURM_CONF " + launch + " --hosts holo-node1,holo-node2 " + shell_quote(recipe));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("launch: 2 workers via mpirun"),
                              HasSubstr("--host holo-node1,holo-node2 --mca plm_rsh_agent"),
                              HasSubstr("world: rank 0 of 2 (local 0 of 1) on holo-node1")));
  EXPECT_THAT(read_text(run + "/logs/rank-1.log"), HasSubstr("world: rank 1 of 2 (local 0 of 1) on holo-node2"));
  EXPECT_EQ(train_lines(run).size(), 12u);

  // The same with a hostfile, into a fresh run directory.
  std::ofstream(d + "/hosts") << "holo-node2 slots=1\nholo-node1 slots=1\n";
  const auto h = run_command("env -u SLURM_CONF " + launch + " --hostfile " + shell_quote(d + "/hosts") + " " +
                             shell_quote(recipe) + " --set run.dir=" + shell_quote(d + "/run2"));
  ASSERT_EQ(h.exit_code, 0) << h.output;
  EXPECT_THAT(h.output, HasSubstr("world: rank 0 of 2 (local 0 of 1) on holo-node2"));
  EXPECT_THAT(read_text(d + "/run2/logs/rank-1.log"), HasSubstr("world: rank 1 of 2 (local 0 of 1) on holo-node1"));
  EXPECT_EQ(train_lines(d + "/run2").size(), 12u);
}

}  // namespace
}  // namespace holo

int slurm_multinode_registered = [] {
  holo::g_cluster = new holo::testing::LocalCluster("slurm_multinode", 2);
  ::testing::AddGlobalTestEnvironment(holo::g_cluster);
  return 0;
}();
