// Holo's SLURM layer against a real local cluster (scripts/slurm-local.sh): plain sbatch jobs,
// `holo submit`, `holo status`, `holo cancel`, and the preemption protocol (warning ->
// checkpoint -> self-requeue -> restart with SLURM_RESTART_COUNT -> resume -> completion, and
// the end of the restart budget). The workers are tests/slurm/contract_worker.sh, a stand-in
// that follows `holo train`'s contract step for step and can pause at a chosen step, so that
// these tests do not depend on training speed; tests/slurm/e2e_test.cc runs the real trainer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "core/error.h"
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using holo::testing::holo_binary;
using holo::testing::read_text;
using holo::testing::run_command;
using holo::testing::text_lines;
using holo::testing::wait_until;
using slurm::shell_quote;

std::string worker() { return holo::testing::source_dir() + "/tests/slurm/contract_worker.sh"; }

/// A recipe for a run in `run_dir` trained for `steps` steps.
std::string write_recipe(const std::string& dir, const std::string& run_dir, int steps,
                         int max_restarts, const std::string& time = "00:10:00", int grace_s = 120) {
  fs::create_directories(dir);
  const std::string path = dir + "/recipe.toml";
  std::ofstream(path) << "[run]\nname = \"protocol\"\ndir = " << to_toml_text(Value(run_dir))
                      << "\n[data]\ndataset = \"synth\"\n[train]\nmax_steps = " << steps << "\n[slurm]\ntime = \"" << time
                      << "\"\ngrace_s = " << grace_s
                      << "\ncpus_per_task = 1\nmem = \"500M\"\nmpi = \"none\"\nmax_restarts = "
                      << max_restarts << "\n";
  return path;
}

/// `holo submit` with the contract worker; returns the job id.
std::string submit(const std::string& recipe, const std::string& env = "") {
  const auto r = run_command(env + " " + holo_binary() + " submit " + shell_quote(recipe) +
                             " --holo-binary " + shell_quote(worker()));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto pos = r.output.find("submitted job ");
  if (pos == std::string::npos) return "";
  return r.output.substr(pos + 14, r.output.find('\n', pos) - pos - 14);
}

nlohmann::json status_json(const std::string& run_dir) {
  const auto r = run_command(holo_binary() + " status --json " + shell_quote(run_dir));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output, nullptr, false);
}

/// Steps of the metrics lines, in file order.
std::vector<int64_t> metric_steps(const std::string& run_dir) {
  std::vector<int64_t> steps;
  for (const auto& l : text_lines(read_text(run_dir + "/metrics.jsonl"))) {
    steps.push_back(nlohmann::json::parse(l).at("step").get<int64_t>());
  }
  return steps;
}

std::vector<int64_t> one_to(int64_t n) {
  std::vector<int64_t> v;
  for (int64_t i = 1; i <= n; ++i) v.push_back(i);
  return v;
}

holo::testing::LocalCluster* const cluster = static_cast<holo::testing::LocalCluster*>(
    ::testing::AddGlobalTestEnvironment(new holo::testing::LocalCluster("slurm_cluster")));

TEST(SlurmCluster, LocalClusterReportsItsDaemonsAndNode) {
  const auto r = run_command("bash " + shell_quote(holo::testing::source_dir() + "/scripts/slurm-local.sh") +
                             " status " + shell_quote(cluster->dir()));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("munged running"), HasSubstr("slurmctld running"),
                              HasSubstr("slurmd running"), HasSubstr("debug* up 1")));
}

