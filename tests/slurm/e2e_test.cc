// `holo submit` of real training runs on the local cluster (scripts/slurm-local.sh): a tiny
// synthetic recipe trains to COMPLETED; a run preempted by the warning signal checkpoints,
// requeues itself, restarts with SLURM_RESTART_COUNT=1, resumes at the saved step and finishes
// with the same steps and the same losses as an uninterrupted run (so no sample was repeated or
// skipped); and a run without restart budget ends with a clear message.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/recipe.h"
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

// Enough steps that the warning, sent as soon as the first step is logged, lands mid-run (a
// step of this model takes a few tens of milliseconds here; the test says so if it did not).
constexpr int kSteps = 300;

/// The environment of every training process here: one LibTorch thread (as in the job, where
/// it follows slurm.cpus_per_task), so runs in and out of SLURM compute identically, and one
/// cache folder for the synthetic videos.
std::string train_env(const std::string& dir) {
  return "HOLO_NUM_THREADS=1 HOLO_CACHE_DIR=" + shell_quote(dir + "/cache") + " ";
}

/// A small, deterministic synthetic run: a narrow 3D ResNet on tiny clips, one metric line per
/// step, checkpoints only at the end and on preemption.
std::string write_recipe(const std::string& dir, const std::string& run_dir, int max_restarts,
                         int tasks_per_node = 1) {
  holo::testing::TinyRun t;
  t.max_steps = kSteps;
  t.max_restarts = max_restarts;
  t.tasks_per_node = tasks_per_node;
  t.mem = "4G";
  return holo::testing::write_recipe(dir, run_dir, t);
}

std::string submit(const std::string& dir, const std::string& recipe) {
  const auto r = run_command(train_env(dir) + holo_binary() + " submit " + shell_quote(recipe));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto pos = r.output.find("submitted job ");
  if (pos == std::string::npos) return "";
  return r.output.substr(pos + 14, r.output.find('\n', pos) - pos - 14);
}

/// Training metric lines by step; fails the test when a step appears twice.
std::map<int64_t, nlohmann::json> train_lines(const std::string& run_dir) {
  std::map<int64_t, nlohmann::json> by_step;
  for (const auto& l : text_lines(read_text(run_dir + "/metrics.jsonl"))) {
    // While the run writes, the last line may be incomplete: it is read on the next poll.
    const auto j = nlohmann::json::parse(l, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || j.value("split", "") != "train") continue;
    const int64_t step = j.at("step").get<int64_t>();
    EXPECT_TRUE(by_step.emplace(step, j).second) << "step " << step << " logged twice in " << run_dir;
  }
  return by_step;
}

/// Every step of `expected` once in `got`, each with the same loss (relative 1e-6).
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
  return "\n--- job output ---\n" + read_text(run_dir + "/slurm/job-" + id + ".out") +
         "\n--- job errors ---\n" + read_text(run_dir + "/slurm/job-" + id + ".err");
}

TEST(SlurmEndToEnd, TinyRecipeReachesCompletedWithMetrics) {
  const std::string d = holo::testing::temp_dir();
  const std::string run = d + "/run";
  const std::string id = submit(d, write_recipe(d, run, 1));
  ASSERT_FALSE(id.empty());
  const auto info = holo::testing::wait_for_end(id);
  ASSERT_EQ(info.state, "COMPLETED") << job_files(run, id);
  const auto lines = train_lines(run);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kSteps));
  EXPECT_EQ(lines.begin()->first, 1);
  EXPECT_EQ(lines.rbegin()->first, kSteps);
  for (const auto& [step, j] : lines) {
    EXPECT_TRUE(j.contains("loss") && std::isfinite(j["loss"].get<double>())) << j.dump();
  }
  ASSERT_TRUE(slurm::last_checkpoint(run).has_value());
  EXPECT_EQ(slurm::last_checkpoint(run)->step, kSteps);
  const auto status = run_command(holo_binary() + " status " + shell_quote(run));
  EXPECT_THAT(status.output, AllOf(HasSubstr("COMPLETED"), HasSubstr("checkpoint  step " + std::to_string(kSteps))));
}

