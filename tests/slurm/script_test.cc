// The sbatch script without a cluster: quoting, validation of every [slurm] value, the exact
// resources of a multi-node GPU recipe, injection attempts, and the preemption protocol of the
// script body run by bash with a recording `srun` and `scontrol` in front of PATH.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/recipe.h"
#include "slurm/script.h"
#include "slurm/submit.h"
#include "tests/test_util.h"

namespace holo {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using holo::testing::holo_binary;
using holo::testing::run_command;

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

/// Lines of `script` that start with `prefix`.
std::vector<std::string> lines_starting(const std::string& script, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& l : lines_of(script)) {
    if (l.compare(0, prefix.size(), prefix) == 0) out.push_back(l);
  }
  return out;
}

/// The message of the RecipeError that parsing `toml` throws, or a failed test.
std::string recipe_error(const std::string& toml) {
  try {
    parse_recipe(toml, "r.toml");
  } catch (const RecipeError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a RecipeError for:\n" << toml;
  return "";
}

TEST(SlurmQuote, ShellQuoteSurvivesShellUnchanged) {
  const std::string d = holo::testing::temp_dir();
  const std::string marker = d + "/pwned";
  const std::vector<std::string> values = {
      "", "plain", "two words", "it's", "'", "''", "\"", "\\", "$HOME", "$(touch " + marker + ")",
      "`touch " + marker + "`", "a\nb", "; touch " + marker, "*", "~", "a'; touch " + marker + "; '"};
  for (const auto& v : values) {
    write(d + "/expected", v);
    const auto r = run_command("/bin/sh -c " + slurm::shell_quote("printf %s " + slurm::shell_quote(v) +
                                                                    " > " + d + "/got"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(slurp(d + "/got"), v);
  }
  EXPECT_FALSE(fs::exists(marker));
}

TEST(SlurmQuote, SbatchQuoteEscapesAndRejectsNewlines) {
  EXPECT_EQ(slurm::sbatch_quote("gpu", "x"), "\"gpu\"");
  EXPECT_EQ(slurm::sbatch_quote("a \"b\" c\\d #e", "x"), "\"a \\\"b\\\" c\\\\d #e\"");
  EXPECT_THAT([] { slurm::sbatch_quote("gpu\n#SBATCH --uid=0", "slurm partition value"); },
              ::testing::ThrowsMessage<UsageError>(
                  AllOf(HasSubstr("slurm partition value"), HasSubstr("control character"))));
}

TEST(SlurmRecipe, GoodFormsAreAccepted) {
  for (const char* t : {"30", "30:00", "01:00:00", "100:00:00", "1-0", "2-12", "2-12:30",
                        "2-12:30:15", "0:30"}) {
    EXPECT_NO_THROW(parse_recipe(std::string("[slurm]\ntime = \"") + t + "\"\n", "r.toml")) << t;
  }
  const Recipe r = parse_recipe(R"TOML([slurm]
partition = "gpu,gpu-long"
account = "lab_01"
qos = "high.prio"
constraint = "[a100*2&ib]|(h100,l40)"
mem = "480G"
gpu_type = "a100"
gpus_per_node = 4
env = ["NCCL_SOCKET_IFNAME=ib0", "NCCL_IB_HCA=mlx5_0:1,mlx5_1:1", "X=a b 'c' $d"]
)TOML", "r.toml");
  EXPECT_EQ(r.slurm.partition, "gpu,gpu-long");
  EXPECT_EQ(r.slurm.env.size(), 3u);
  EXPECT_NO_THROW(slurm::validate(r));
  EXPECT_EQ(slurm::time_limit_seconds("2-12:30:15"), 2 * 86400 + 12 * 3600 + 30 * 60 + 15);
  EXPECT_EQ(slurm::time_limit_seconds("90"), 90 * 60);
  EXPECT_EQ(slurm::time_limit_seconds("1:30"), 90);
  EXPECT_EQ(slurm::time_limit_seconds("1-2"), 86400 + 2 * 3600);
  EXPECT_EQ(slurm::time_limit_seconds("1-2:03"), 86400 + 2 * 3600 + 3 * 60);
}

TEST(SlurmRecipe, BadFormsNameFileLineAndKey) {
  EXPECT_THAT(recipe_error("[slurm]\ntime = \"1:00:00; rm -rf /\"\n"),
              AllOf(HasSubstr("r.toml:2:1"), HasSubstr("slurm.time"), HasSubstr("not a SLURM time")));
  EXPECT_THAT(recipe_error("[slurm]\ntime = \"25:61:00\"\n"), HasSubstr("below 60"));
  EXPECT_THAT(recipe_error("[slurm]\ntime = \"1-24:00\"\n"), HasSubstr("below 24"));
  EXPECT_THAT(recipe_error("[slurm]\ntime = \"00:00:00\"\n"), HasSubstr("more than zero"));
  EXPECT_THAT(recipe_error("[slurm]\ntime = \"1:2:3:4\"\n"), HasSubstr("not a SLURM time"));
  EXPECT_THAT(recipe_error("[slurm]\ntime = \"\"\n"), HasSubstr("not a SLURM time"));
  EXPECT_THAT(recipe_error("[slurm]\npartition = \"gpu\\n#SBATCH --uid=0\"\n"),
              AllOf(HasSubstr("slurm.partition"), HasSubstr("not a SLURM name")));
  EXPECT_THAT(recipe_error("[slurm]\npartition = \"gpu,\"\n"), HasSubstr("empty name"));
  EXPECT_THAT(recipe_error("[slurm]\naccount = \"lab; id\"\n"), HasSubstr("slurm.account"));
  EXPECT_THAT(recipe_error("[slurm]\nqos = \"-x\"\n"), HasSubstr("slurm.qos"));
  EXPECT_THAT(recipe_error("[slurm]\nconstraint = \"a100 ib\"\n"), HasSubstr("not a SLURM constraint"));
  EXPECT_THAT(recipe_error("[slurm]\nmem = \"16GB\"\n"), HasSubstr("not a SLURM memory size"));
  EXPECT_THAT(recipe_error("[slurm]\ngpu_type = \"a100:4\"\n"), HasSubstr("slurm.gpu_type"));
  EXPECT_THAT(recipe_error("[slurm]\nenv = [\"1X=2\"]\n"), HasSubstr("not NAME=VALUE"));
  EXPECT_THAT(recipe_error("[slurm]\nenv = [\"A-B=2\"]\n"), HasSubstr("not NAME=VALUE"));
  EXPECT_THAT(recipe_error("[slurm]\nenv = [\"A=b\\nrm -rf /\"]\n"), HasSubstr("control character"));
  EXPECT_THAT(recipe_error("[slurm]\nmpi = \"openmpi\"\n"), HasSubstr("pmix, pmi2, none"));
  EXPECT_THAT(recipe_error("[slurm]\ngrace_s = 5\n"), HasSubstr("below the minimum 10"));
}

TEST(SlurmRecipe, RelationsBetweenKeysAreChecked) {
  Recipe r;
  r.slurm.gpus_per_node = 4;
  r.slurm.tasks_per_node = 2;
  EXPECT_THAT([&] { slurm::validate(r); },
              ::testing::ThrowsMessage<UsageError>(HasSubstr("must equal slurm.gpus_per_node")));
  r = Recipe();
  r.slurm.gpu_type = "a100";
  EXPECT_THAT([&] { slurm::validate(r); },
              ::testing::ThrowsMessage<UsageError>(HasSubstr("needs slurm.gpus_per_node > 0")));
  r = Recipe();
  r.slurm.time = "2";  // two minutes
  r.slurm.grace_s = 120;
  EXPECT_THAT([&] { slurm::validate(r); },
              ::testing::ThrowsMessage<UsageError>(HasSubstr("must be shorter than the time limit")));
  // A Recipe built in code is held to the schema too.
  r = Recipe();
  r.slurm.partition = "gpu\necho pwned";
  EXPECT_THAT([&] { slurm::validate(r); },
              ::testing::ThrowsMessage<UsageError>(HasSubstr("slurm.partition")));
  EXPECT_EQ(slurm::tasks_per_node(Recipe().slurm), 1);
}

TEST(SlurmScript, DryRunOfMultiNodeGpuRecipe) {
  const std::string d = holo::testing::temp_dir();
  write(d + "/gpu.toml", R"(
[run]
name = "r3d kinetics"
dir = ")" + d + R"(/runs/k400"
[data]
dataset = "synth"
[train]
max_steps = 100
[slurm]
nodes = 2
gpus_per_node = 4
gpu_type = "a100"
cpus_per_task = 8
mem = "256G"
time = "12:00:00"
account = "lab"
max_restarts = 5
grace_s = 300
env = ["NCCL_SOCKET_IFNAME=ib0"]
)");
  const auto r = run_command(holo_binary() + " submit " + d + "/gpu.toml --dry-run --nodes 4 " +
                             "--time 2-00:00:00 --partition gpu --qos high --constraint 'a100&ib'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string run = d + "/runs/k400";
  EXPECT_THAT(lines_starting(r.output, "#SBATCH"),
              ElementsAre("#SBATCH --job-name=\"holo-r3d_kinetics\"",
                          "#SBATCH --chdir=\"" + run + "\"",
                          "#SBATCH --output=\"" + run + "/slurm/job-%j.out\"",
                          "#SBATCH --error=\"" + run + "/slurm/job-%j.err\"",
                          "#SBATCH --open-mode=append", "#SBATCH --nodes=4",
                          "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=\"a100:4\"",
                          "#SBATCH --cpus-per-task=8", "#SBATCH --mem=\"256G\"",
                          "#SBATCH --time=\"2-00:00:00\"", "#SBATCH --partition=\"gpu\"",
                          "#SBATCH --account=\"lab\"", "#SBATCH --qos=\"high\"",
                          "#SBATCH --constraint=\"a100&ib\"", "#SBATCH --requeue",
                          "#SBATCH --signal=B:USR1@300"));
  EXPECT_THAT(r.output,
              AllOf(HasSubstr("launch=(srun --mpi=pmix --kill-on-bad-exit=0 --nodes=4 "
                              "--ntasks-per-node=4 --cpus-per-task=8 --wait=30)\n"),
                    HasSubstr("recipe='" + run + "/slurm/recipe.toml'\n"),
                    HasSubstr("max_restarts=5\n"),
                    HasSubstr("export HOLO_NUM_THREADS=\"${HOLO_NUM_THREADS:-8}\"\n"),
                    HasSubstr("export NCCL_SOCKET_IFNAME='ib0'\n"),
                    HasSubstr("scontrol requeue \"$SLURM_JOB_ID\""),
                    HasSubstr("trap on_usr1 USR1")));
  EXPECT_EQ(r.output.rfind("#!/bin/bash\n", 0), 0u);
  // A dry run writes nothing.
  EXPECT_FALSE(fs::exists(run));

  // mpirun inside the allocation instead of srun.
  const auto m = run_command(holo_binary() + " submit " + d + "/gpu.toml --dry-run --set slurm.launcher=mpirun");
  ASSERT_EQ(m.exit_code, 0) << m.output;
  EXPECT_THAT(m.output, HasSubstr("launch=(mpirun -np 8 --map-by ppr:4:node --bind-to none "
                                  "-x HOLO_NUM_THREADS -x NCCL_SOCKET_IFNAME)\n"));
}

TEST(SlurmScript, FlagsAreValidatedLikeRecipeValues) {
  const std::string d = holo::testing::temp_dir();
  write(d + "/r.toml", "[data]\ndataset = \"synth\"\n");
  auto r = run_command(holo_binary() + " submit " + d + "/r.toml --dry-run --time 25:61:00");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, AllOf(HasSubstr("--time (slurm.time)"), HasSubstr("below 60")));
  r = run_command(holo_binary() + " submit " + d + "/r.toml --dry-run --nodes 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--nodes (slurm.nodes): value 0 is below the minimum 1"));
  r = run_command(holo_binary() + " submit " + d + "/r.toml --dry-run --partition 'gpu;reboot'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("not a SLURM name"));
  r = run_command(holo_binary() + " submit " + d + "/r.toml --dry-run --set slurm.tasks_per_node=3 --gpus-per-node 2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("must equal slurm.gpus_per_node"));
}

/// A directory holding fake `srun` and `scontrol` that record their arguments: the script's
/// body runs exactly as in a job, minus the scheduler.
struct FakeScheduler {
  std::string bin;
  std::string log;
  explicit FakeScheduler(const std::string& dir, const std::string& srun_body) {
    bin = dir + "/bin";
    log = dir + "/calls.log";
    // `srun ... true`: the script's probe of its nodes after a failure; FAKE_PROBE_RC decides.
    write(bin + "/srun", "#!/bin/bash\n{ printf 'srun'; printf ' [%s]' \"$@\"; printf '\\n'; } >> " +
                             slurm::shell_quote(log) + "\n" +
                             "if [ \"${@: -1}\" = true ]; then echo 'srun: error: probe failed on node n2' >&2; "
                             "exit \"${FAKE_PROBE_RC:-0}\"; fi\n" + srun_body);
    write(bin + "/scontrol", "#!/bin/bash\n{ printf 'scontrol'; printf ' [%s]' \"$@\"; printf '\\n'; } >> " +
                                 slurm::shell_quote(log) + "\nexit 0\n");
    fs::permissions(bin + "/srun", fs::perms::owner_all);
    fs::permissions(bin + "/scontrol", fs::perms::owner_all);
  }
};

TEST(SlurmScript, RecipeStringsCannotInjectShellCode) {
  const std::string d = holo::testing::temp_dir();
  const std::string marker = d + "/pwned";
  const std::string evil = "$(touch " + marker + ")`touch " + marker + "`'; touch " + marker + "; '\"";
  Recipe r;
  r.run.name = "n" + evil;
  // A run directory full of shell and sbatch metacharacters, '%' included.
  const std::string run = d + "/run dir " + evil + " %j #x";
  r.run.dir = run;
  r.slurm.env = {"EVIL=" + evil, "PLAIN=1"};
  r.slurm.max_restarts = 1;
  const std::string holo = d + "/bin dir/holo";
  const std::string script = slurm::build_script(r, slurm::ScriptOptions(holo, run));

  // Nothing outside quotes: the script has the same shape as for a harmless recipe.
  Recipe plain;
  plain.run.dir = d + "/plain";
  plain.slurm.env = {"EVIL=x", "PLAIN=1"};
  plain.slurm.max_restarts = 1;
  const std::string plain_script =
      slurm::build_script(plain, slurm::ScriptOptions(d + "/holo", d + "/plain"));
  EXPECT_EQ(lines_of(script).size(), lines_of(plain_script).size());
  EXPECT_EQ(lines_starting(script, "#SBATCH").size(), lines_starting(plain_script, "#SBATCH").size());
  EXPECT_THAT(script, HasSubstr("#SBATCH --output=\"" + d + "/run dir $(touch " + marker +
                                ")`touch " + marker + "`'; touch " + marker +
                                "; '\\\" %%j #x/slurm/job-%j.out\""));

  // Run the body: the worker command receives every value intact, nothing else runs.
  FakeScheduler fake(d, "echo \"EVIL=$EVIL\" >> " + slurm::shell_quote(d + "/calls.log") + "\nexit 0\n");
  fs::create_directories(run + "/slurm");
  write(d + "/job.sh", script);
  const auto res = run_command("cd " + slurm::shell_quote(d) + " && PATH=" + slurm::shell_quote(fake.bin) +
                               ":$PATH SLURM_JOB_ID=77 bash job.sh");
  EXPECT_EQ(res.exit_code, 0) << res.output;
  EXPECT_FALSE(fs::exists(marker)) << "a recipe string ran as shell code";
  EXPECT_EQ(slurp(fake.log),
            "srun [--mpi=pmix] [--kill-on-bad-exit=0] [--nodes=1] [--ntasks-per-node=1] "
            "[--cpus-per-task=2] [--wait=30] [" + holo + "] [train] [" + run + "/slurm/recipe.toml]\n"
            "EVIL=" + evil + "\n");
  EXPECT_THAT(slurp(run + "/slurm/events.log"), HasSubstr("finished: training complete"));
}

/// Runs `script` under bash in the background with the fake scheduler, waits until the fake
/// worker is up (it creates `ready`), sends USR1 to the batch shell and returns its exit code
/// and output.
holo::testing::CommandResult run_preempted(const std::string& d, const std::string& script,
                                           const FakeScheduler& fake, int restart_count) {
  write(d + "/job.sh", script);
  const std::string q = slurm::shell_quote(d);
  // The loop is bounded by the number of tries; each try waits for the worker to start.
  return run_command("cd " + q + " || exit 1; rm -f ready; PATH=" + slurm::shell_quote(fake.bin) +
                     ":$PATH SLURM_JOB_ID=42 SLURM_RESTART_COUNT=" + std::to_string(restart_count) +
                     " bash job.sh > job.out 2> job.err & pid=$!; "
                     "for i in $(seq 1 3000); do [ -e " + q + "/ready ] && break; sleep 0.1; done; "
                     "kill -USR1 $pid; wait $pid; echo \"rc=$?\"; cat " + q + "/job.out " + q + "/job.err");
}

TEST(SlurmScript, WarningIsForwardedAndJobRequeuesWhileBudgetLasts) {
  const std::string d = holo::testing::temp_dir();
  Recipe r;
  r.run.dir = d + "/run";
  r.slurm.max_restarts = 2;
  fs::create_directories(d + "/run/slurm");
  // The worker saves on USR1 and exits 3, as `holo train` does.
  FakeScheduler fake(d, "trap 'echo worker-got-USR1 >> " + slurm::shell_quote(d + "/calls.log") +
                            "; exit 3' USR1\ntouch " + slurm::shell_quote(d + "/ready") +
                            "\nwhile :; do sleep 0.05; done\n");
  const std::string script = slurm::build_script(r, slurm::ScriptOptions(d + "/holo", d + "/run"));

  const auto first = run_preempted(d, script, fake, 1);
  EXPECT_THAT(first.output, HasSubstr("rc=0")) << first.output;
  EXPECT_THAT(slurp(fake.log), AllOf(HasSubstr("[train] [" + d + "/run/slurm/recipe.toml] [--set] "
                                               "[checkpoint.resume=auto]\n"),
                                     HasSubstr("worker-got-USR1\nscontrol [requeue] [42]\n")));
  EXPECT_THAT(slurp(d + "/run/slurm/events.log"),
              AllOf(HasSubstr("job 42 restart 1: started (SLURM_RESTART_COUNT=1)"),
                    HasSubstr("USR1: the allocation ends soon"),
                    HasSubstr("workers saved a checkpoint and stopped (exit code 3)"),
                    HasSubstr("requeueing: restart 2 of 2")));

  // The budget is spent: no requeue, a clear message, exit code 3.
  fs::remove(fake.log);
  const auto last = run_preempted(d, script, fake, 2);
  EXPECT_THAT(last.output, AllOf(HasSubstr("rc=3"),
                                 HasSubstr("restart budget exhausted (slurm.max_restarts = 2, "
                                           "restarts used: 2)")))
      << last.output;
  EXPECT_THAT(slurp(fake.log), Not(HasSubstr("scontrol")));
}

TEST(SlurmScript, WorkerFailureRequeuesWhileBudgetLastsThenIsReported) {
  const std::string d = holo::testing::temp_dir();
  Recipe r;
  r.run.dir = d + "/run";
  r.slurm.max_restarts = 1;
  fs::create_directories(d + "/run/slurm");
  FakeScheduler fake(d, "exit 7\n");
  write(d + "/job.sh", slurm::build_script(r, slurm::ScriptOptions(d + "/holo", d + "/run")));
  // A failed worker (killed, its node lost) requeues the job while the budget lasts: the
  // restart resumes from the newest checkpoint.
  const auto first = run_command("cd " + slurm::shell_quote(d) + " && PATH=" + slurm::shell_quote(fake.bin) +
                                 ":$PATH SLURM_JOB_ID=5 bash job.sh");
  EXPECT_EQ(first.exit_code, 0) << first.output;
  EXPECT_THAT(first.output, HasSubstr("workers failed (exit code 7): requeueing: restart 1 of 1"));
  EXPECT_THAT(slurp(fake.log), AllOf(HasSubstr("[--kill-on-bad-exit=1] [true]\n"), HasSubstr("scontrol [requeue] [5]")));

  // A node that cannot start tasks any more: no requeue (the job would pend for the node).
  fs::remove(fake.log);
  const auto lost = run_command("cd " + slurm::shell_quote(d) + " && PATH=" + slurm::shell_quote(fake.bin) +
                                ":$PATH SLURM_JOB_ID=5 SLURM_JOB_NODELIST='n[1-2]' FAKE_PROBE_RC=1 bash job.sh");
  EXPECT_EQ(lost.exit_code, 7);
  EXPECT_THAT(lost.output, HasSubstr("workers failed (exit code 7) and a node of this allocation (n[1-2]) cannot "
                                     "start tasks (error: probe failed on node n2): not requeueing"));
  EXPECT_THAT(slurp(fake.log), Not(HasSubstr("scontrol")));

  // The budget is spent: no requeue, the worker's exit code.
  fs::remove(fake.log);
  const auto res = run_command("cd " + slurm::shell_quote(d) + " && PATH=" + slurm::shell_quote(fake.bin) +
                               ":$PATH SLURM_JOB_ID=5 SLURM_RESTART_COUNT=1 bash job.sh");
  EXPECT_EQ(res.exit_code, 7);
  EXPECT_THAT(res.output, HasSubstr("failed: workers exited with code 7; restart budget exhausted "
                                    "(slurm.max_restarts = 1, restarts used: 1)"));
  EXPECT_THAT(slurp(fake.log), Not(HasSubstr("scontrol")));
}

TEST(SlurmScript, RejectsRelativePathsAndBackslashes) {
  Recipe r;
  EXPECT_THROW(slurm::build_script(r, slurm::ScriptOptions("/bin/holo", "runs/x")), UsageError);
  EXPECT_THROW(slurm::build_script(r, slurm::ScriptOptions("holo", "/runs/x")), UsageError);
  EXPECT_THAT([&] { slurm::build_script(r, slurm::ScriptOptions("/bin/holo", "/runs/a\\b")); },
              ::testing::ThrowsMessage<UsageError>(HasSubstr("backslash")));
  EXPECT_THAT([&] { slurm::build_script(r, slurm::ScriptOptions("/bin/holo", "/runs/a\nb")); },
              ::testing::ThrowsMessage<UsageError>(HasSubstr("control character")));
}

TEST(SlurmStatus, ReadsCheckpointsMetricsAndEventsOfARunDirectory) {
  const std::string d = holo::testing::temp_dir();
  write(d + "/checkpoints/step-00000010/manifest.json", R"({"step": 10, "complete": true})");
  write(d + "/checkpoints/step-00000030/manifest.json", R"({"step": 30, "complete": true})");
  // Newer but incomplete (an interrupted save), and a stray folder: neither counts.
  write(d + "/checkpoints/step-00000040/manifest.json", R"({"step": 40, "complete": false})");
  write(d + "/checkpoints/step-00000050.tmp/manifest.json", R"({"step": 50, "complete": true})");
  write(d + "/metrics.jsonl", "{\"step\": 1}\n{\"step\": 2, \"loss\": 0.5}\n");
  write(d + "/slurm/events.log",
        "t job 1 restart 0: started (SLURM_RESTART_COUNT=0) on vm\nt job 1 restart 1: started "
        "(SLURM_RESTART_COUNT=1) on vm\n");
  const auto ckpt = slurm::last_checkpoint(d);
  ASSERT_TRUE(ckpt.has_value());
  EXPECT_EQ(ckpt->step, 30);
  EXPECT_EQ(ckpt->path, d + "/checkpoints/step-00000030");

  const auto st = slurm::run_status(d);
  EXPECT_EQ(st.job_id, "");
  EXPECT_EQ(st.starts, 2);
  EXPECT_EQ(st.last_metrics, "{\"step\": 2, \"loss\": 0.5}");
  const std::string text = slurm::format_status(st, false);
  EXPECT_THAT(text, AllOf(HasSubstr("job         none"), HasSubstr("checkpoint  step 30"),
                          HasSubstr("2 starts logged")));
  EXPECT_THAT(slurm::format_status(st, true),
              AllOf(HasSubstr("\"checkpoint_step\":30"), HasSubstr("\"last_metrics\":{\"loss\":0.5,\"step\":2}")));

  const auto r = run_command(holo_binary() + " status " + d + "/nope");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("is not a run directory"));
  const auto c = run_command(holo_binary() + " cancel " + d);
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_THAT(c.output, HasSubstr("has no job"));
}

}  // namespace
}  // namespace holo