TEST(SlurmCluster, PlainSbatchJobCompletes) {
  const std::string d = holo::testing::temp_dir();
  std::ofstream(d + "/job.sh") << "#!/bin/bash\n#SBATCH --output=" << d << "/out-%j.txt\n"
                               << "#SBATCH --time=1\n#SBATCH --mem=100M\n"
                               << "echo \"job $SLURM_JOB_ID on $(hostname -s) restart ${SLURM_RESTART_COUNT:-0}\"\n";
  const std::string id = slurm::submit_script(d + "/job.sh");
  const auto info = holo::testing::wait_for_end(id);
  EXPECT_EQ(info.state, "COMPLETED");
  EXPECT_EQ(info.exit_code, "0:0");
  EXPECT_EQ(info.restarts, 0);
  EXPECT_EQ(info.source, "scontrol");
  const std::string host = run_command("hostname -s").output;
  EXPECT_EQ(read_text(d + "/out-" + id + ".txt"),
            "job " + id + " on " + host.substr(0, host.find('\n')) + " restart 0\n");
  // sbatch's own refusal comes back as an error with its message.
  std::ofstream(d + "/bad.sh") << "#!/bin/bash\n#SBATCH --partition=nosuchpartition\ntrue\n";
  EXPECT_THAT([&] { slurm::submit_script(d + "/bad.sh"); },
              ::testing::ThrowsMessage<Error>(AllOf(HasSubstr("sbatch failed"),
                                                    HasSubstr("nosuchpartition"))));
}

TEST(SlurmCluster, SubmitRunsToCompletionInADirectoryFullOfMetacharacters) {
  const std::string d = holo::testing::temp_dir();
  const std::string marker = d + "/pwned";
  // Spaces, both quotes, $(...), backquotes, '%' (an sbatch file-name pattern) and '#'.
  const std::string run = d + "/run 'a' \"b\" $(touch " + marker + ") `touch " + marker + "` %j #1";
  const std::string recipe = write_recipe(d, run, 5, 1);
  const std::string id = submit(recipe);
  ASSERT_FALSE(id.empty());
  const auto info = holo::testing::wait_for_end(id);
  EXPECT_EQ(info.state, "COMPLETED");
  EXPECT_FALSE(fs::exists(marker)) << "a recipe string ran as shell code";
  EXPECT_EQ(metric_steps(run), one_to(5));
  EXPECT_EQ(read_text(run + "/slurm/job_id"), id + "\n");
  EXPECT_TRUE(fs::exists(run + "/slurm/job-" + id + ".out"));
  EXPECT_TRUE(fs::exists(run + "/slurm/job-" + id + ".err"));
  EXPECT_THAT(read_text(run + "/slurm/job.sbatch"), HasSubstr("#SBATCH --requeue\n"));
  EXPECT_THAT(read_text(run + "/slurm/events.log"),
              AllOf(HasSubstr("holo submit: submitted job " + id), HasSubstr("started (SLURM_RESTART_COUNT=0)"),
                    HasSubstr("finished: training complete")));
  const auto st = status_json(run);
  EXPECT_EQ(st["state"], "COMPLETED");
  EXPECT_EQ(st["checkpoint_step"], 5);
  EXPECT_EQ(st["last_metrics"]["step"], 5);
  EXPECT_EQ(st["starts"], 1);
}