TEST(SlurmEndToEnd, PreemptedRunResumesAtTheSavedStepWithoutRepeats) {
  const std::string d = holo::testing::temp_dir();

  // The same recipe trained without interruption, outside SLURM: the reference.
  const std::string ref = d + "/reference";
  const std::string ref_recipe = write_recipe(d + "/ref", ref, 1);
  const auto r = run_command(train_env(d) + holo_binary() + " train " + shell_quote(ref_recipe));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto expected = train_lines(ref);
  ASSERT_EQ(expected.size(), static_cast<size_t>(kSteps));

  const std::string run = d + "/run";
  const std::string id = submit(d, write_recipe(d, run, 2));
  ASSERT_FALSE(id.empty());
  // Warn as soon as training has made a step, as SLURM does before an allocation ends.
  ASSERT_TRUE(wait_until([&] { return !train_lines(run).empty() || !slurm::query_job(id).active(); },
                         "the first training step", 900, 20));
  slurm::cancel_job(id, "USR1");
  const auto requeued = holo::testing::wait_for_requeue(id, 1);
  EXPECT_EQ(requeued.restarts, 1);
  // Between the two starts the newest checkpoint is the one saved on the warning.
  const auto saved = slurm::last_checkpoint(run);
  ASSERT_TRUE(saved.has_value()) << job_files(run, id);
  const int64_t saved_step = saved->step;
  ASSERT_LT(saved_step, kSteps) << "training finished before the warning arrived; the test needs "
                                   "more steps to preempt it";
  EXPECT_EQ(train_lines(run).rbegin()->first, saved_step);

  const auto info = holo::testing::wait_for_end(id);
  ASSERT_EQ(info.state, "COMPLETED") << job_files(run, id);
  EXPECT_EQ(info.restarts, 1);
  const std::string events = read_text(run + "/slurm/events.log");
  EXPECT_THAT(events, AllOf(HasSubstr("restart 0: workers saved a checkpoint and stopped (exit code 3)"),
                            HasSubstr("restart 0: requeueing: restart 1 of 2"),
                            HasSubstr("restart 1: started (SLURM_RESTART_COUNT=1)"),
                            HasSubstr("restart 1: finished: training complete")));
  const auto summary = nlohmann::json::parse(read_text(run + "/summary.json"));
  EXPECT_EQ(summary["resumed_from"].get<int64_t>(), saved_step);
  EXPECT_EQ(summary["step"].get<int64_t>(), kSteps);

  // Every step once, and each step's loss equal to the uninterrupted run's: the resumed run
  // drew the same samples in the same order.
  expect_same_losses(train_lines(run), expected);
}

TEST(SlurmEndToEnd, LaunchInsideAnAllocationStartsItsWorkersThroughSrun) {
  // `holo launch` run by hand inside a batch allocation: it starts its workers with srun (not
  // mpirun), they form one world of two ranks, and the job ends COMPLETED.
  const std::string d = holo::testing::temp_dir();
  const std::string run = d + "/run";
  const std::string recipe = write_recipe(d, run, 1, 2);
  std::ofstream(d + "/job.sh") << "#!/bin/bash\n#SBATCH --output=" << d << "/out-%j.txt\n"
                               << "#SBATCH --ntasks=2\n#SBATCH --cpus-per-task=1\n#SBATCH --time=15\n"
                               << "#SBATCH --mem=4G\n"
                               << "export " << train_env(d) << "\n"
                               << shell_quote(holo_binary()) << " launch --np 2 " << shell_quote(recipe)
                               << " --set train.max_steps=12\n";
  const std::string id = slurm::submit_script(d + "/job.sh");
  const auto info = holo::testing::wait_for_end(id);
  const std::string out = read_text(d + "/out-" + id + ".txt");
  ASSERT_EQ(info.state, "COMPLETED") << out;
  EXPECT_THAT(out, AllOf(HasSubstr("launch: 2 workers via srun"), HasSubstr("[rank 0] info training"),
                         Not(HasSubstr("[rank 1] info")), Not(HasSubstr("mpirun -np"))));
  // Rank 1 (SLURM_PROCID 1) keeps its info lines in its own log file.
  EXPECT_THAT(read_text(run + "/logs/rank-1.log"), HasSubstr("[rank 1] info training")) << out;
  EXPECT_EQ(train_lines(run).size(), 12u) << out;
  const auto saved = slurm::last_checkpoint(run);
  ASSERT_TRUE(saved.has_value()) << out;
  EXPECT_EQ(nlohmann::json::parse(read_text(saved->path + "/manifest.json"))["world_size"], 2);
}

