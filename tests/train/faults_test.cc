// Faults that must not lose progress (ctest label `faults`): kill -9 at each phase of a
// checkpoint save, corrupt and truncated shards, a full disk, a run directory holding another
// run's checkpoints, a resume where no checkpoint is readable. Each test checks that nothing is
// lost (the previous checkpoint loads, every step is trained and recorded once) and that the
// exit code and the message are right. docs/checkpoint-format.md, "Nothing lost".
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "checkpoints/checkpoint.h"
#include "tests/test_util.h"

namespace holo {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using holo::testing::holo_binary;
using holo::testing::run_command;

std::string data_dir() {
  const char* t = std::getenv("HOLO_TEST_TMP");
  return std::string(t ? t : "/tmp/holo-test") + "/faults-data";
}

class Faults : public ::testing::Test {
 protected:
  void SetUp() override {
    static bool made = false;
    if (made) return;
    fs::remove_all(data_dir());
    const auto r = run_command(holo_binary() + " data synth --kind motion --classes 4 --videos 32 --frames 16 " +
                               "--size 48x32 --seed 5 --out " + data_dir());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    made = true;
  }

  /// A small recipe: 24 training videos, 4 per step, 6 steps per epoch, validation after every
  /// epoch, a checkpoint every 2 steps.
  static std::string recipe(const std::string& dir, const std::string& extra = "") {
    const std::string m = data_dir();
    const std::string path = dir + "/recipe.toml";
    fs::create_directories(dir);
    std::ofstream(path) << "[run]\nseed = 3\ndir = \"" << dir << "/run\"\n"
                        << "[data]\ndataset = \"kinetics\"\nroot = \"" << m << "\"\ntrain = \"" << m
                        << "/train.csv\"\nval = \"" << m << "/val.csv\"\n"
                        << "[sampling]\nnum_frames = 4\nstride = 2\ntest_clips = 1\ntest_crops = 1\n"
                        << "[transform]\ncrop_size = 32\ntrain_scale_min = 32\ntrain_scale_max = 36\ntest_scale = 32\n"
                        << "[loader]\nbatch_size = 4\nworkers = 1\n"
                        << "[model]\nname = \"resnet3d\"\ndepth = 10\nwidth = 0.125\ndropout = 0.2\n"
                        << "[optim]\nlr = 0.05\n"
                        << "[train]\nepochs = 2\nlog_every = 1\nval_every = 1\n"
                        << "[checkpoint]\nevery_steps = 2\nkeep = 1\nbackground = false\n"
                        << extra;
    return path;
  }

  static holo::testing::CommandResult train(const std::string& recipe, const std::string& sets = "",
                                            const std::string& env = "") {
    return run_command(env + " HOLO_NUM_THREADS=1 " + holo_binary() + " train " + recipe + " " + sets);
  }

  /// (split, step) -> number of lines in metrics.jsonl.
  static std::map<std::pair<std::string, int64_t>, int> metric_counts(const std::string& run) {
    std::map<std::pair<std::string, int64_t>, int> out;
    std::ifstream in(run + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      ++out[{j.at("split").get<std::string>(), j.at("step").get<int64_t>()}];
    }
    return out;
  }

  /// Every training step 1..steps once, and validation after each of `epochs` epochs once.
  static void expect_complete_records(const std::string& run, int64_t steps, int64_t epochs) {
    const auto counts = metric_counts(run);
    std::set<int64_t> val_steps;
    for (const auto& [key, n] : counts) {
      EXPECT_EQ(n, 1) << key.first << " line of step " << key.second << " written " << n << " times";
      if (key.first == "val") val_steps.insert(key.second);
    }
    for (int64_t s = 1; s <= steps; ++s) EXPECT_EQ(counts.count({"train", s}), 1u) << "step " << s;
    EXPECT_EQ(static_cast<int64_t>(val_steps.size()), epochs);
    const auto summary = nlohmann::json::parse(std::ifstream(run + "/summary.json"));
    EXPECT_EQ(summary.at("step").get<int64_t>(), steps);
    EXPECT_EQ(summary.at("epoch").get<int64_t>(), epochs);
  }