TEST(SlurmCluster, StatusAndCancelOfARunningJob) {
  const std::string d = holo::testing::temp_dir();
  const std::string run = d + "/run";
  const std::string recipe = write_recipe(d, run, 10, 3);
  const std::string id = submit(recipe, "CONTRACT_WORKER_PAUSE_AT=2");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(wait_until([&] { return fs::exists(run + "/paused"); }, "the worker to reach step 2"));

  const auto running = run_command(holo_binary() + " status " + shell_quote(run));
  EXPECT_EQ(running.exit_code, 0) << running.output;
  EXPECT_THAT(running.output, AllOf(HasSubstr("job         " + id + " RUNNING, from squeue"),
                                    HasSubstr("checkpoint  none"), HasSubstr("\"step\": 2")));
  // A second submission of a run whose job is still running is refused.
  const auto again = run_command(holo_binary() + " submit " + shell_quote(recipe) +
                                 " --holo-binary " + shell_quote(worker()));
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_THAT(again.output, HasSubstr("already has job " + id + " (RUNNING)"));

  const auto cancel = run_command(holo_binary() + " cancel " + shell_quote(run));
  EXPECT_EQ(cancel.exit_code, 0) << cancel.output;
  EXPECT_THAT(cancel.output, HasSubstr("cancelled job " + id));
  const auto info = holo::testing::wait_for_end(id);
  EXPECT_EQ(info.state, "CANCELLED");
  // The worker got SIGTERM, saved its step and stopped; the job did not requeue itself.
  ASSERT_TRUE(wait_until([&] { return slurm::last_checkpoint(run).has_value(); }, "the checkpoint"));
  EXPECT_EQ(slurm::last_checkpoint(run)->step, 2);
  EXPECT_THAT(read_text(run + "/worker.log"), HasSubstr("got TERM: saved step 2"));
  EXPECT_THAT(read_text(run + "/slurm/events.log"),
              AllOf(HasSubstr("holo cancel: cancelled job " + id), Not(HasSubstr("requeueing: restart"))));
  const auto st = status_json(run);
  EXPECT_EQ(st["state"], "CANCELLED");
  EXPECT_EQ(st["restarts"], 0);
  EXPECT_EQ(st["checkpoint_step"], 2);
  EXPECT_EQ(st["active"], false);
  const auto twice = run_command(holo_binary() + " cancel " + shell_quote(run));
  EXPECT_EQ(twice.exit_code, 2);
  EXPECT_THAT(twice.output, HasSubstr("is not pending or running (CANCELLED): nothing to cancel"));
}

TEST(SlurmCluster, PreemptionCheckpointsRequeuesAndResumes) {
  const std::string d = holo::testing::temp_dir();
  const std::string run = d + "/run";
  const std::string recipe = write_recipe(d, run, 8, 2);
  const std::string id = submit(recipe, "CONTRACT_WORKER_PAUSE_AT=3");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(wait_until([&] { return fs::exists(run + "/paused"); }, "the worker to reach step 3"));

  // The preemption warning, as SLURM sends it before the end of an allocation.
  const auto warn = run_command(holo_binary() + " cancel --preempt " + shell_quote(run));
  EXPECT_EQ(warn.exit_code, 0) << warn.output;
  EXPECT_THAT(warn.output, HasSubstr("sent USR1 to job " + id));
  const auto requeued = holo::testing::wait_for_requeue(id, 1);
  EXPECT_EQ(requeued.restarts, 1);
  const auto info = holo::testing::wait_for_end(id);
  EXPECT_EQ(info.state, "COMPLETED");
  EXPECT_EQ(info.restarts, 1);

  // Saved at step 3, restarted with SLURM_RESTART_COUNT=1 and resume=auto, resumed at step 3,
  // ran to 8: every step exactly once.
  EXPECT_THAT(text_lines(read_text(run + "/worker.log")),
              ElementsAre("start restart=0 args=[]", "got USR1: saved step 3",
                        "start restart=1 args=[--set checkpoint.resume=auto]",
                        "resumed from step 3", "finished at step 8"));
  EXPECT_EQ(metric_steps(run), one_to(8));
  const std::string events = read_text(run + "/slurm/events.log");
  EXPECT_THAT(events, AllOf(HasSubstr("job " + id + " restart 0: started (SLURM_RESTART_COUNT=0)"),
                            HasSubstr("restart 0: USR1: the allocation ends soon"),
                            HasSubstr("restart 0: workers saved a checkpoint and stopped (exit code 3)"),
                            HasSubstr("restart 0: requeueing: restart 1 of 2"),
                            HasSubstr("job " + id + " restart 1: started (SLURM_RESTART_COUNT=1)"),
                            HasSubstr("restart 1: finished: training complete")));
  // Output of both starts went to the same file (--open-mode=append).
  const std::string out = read_text(run + "/slurm/job-" + id + ".out");
  EXPECT_THAT(out, AllOf(HasSubstr("restart 0: started"), HasSubstr("restart 1: started")));
  const auto st = status_json(run);
  EXPECT_EQ(st["state"], "COMPLETED");
  EXPECT_EQ(st["restarts"], 1);
  EXPECT_EQ(st["starts"], 2);
  EXPECT_EQ(st["checkpoint_step"], 8);
}