TEST(SlurmEndToEnd, TwoWorkersSaveTogetherAndResumeLikeAnUninterruptedRun) {
  const std::string d = holo::testing::temp_dir();
  // Two ranks started by srun --mpi=pmix on the one node. The reference is the same job left
  // alone.
  const std::string ref = d + "/reference";
  const std::string ref_id = submit(d, write_recipe(d + "/ref", ref, 1, 2));
  ASSERT_FALSE(ref_id.empty());
  ASSERT_EQ(holo::testing::wait_for_end(ref_id).state, "COMPLETED") << job_files(ref, ref_id);
  const auto expected = train_lines(ref);
  ASSERT_EQ(expected.size(), static_cast<size_t>(kSteps));

  const std::string run = d + "/run";
  const std::string id = submit(d, write_recipe(d, run, 1, 2));
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(wait_until([&] { return !train_lines(run).empty() || !slurm::query_job(id).active(); },
                         "the first training step", 900, 20));
  const auto warn = run_command(holo_binary() + " cancel --preempt " + shell_quote(run));
  EXPECT_EQ(warn.exit_code, 0) << warn.output;
  holo::testing::wait_for_requeue(id, 1);
  const auto saved = slurm::last_checkpoint(run);
  ASSERT_TRUE(saved.has_value()) << job_files(run, id);
  ASSERT_LT(saved->step, kSteps) << "training finished before the warning arrived";
  // Both ranks took part in the save.
  const auto manifest = nlohmann::json::parse(read_text(saved->path + "/manifest.json"));
  EXPECT_EQ(manifest["world_size"], 2);
  EXPECT_EQ(manifest["step"], saved->step);

  const auto info = holo::testing::wait_for_end(id);
  ASSERT_EQ(info.state, "COMPLETED") << job_files(run, id);
  EXPECT_EQ(info.restarts, 1);
  EXPECT_THAT(read_text(run + "/slurm/events.log"),
              AllOf(HasSubstr("restart 0: started (SLURM_RESTART_COUNT=0) on "),
                    HasSubstr("1 node(s), 2 worker(s)"),
                    HasSubstr("restart 0: workers saved a checkpoint and stopped (exit code 3)"),
                    HasSubstr("restart 1: finished: training complete")));
  EXPECT_EQ(nlohmann::json::parse(read_text(run + "/summary.json"))["resumed_from"], saved->step);
  expect_same_losses(train_lines(run), expected);
}

TEST(SlurmEndToEnd, ExhaustedRestartBudgetEndsWithAClearMessage) {
  const std::string d = holo::testing::temp_dir();
  const std::string run = d + "/run";
  const std::string id = submit(d, write_recipe(d, run, 0));
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(wait_until([&] { return !train_lines(run).empty() || !slurm::query_job(id).active(); },
                         "the first training step", 900, 20));
  slurm::cancel_job(id, "USR1");
  const auto info = holo::testing::wait_for_end(id);
  EXPECT_EQ(info.state, "FAILED") << job_files(run, id);
  EXPECT_EQ(info.exit_code, "3:0");
  EXPECT_EQ(info.restarts, 0);
  EXPECT_THAT(read_text(run + "/slurm/job-" + id + ".err"),
              HasSubstr("restart budget exhausted (slurm.max_restarts = 0, restarts used: 0)"));
  const auto saved = slurm::last_checkpoint(run);
  ASSERT_TRUE(saved.has_value());
  EXPECT_LT(saved->step, kSteps);
  EXPECT_EQ(train_lines(run).rbegin()->first, saved->step);
  EXPECT_THAT(read_text(run + "/slurm/events.log"), Not(HasSubstr("requeueing: restart")));
}

}  // namespace
}  // namespace holo

int slurm_e2e_registered = [] {
  ::testing::AddGlobalTestEnvironment(new holo::testing::LocalCluster("slurm_e2e"));
  return 0;
}();