  /// Files and folders in `dir` whose names start with '.' (leftovers of saves and cleanups).
  static std::vector<std::string> hidden_entries(const std::string& dir) {
    std::vector<std::string> out;
    if (!fs::exists(dir)) return out;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().filename().string()[0] == '.') out.push_back(e.path().filename().string());
    }
    return out;
  }

  static void flip_byte(const std::string& file, std::streamoff at) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(at);
    const char c = static_cast<char>(f.peek());
    f.seekp(at);
    f.put(static_cast<char>(c ^ 0x5a));
  }
};

// kill -9 at each phase of the second save (step 4; the cleanup of step 2 when step 4 is
// committed): the previous checkpoint stays loadable, the next start removes what the kill
// left, resumes and finishes, and every step and validation is recorded once.
TEST_F(Faults, KillAtEachPhaseOfASaveLosesNothing) {
  for (const std::string phase : {"shard:2", "marker:2", "manifest:2", "cleanup:1"}) {
    SCOPED_TRACE(phase);
    const std::string d = holo::testing::temp_dir() + "/" + phase.substr(0, phase.find(':'));
    const std::string path = recipe(d);
    const std::string ckpts = d + "/run/checkpoints";
    const auto killed = train(path, "", "HOLO_FAULT_KILL_AT=" + phase);
    EXPECT_EQ(killed.exit_code, 128 + 9) << killed.output;
    const auto left = ckpt::Manager::list(ckpts);
    ASSERT_FALSE(left.empty());
    const int64_t newest = left.back().step;
    EXPECT_EQ(newest, phase == "cleanup:1" ? 4 : 2);
    EXPECT_EQ(ckpt::Manager::load_latest(ckpts, 0, 1)->step, newest);
    EXPECT_FALSE(hidden_entries(ckpts).empty()) << "the kill left nothing to clean up";
    // The log survived the kill: lines up to the last checkpoint are in the file.
    std::ifstream log(d + "/run/train.log");
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_THAT(text, HasSubstr("checkpoint: saved " + ckpt::Manager::step_dir(ckpts, newest)));

    const auto resumed = train(path);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_THAT(resumed.output, HasSubstr("resumed from " + ckpt::Manager::step_dir(ckpts, newest)));
    EXPECT_THAT(resumed.output, HasSubstr("left by an interrupted save or cleanup"));
    EXPECT_TRUE(hidden_entries(ckpts).empty()) << ::testing::PrintToString(hidden_entries(ckpts));
    expect_complete_records(d + "/run", 12, 2);
    // A re-run of the finished run changes nothing it recorded.
    const auto again = train(path);
    ASSERT_EQ(again.exit_code, 0) << again.output;
    expect_complete_records(d + "/run", 12, 2);
  }
}