TEST(SlurmCluster, TimeLimitWarningFromSlurmCheckpointsAndRequeues) {
  // Nobody signals this job: with a two-minute limit and a 60 s grace period, SLURM itself
  // sends USR1 (--signal=B:USR1@60) while the worker waits at step 2.
  const std::string d = holo::testing::temp_dir();
  const std::string run = d + "/run";
  const std::string recipe = write_recipe(d, run, 6, 1, "2", 60);
  const std::string id = submit(recipe, "CONTRACT_WORKER_PAUSE_AT=2");
  ASSERT_FALSE(id.empty());
  const auto info = holo::testing::wait_for_end(id);
  EXPECT_EQ(info.state, "COMPLETED");
  EXPECT_EQ(info.restarts, 1);
  EXPECT_THAT(text_lines(read_text(run + "/worker.log")),
              ElementsAre("start restart=0 args=[]", "got USR1: saved step 2",
                          "start restart=1 args=[--set checkpoint.resume=auto]",
                          "resumed from step 2", "finished at step 6"));
  EXPECT_EQ(metric_steps(run), one_to(6));
  EXPECT_THAT(read_text(run + "/slurm/events.log"),
              AllOf(HasSubstr("restart 0: USR1: the allocation ends soon"),
                    HasSubstr("restart 0: requeueing: restart 1 of 1"),
                    HasSubstr("restart 1: finished: training complete")));
}

TEST(SlurmCluster, ExhaustedRestartBudgetEndsTheJobWithAClearMessage) {
  const std::string d = holo::testing::temp_dir();
  const std::string run = d + "/run";
  const std::string recipe = write_recipe(d, run, 8, 0);
  const std::string id = submit(recipe, "CONTRACT_WORKER_PAUSE_AT=4");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(wait_until([&] { return fs::exists(run + "/paused"); }, "the worker to reach step 4"));
  slurm::cancel_job(id, "USR1");  // what `scancel --signal=USR1 --batch` does
  const auto info = holo::testing::wait_for_end(id);
  EXPECT_EQ(info.state, "FAILED");
  EXPECT_EQ(info.exit_code, "3:0");
  EXPECT_EQ(info.restarts, 0);
  const std::string message =
      "restart budget exhausted (slurm.max_restarts = 0, restarts used: 0): not requeueing; "
      "resubmit with 'holo submit' to resume from the newest checkpoint";
  EXPECT_THAT(read_text(run + "/slurm/job-" + id + ".err"), HasSubstr(message));
  EXPECT_THAT(read_text(run + "/slurm/events.log"), AllOf(HasSubstr(message), Not(HasSubstr("requeueing: restart"))));
  EXPECT_EQ(slurm::last_checkpoint(run)->step, 4);
  EXPECT_EQ(metric_steps(run), one_to(4));

  // Resubmitting continues from the checkpoint (a new job, budget counted afresh).
  const std::string id2 = submit(recipe);
  ASSERT_FALSE(id2.empty());
  EXPECT_NE(id2, id);
  EXPECT_EQ(holo::testing::wait_for_end(id2).state, "COMPLETED");
  EXPECT_EQ(metric_steps(run), one_to(8));
  EXPECT_THAT(read_text(run + "/worker.log"), HasSubstr("resumed from step 4"));
  EXPECT_THAT(read_text(run + "/slurm/events.log"),
              HasSubstr("holo submit: submitted job " + id2 + " (previous job " + id + ")"));
}

}  // namespace
}  // namespace holo
