#pragma once
// The real single-node SLURM cluster of the `slurm` tests: started once per test executable by
// scripts/slurm-local.sh in a folder of its own, stopped (its jobs cancelled first) at the end.
// SLURM_CONF is set in this process, so sbatch, squeue, scontrol and every `holo` started by a
// test talk to it.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/recipe.h"

#include "core/time.h"
#include "slurm/scheduler.h"
#include "slurm/script.h"
#include "tests/test_util.h"

namespace holo::testing {

class LocalCluster : public ::testing::Environment {
 public:
  /// `nodes` > 1: the multi-node cluster of `scripts/slurm-local.sh start --nodes N`, each node
  /// in namespaces of its own.
  explicit LocalCluster(std::string name, int nodes = 1) : name_(std::move(name)), nodes_(nodes) {}

  void SetUp() override {
    const char* tmp = std::getenv("HOLO_TEST_TMP");
    dir_ = std::string(tmp ? tmp : "/tmp/holo-test") + "/cluster-" + name_;
    std::filesystem::create_directories(dir_);
    script_ = source_dir() + "/scripts/slurm-local.sh";
    // A cluster left running by an interrupted earlier run of this executable goes first.
    run_command("bash " + slurm::shell_quote(script_) + " stop " + slurm::shell_quote(dir_));
    const std::string nodes = nodes_ > 1 ? " --nodes " + std::to_string(nodes_) : "";
    const auto r = run_command("bash " + slurm::shell_quote(script_) + " start" + nodes + " " +
                               slurm::shell_quote(dir_));
    started_ = true;  // a half-started cluster is stopped too
    ASSERT_EQ(r.exit_code, 0) << "scripts/slurm-local.sh start failed:\n" << r.output;
    ::setenv("SLURM_CONF", (dir_ + "/etc/slurm.conf").c_str(), 1);
    // The other variables of env.sh (the multi-node cluster's MPI interface), for commands.
    std::ifstream env(dir_ + "/env.sh");
    for (std::string line; std::getline(env, line);) {
      if (line.rfind("export ", 0) != 0 || line.rfind("export SLURM_CONF=", 0) == 0) continue;
      const auto eq = line.find('=');
      env_ += line.substr(7, eq - 7) + "=" + slurm::shell_quote(line.substr(eq + 1)) + " ";
    }
  }

  void TearDown() override {
    if (!started_) return;
    const auto r = run_command("bash " + slurm::shell_quote(script_) + " stop " + slurm::shell_quote(dir_));
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }

  const std::string& dir() const { return dir_; }
  /// "NAME=VALUE ... " of env.sh besides SLURM_CONF, to put before a command.
  const std::string& env() const { return env_; }
  int nodes() const { return nodes_; }

 private:
  std::string name_;
  int nodes_ = 1;
  std::string env_;
  std::string dir_;
  std::string script_;
  bool started_ = false;
};

/// Polls `done` every `poll_ms` until it holds. The limit is only a safety net so that a broken
/// cluster ends the test instead of hanging it: it is far above what any wait here needs (a
/// requeued job may wait about two minutes before SLURM starts it again).
inline bool wait_until(const std::function<bool()>& done, const std::string& what,
                       double limit_s = 900, int poll_ms = 500) {
  const auto start = std::chrono::steady_clock::now();
  while (!done()) {
    if (seconds_since(start) > limit_s) {
      ADD_FAILURE() << "gave up waiting for " << what << " after " << limit_s << " s";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
  return true;
}

/// Waits until job `id` has left the queue for good (a final state) and returns what SLURM says.
inline slurm::JobInfo wait_for_end(const std::string& id) {
  slurm::JobInfo info;
  wait_until([&] {
    info = slurm::query_job(id);
    return !info.state.empty() && !info.active();
  }, "job " + id + " to end");
  return info;
}

/// Waits until job `id` has been requeued `restarts` times and is pending (or running) again.
/// A requeued job pends on a begin time until its last credential has expired: about two
/// minutes on a default cluster, `cred_expire` (15 s) on the local one.
inline slurm::JobInfo wait_for_requeue(const std::string& id, int64_t restarts) {
  slurm::JobInfo info;
  wait_until([&] {
    info = slurm::query_job(id);
    // Right after the requeue the job is still COMPLETING (or REQUEUED).
    return info.restarts >= restarts && info.state != "COMPLETING" &&
           info.state.compare(0, 7, "REQUEUE") != 0;
  }, "job " + id + " to be requeued (restart " + std::to_string(restarts) + ")");
  return info;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<std::string> text_lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

/// A tiny training run of the SLURM tests.
struct TinyRun {
  int videos = 16;
  int epochs = 100;
  int max_steps = 60;  ///< 0: none (the epochs decide)
  int every_steps = 0;
  int max_restarts = 1;
  int tasks_per_node = 1;
  std::string mem = "2G";  ///< slurm.mem
};

/// The deterministic synthetic recipe of the SLURM end-to-end tests (e2e_test.cc, multinode_test.cc),
/// written to <dir>/tiny.toml.
std::string write_recipe(const std::string& dir, const std::string& run_dir, const TinyRun& t) {
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/tiny.toml";
  std::ofstream(path) << "[run]\nname = \"tiny\"\ndir = " << holo::to_toml_text(holo::Value(run_dir)) << R"(
seed = 7
deterministic = true
[data]
dataset = "synth"
synth_videos = )" << t.videos << R"(
synth_classes = 2
synth_frames = 16
[sampling]
num_frames = 4
stride = 2
[transform]
crop_size = 32
train_scale_min = 32
train_scale_max = 40
test_scale = 32
[loader]
batch_size = 2
workers = 1
prefetch = 2
[model]
name = "resnet3d"
depth = 10
width = 0.125
dropout = 0.0
[optim]
lr = 0.01
[train]
epochs = )" << t.epochs << "\nmax_steps = " << t.max_steps << R"(
log_every = 1
val_every = 0
[checkpoint]
background = false
every_steps = )" << t.every_steps << R"(
[slurm]
time = "00:30:00"
cpus_per_task = 1
mem = ")" << t.mem << R"("
tasks_per_node = )" << t.tasks_per_node << "\nmax_restarts = " << t.max_restarts << "\n";
  return path;
}

}  // namespace holo::testing