// A corrupt newest shard and a truncated one before it: every reader falls back to the newest
// good checkpoint with a warning naming the bad ones; a resume trains on from it; cleanup keeps
// the bad ones (reported, not counted) and never deletes the good one in their favour.
TEST_F(Faults, CorruptAndTruncatedShardsFallBackToTheNewestGoodCheckpoint) {
  const std::string d = holo::testing::temp_dir();
  const std::string path = recipe(d, "");
  const std::string ckpts = d + "/run/checkpoints";
  ASSERT_EQ(train(path, "--set checkpoint.keep=3").exit_code, 0);
  std::vector<int64_t> steps;
  for (const auto& e : ckpt::Manager::list(ckpts)) steps.push_back(e.step);
  ASSERT_EQ(steps, (std::vector<int64_t>{8, 10, 12}));
  const std::string shard = "/shard-00000-of-00001.holo";
  flip_byte(ckpt::Manager::step_dir(ckpts, 12) + shard, 4000);
  fs::resize_file(ckpt::Manager::step_dir(ckpts, 10) + shard, 3000);

  const auto inspect = run_command(holo_binary() + " ckpt inspect " + d + "/run");
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_THAT(inspect.output, HasSubstr("checkpoint " + ckpt::Manager::step_dir(ckpts, 8)));
  EXPECT_THAT(inspect.output, HasSubstr("skipping " + ckpt::Manager::step_dir(ckpts, 12)));
  EXPECT_THAT(inspect.output, HasSubstr("skipping " + ckpt::Manager::step_dir(ckpts, 10)));
  const auto exported = run_command(holo_binary() + " ckpt export " + d + "/run --out " + d + "/w.pt");
  EXPECT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_THAT(exported.output, HasSubstr("(step 8)"));
  const auto eval = run_command("HOLO_NUM_THREADS=1 " + holo_binary() + " eval " + path + " --checkpoint " + d +
                                "/run --out " + d + "/eval");
  EXPECT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(d + "/eval/eval-val.json")).at("step").get<int64_t>(), 8);

  // Resumed with a longer schedule: from step 8, on to 18. The new saves at 10 and 12 replace
  // the bad ones; until then cleanup reports 12 as corrupt and keeps it, and 8 stays while it
  // is one of the two newest good ones.
  const auto resumed = train(path, "--set train.epochs=3 --set checkpoint.keep=2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("resumed from " + ckpt::Manager::step_dir(ckpts, 8)));
  EXPECT_THAT(resumed.output, HasSubstr(ckpt::Manager::step_dir(ckpts, 12) + " (step 12) is corrupt"));
  EXPECT_THAT(resumed.output, HasSubstr("replacing the one saved before at that step"));
  steps.clear();
  for (const auto& e : ckpt::Manager::list(ckpts)) steps.push_back(e.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{16, 18}));
  for (int64_t s : steps) EXPECT_EQ(ckpt::Manager::verify(ckpt::Manager::step_dir(ckpts, s)), "");
  expect_complete_records(d + "/run", 18, 3);
}

/// A tmpfs of `bytes` mounted at `dir` for the life of the object.
class SmallDisk {
 public:
  SmallDisk(const std::string& dir, int64_t bytes) : dir_(dir) {
    fs::create_directories(dir);
    const std::string opts = "size=" + std::to_string(bytes);
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0;
    error_ = mounted_ ? "" : std::strerror(errno);
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

// The checkpoints folder on a disk with room for one checkpoint and a half: the second save
// fails, the run exits 1 naming the checkpoint and the free space, its partial folder is gone,
// and the first checkpoint loads.
TEST_F(Faults, AFullDiskStopsTheRunAndKeepsThePreviousCheckpoint) {
  const std::string d = holo::testing::temp_dir();
  const std::string path = recipe(d, "");
  // The size of one checkpoint of this recipe.
  ASSERT_EQ(train(path, "--set train.max_steps=2 --set run.dir=" + d + "/probe").exit_code, 0);
  int64_t bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(ckpt::Manager::step_dir(d + "/probe/checkpoints", 2))) {
    if (e.is_regular_file()) bytes += static_cast<int64_t>(e.file_size());
  }
  ASSERT_GT(bytes, 0);
  const std::string ckpts = d + "/run/checkpoints";
  SmallDisk disk(ckpts, bytes * 3 / 2 + 4096);
  ASSERT_TRUE(disk.mounted()) << "cannot mount a tmpfs at " << ckpts << ": " << disk.error()
                              << " (the fault tests need root)";
  const auto r = train(path);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(ckpt::Manager::step_dir(ckpts, 4) + "' (step 4) was not saved"));
  EXPECT_THAT(r.output, HasSubstr("MiB free on the filesystem of '" + ckpts + "'"));
  EXPECT_TRUE(hidden_entries(ckpts).empty()) << ::testing::PrintToString(hidden_entries(ckpts));
  const auto loaded = ckpt::Manager::load_latest(ckpts, 0, 1);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->step, 2);
}

// Another run's checkpoints in the run directory: a new run (resume = never) is refused with
// exit 2, naming them, before anything is trained; checkpoint.existing = overwrite deletes them
// and trains; the new checkpoints carry the new run's id.
TEST_F(Faults, AnotherRunsCheckpointsAreRefusedUnlessOverwritten) {
  const std::string d = holo::testing::temp_dir();
  const std::string path = recipe(d, "");
  const std::string ckpts = d + "/run/checkpoints";
  ASSERT_EQ(train(path, "--set train.max_steps=4").exit_code, 0);
  const std::string first_id = ckpt::Manager::list(ckpts).back().run_id;
  ASSERT_FALSE(first_id.empty());

  const auto refused = train(path, "--set checkpoint.resume=never");
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("belong to another run"));
  EXPECT_THAT(refused.output, HasSubstr(ckpt::Manager::step_dir(ckpts, 4) + " (step 4, run " + first_id + ")"));
  EXPECT_THAT(refused.output, HasSubstr("checkpoint.existing = \"overwrite\""));
  EXPECT_THAT(refused.output, Not(HasSubstr("checkpoint: saved")));
  EXPECT_EQ(ckpt::Manager::list(ckpts).back().run_id, first_id);

  // A checkpoint of another run copied into the directory of a run that resumes: refused too.
  const std::string other = d + "/other";
  ASSERT_EQ(train(recipe(other, ""), "--set train.max_steps=6").exit_code, 0);
  fs::copy(ckpt::Manager::step_dir(other + "/run/checkpoints", 6), ckpt::Manager::step_dir(ckpts, 6),
           fs::copy_options::recursive);
  const auto mixed = train(path, "--set train.max_steps=8");
  EXPECT_EQ(mixed.exit_code, 2) << mixed.output;
  EXPECT_THAT(mixed.output, HasSubstr(ckpt::Manager::step_dir(ckpts, 4)));

  const auto overwritten = train(path, "--set checkpoint.resume=never --set checkpoint.existing=overwrite");
  ASSERT_EQ(overwritten.exit_code, 0) << overwritten.output;
  EXPECT_THAT(overwritten.output, HasSubstr("of another run (checkpoint.existing = overwrite)"));
  const auto entries = ckpt::Manager::list(ckpts);
  ASSERT_FALSE(entries.empty());
  for (const auto& e : entries) EXPECT_NE(e.run_id, first_id) << e.path;
  expect_complete_records(d + "/run", 12, 2);
}

// Checkpoints exist and none can be read: a resume exits 1 naming each and why, without
// training; resume = never with checkpoint.existing = overwrite starts afresh.
TEST_F(Faults, NoReadableCheckpointStopsTheResume) {
  const std::string d = holo::testing::temp_dir();
  const std::string path = recipe(d, "");
  const std::string ckpts = d + "/run/checkpoints";
  ASSERT_EQ(train(path, "--set checkpoint.keep=2").exit_code, 0);
  const auto entries = ckpt::Manager::list(ckpts);
  ASSERT_EQ(entries.size(), 2u);
  for (const auto& e : entries) flip_byte(e.path + "/shard-00000-of-00001.holo", 3000);
  const auto r = train(path, "--set train.epochs=3");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no checkpoint under '" + ckpts + "' can be loaded"));
  for (const auto& e : entries) EXPECT_THAT(r.output, HasSubstr(e.path + ": checkpoint"));
  EXPECT_THAT(r.output, Not(HasSubstr("checkpoint: saved")));
  const auto fresh = train(path, "--set checkpoint.resume=never --set checkpoint.existing=overwrite");
  ASSERT_EQ(fresh.exit_code, 0) << fresh.output;
  EXPECT_THAT(fresh.output, Not(HasSubstr("resumed from")));
  expect_complete_records(d + "/run", 12, 2);
}

}  // namespace
}  // namespace holo
