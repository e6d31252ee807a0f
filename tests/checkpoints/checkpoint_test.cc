#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "tests/test_util.h"

namespace holo::ckpt {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

NamedTensors sample_state(int64_t seed, int64_t big = 1000) {
  torch::manual_seed(seed);
  return {{"model.conv.weight", torch::randn({8, 3, 3, 3})},
          {"model.fc.weight", torch::randn({big, 4})},
          {"model.bn.num_batches_tracked", torch::tensor(int64_t{7})},
          {"model.mask", torch::ones({5}, torch::kBool)},
          {"optim.fc.weight.momentum", torch::randn({big, 4}).to(torch::kFloat64)},
          {"model.half", torch::randn({3}).to(torch::kBFloat16)},
          {"model.empty", torch::empty({0, 3})}};
}

Snapshot snapshot(int64_t step, int64_t seed, int rank = 0) {
  Snapshot s;
  s.step = step;
  s.epoch = step / 10;
  s.replicated = sample_state(seed);
  s.per_rank = {{"rng.cpu", torch::full({4}, static_cast<int64_t>(rank))}};
  s.meta = {{"loader", {{"cursor", step * 4}}}};
  s.recipe_toml = "[run]\nname = \"t\"\n";
  s.dataset_hash = "abc";
  return s;
}

void expect_same(const NamedTensors& want, const std::map<std::string, torch::Tensor>& got) {
  ASSERT_EQ(want.size(), got.size());
  for (const auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_EQ(got.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(got.at(name), t)) << name;
  }
}

TEST(Shard, RoundTripEveryDtype) {
  const std::string d = holo::testing::temp_dir();
  const auto state = sample_state(1);
  const ShardInfo info = write_shard(d + "/s.holo", state);
  EXPECT_EQ(info.bytes, fs::file_size(d + "/s.holo"));
  EXPECT_EQ(info.checksum, file_checksum(d + "/s.holo"));
  const auto back = read_shard(d + "/s.holo", info.checksum);
  std::map<std::string, torch::Tensor> m(back.begin(), back.end());
  expect_same(state, m);
}

TEST(Shard, CorruptionAndTruncationDetected) {
  const std::string d = holo::testing::temp_dir();
  const ShardInfo info = write_shard(d + "/s.holo", sample_state(1));
  {
    std::fstream f(d + "/s.holo", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(info.bytes) - 10);
    f.put('\x55');
  }
  EXPECT_THAT([&] { read_shard(d + "/s.holo", info.checksum); },
              ::testing::ThrowsMessage<IoError>(HasSubstr("is corrupted: checksum")));
  fs::resize_file(d + "/s.holo", info.bytes / 2);
  EXPECT_THAT([&] { read_shard(d + "/s.holo"); },
              ::testing::ThrowsMessage<IoError>(HasSubstr("truncated")));
  std::ofstream(d + "/x.holo") << "not a shard";
  EXPECT_THAT([&] { read_shard(d + "/x.holo"); },
              ::testing::ThrowsMessage<IoError>(HasSubstr("bad magic")));
}

TEST(Shard, AssignmentBalancesBytesAndIsDeterministic) {
  const auto state = sample_state(1, 5000);
  const auto a = assign_shards(state, 2);
  EXPECT_EQ(a, assign_shards(state, 2));
  // The two big tensors land on different ranks.
  EXPECT_NE(a.at("model.fc.weight"), a.at("optim.fc.weight.momentum"));
  for (const auto& [n, r] : assign_shards(state, 1)) EXPECT_EQ(r, 0) << n;
}

TEST(Manager, SaveLoadSingleRank) {
  const std::string d = holo::testing::temp_dir();
  {
    Manager m(d, ManagerOptions{});
    m.save(snapshot(10, 1), /*wait=*/false);
    m.wait();
  }
  const auto loaded = Manager::load_latest(d, 0, 1);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->step, 10);
  EXPECT_EQ(loaded->epoch, 1);
  EXPECT_EQ(loaded->world_size, 1);
  EXPECT_EQ(loaded->meta["loader"]["cursor"], 40);
  EXPECT_EQ(loaded->dataset_hash, "abc");
  expect_same(sample_state(1), loaded->replicated);
  ASSERT_TRUE(loaded->per_rank.count("rng.cpu"));
  EXPECT_FALSE(fs::exists(d + "/.partial-step-00000010"));
}

TEST(Manager, SnapshotHoldsTheStateAtSaveAcrossReusedStagingBuffers) {
  const std::string d = holo::testing::temp_dir();
  torch::Tensor w = torch::ones({256, 1024});
  torch::Tensor strided = torch::arange(12, torch::kFloat).view({3, 4}).t();  // not contiguous
  Manager m(d, ManagerOptions{});
  auto snap = [&](int64_t step) {
    Snapshot s;
    s.step = step;
    s.replicated = {{"model.w", w}, {"model.t", strided}};
    return s;
  };
  m.save(snap(10), /*wait=*/false);
  w.fill_(2);  // training goes on while the first save is written
  m.save(snap(20), /*wait=*/false);  // reuses the staging buffers once the first write is done
  w.fill_(3);
  m.wait();
  EXPECT_TRUE(torch::equal(Manager::load(Manager::step_dir(d, 10), 0, 1).replicated.at("model.w"),
                           torch::ones({256, 1024})));
  const auto second = Manager::load(Manager::step_dir(d, 20), 0, 1);
  EXPECT_TRUE(torch::equal(second.replicated.at("model.w"), torch::full({256, 1024}, 2.0f)));
  EXPECT_TRUE(torch::equal(second.replicated.at("model.t"), strided));
  // A tensor that changes shape gets a new buffer.
  w = torch::zeros({7});
  m.save(snap(30), /*wait=*/true);
  EXPECT_TRUE(torch::equal(Manager::load(Manager::step_dir(d, 30), 0, 1).replicated.at("model.w"), torch::zeros({7})));
  Snapshot twice = snap(40);
  twice.replicated.emplace_back("model.w", w);
  EXPECT_THAT([&] { m.save(std::move(twice), true); },
              ::testing::ThrowsMessage<Error>(HasSubstr("'model.w' appears twice")));
}

TEST(Manager, KeepLastKAndBest) {
  const std::string d = holo::testing::temp_dir();
  ManagerOptions o;
  o.keep = 2;
  o.background = false;
  Manager m(d, o);
  const double scores[] = {0.1, 0.9, 0.2, 0.3, 0.4};
  for (int i = 0; i < 5; ++i) {
    Snapshot s = snapshot(10 * (i + 1), i);
    s.score = scores[i];
    m.save(std::move(s), true);
  }
  std::vector<int64_t> steps;
  for (const auto& e : Manager::list(d)) steps.push_back(e.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{20, 40, 50}));  // newest two plus the best (0.9)
}

TEST(Manager, CorruptedNewestFallsBackToPrevious) {
  const std::string d = holo::testing::temp_dir();
  ManagerOptions o;
  o.background = false;
  Manager m(d, o);
  m.save(snapshot(10, 1), true);
  m.save(snapshot(20, 2), true);
  const std::string shard = Manager::step_dir(d, 20) + "/shard-00000-of-00001.holo";
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x01');
  }
  EXPECT_THAT([&] { Manager::load(Manager::step_dir(d, 20), 0, 1); },
              ::testing::ThrowsMessage<IoError>(HasSubstr("shard-00000-of-00001.holo")));
  const auto loaded = Manager::load_latest(d, 0, 1);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->step, 10);
  expect_same(sample_state(1), loaded->replicated);
}

TEST(Manager, ShardedAcrossRanksLoadsOnAnyWorldSize) {
  const std::string d = holo::testing::temp_dir();
  // Made before the threads start: both would draw from LibTorch's one global generator.
  std::vector<Snapshot> snaps = {snapshot(30, 5, 0), snapshot(30, 5, 1)};
  auto rank_main = [&](int rank) {
    ManagerOptions o;
    o.rank = rank;
    o.world_size = 2;
    o.attempt_id = "a1";
    Manager m(d, o);
    m.save(std::move(snaps[rank]), /*wait=*/true);
  };
  std::thread t1(rank_main, 1);
  rank_main(0);
  t1.join();
  const auto entries = Manager::list(d);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].manifest["shards"].size(), 2u);
  for (const auto& shard : entries[0].manifest["shards"]) {
    EXPECT_EQ(shard.value("host", ""), holo::process_identity().host) << "each shard records its writer's host";
  }
  for (int world : {1, 2, 3}) {
    const auto loaded = Manager::load(entries[0].path, 0, world);
    expect_same(sample_state(5), loaded.replicated);
    EXPECT_EQ(loaded.per_rank.count("rng.cpu"), world == 2 ? 1u : 0u) << world;
  }
  const auto r1 = Manager::load(entries[0].path, 1, 2);
  EXPECT_TRUE(torch::equal(r1.per_rank.at("rng.cpu"), torch::full({4}, int64_t{1})));
}

TEST(Manager, LeftoverOfEarlierAttemptIsNotCommitted) {
  const std::string d = holo::testing::temp_dir();
  // A partial folder with a rank-1 marker from another attempt: rank 0 must not commit with it.
  fs::create_directories(d + "/.partial-step-00000040");
  std::ofstream(d + "/.partial-step-00000040/done-1.json")
      << R"({"rank":1,"file":"x","bytes":1,"checksum":"0","attempt":"old"})";
  ManagerOptions o;
  o.world_size = 2;
  o.attempt_id = "new";
  o.background = false;
  o.commit_timeout_s = 0.5;
  Manager m(d, o);
  EXPECT_THAT([&] { m.save(snapshot(40, 1), true); },
              ::testing::ThrowsMessage<IoError>(HasSubstr("rank 1 did not finish")));
  EXPECT_TRUE(Manager::list(d).empty());
}

TEST(Manager, KillDuringSaveKeepsPreviousCheckpoint) {
  const std::string d = holo::testing::temp_dir();
  ManagerOptions o;
  o.background = false;
  {
    Manager m(d, o);
    m.save(snapshot(10, 1), true);
  }
  torch::set_num_threads(1);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A large save, killed by the parent while it writes.
    Snapshot s = snapshot(20, 2);
    s.replicated.emplace_back("model.huge", torch::zeros({64, 1024, 1024}));
    Manager m(d, o);
    m.save(std::move(s), true);
    _exit(0);
  }
  const std::string partial = d + "/.partial-step-00000020";
  for (int i = 0; i < 20000 && !fs::exists(partial + "/shard-00000-of-00001.holo"); ++i) {
    usleep(1000);
  }
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the save finished before it could be interrupted";
  const auto loaded = Manager::load_latest(d, 0, 1);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->step, 10);
  expect_same(sample_state(1), loaded->replicated);
  // The next save cleans the leftover.
  Manager m(d, o);
  m.save(snapshot(30, 3), true);
  EXPECT_FALSE(fs::exists(partial));
  EXPECT_EQ(Manager::load_latest(d, 0, 1)->step, 30);
}

}  // namespace
// ---- nothing lost (docs/checkpoint-format.md) ---------------------------------------------

/// Flips one byte of a checkpoint's first shard.
void corrupt(const std::string& dir) {
  std::fstream f(dir + "/shard-00000-of-00001.holo", std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(200);
  const char c = static_cast<char>(f.peek());
  f.put(static_cast<char>(c ^ 0x5a));
}

std::vector<int64_t> steps_in(const std::string& d) {
  std::vector<int64_t> steps;
  for (const auto& e : Manager::list(d)) steps.push_back(e.step);
  return steps;
}

TEST(Manager, EveryManifestRecordsTheRunId) {
  const std::string d = holo::testing::temp_dir();
  ManagerOptions o;
  o.background = false;
  o.run_id = "run-a";
  Manager m(d, o);
  m.save(snapshot(10, 1), true);
  const auto entries = Manager::list(d);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].run_id, "run-a");
  EXPECT_EQ(Manager::load(entries[0].path, 0, 1).run_id, "run-a");
}

TEST(Manager, ASaveOverAnExistingStepReplacesIt) {
  const std::string d = holo::testing::temp_dir();
  ManagerOptions o;
  o.background = false;
  o.run_id = "r";
  {
    Manager m(d, o);
    m.save(snapshot(10, 1), true);
  }
  Manager m(d, o);
  m.save(snapshot(10, 2), true);  // the same step again, other contents
  ASSERT_EQ(steps_in(d), (std::vector<int64_t>{10}));
  expect_same(sample_state(2), Manager::load(Manager::step_dir(d, 10), 0, 1).replicated);
  // Nothing left beside it.
  for (const auto& e : fs::directory_iterator(d)) EXPECT_EQ(e.path().filename(), "step-00000010");
}

TEST(Manager, ReplacedStepIsSeenByEveryRankOnlyOnceCommitted) {
  const std::string d = holo::testing::temp_dir();
  std::vector<Snapshot> first = {snapshot(30, 5, 0), snapshot(30, 5, 1)};
  std::vector<Snapshot> second = {snapshot(30, 6, 0), snapshot(30, 6, 1)};
  for (auto* snaps : {&first, &second}) {
    const std::string attempt = snaps == &first ? "a1" : "a2";
    auto rank_main = [&](int rank) {
      ManagerOptions o;
      o.rank = rank;
      o.world_size = 2;
      o.attempt_id = attempt;
      o.run_id = "r";
      Manager m(d, o);
      m.save(std::move((*snaps)[rank]), /*wait=*/true);
      // Back from save(): the checkpoint is this attempt's on every rank.
      EXPECT_EQ(Manager::list(d).at(0).manifest.value("attempt", ""), attempt) << "rank " << rank;
    };
    std::thread t1(rank_main, 1);
    rank_main(0);
    t1.join();
  }
  expect_same(sample_state(6), Manager::load(Manager::step_dir(d, 30), 0, 1).replicated);
}

TEST(Manager, CleanupCountsOnlyGoodCheckpointsOfThisRun) {
  const std::string d = holo::testing::temp_dir();
  ManagerOptions o;
  o.background = false;
  o.keep = 3;
  o.run_id = "mine";
  {
    Manager m(d, o);
    for (int64_t step : {10, 15, 20, 25}) m.save(snapshot(step, step), true);
  }
  EXPECT_EQ(steps_in(d), (std::vector<int64_t>{15, 20, 25}));
  corrupt(Manager::step_dir(d, 20));
  corrupt(Manager::step_dir(d, 25));
  {
    ManagerOptions other = o;
    other.run_id = "theirs";
    Manager m(d, other);
    m.save(snapshot(5, 5), true);  // another run's, older than all of ours
  }
  Manager m(d, o);
  m.save(snapshot(30, 30), true);
  // Good and newer than 15: only 30. 20 and 25 are corrupt (kept, not counted), 5 is foreign.
  EXPECT_EQ(steps_in(d), (std::vector<int64_t>{5, 15, 20, 25, 30}));
  m.save(snapshot(35, 35), true);
  EXPECT_EQ(steps_in(d), (std::vector<int64_t>{5, 15, 20, 25, 30, 35}));
  m.save(snapshot(40, 40), true);
  // Three good newer ones (30, 35, 40): 15 goes; the corrupt and the foreign ones stay.
  EXPECT_EQ(steps_in(d), (std::vector<int64_t>{5, 20, 25, 30, 35, 40}));
  EXPECT_EQ(Manager::verify(Manager::step_dir(d, 30)), "");
  // The message names the shard, the rank and the host that wrote it (one machine to look at).
  EXPECT_THAT(Manager::verify(Manager::step_dir(d, 20)),
              ::testing::AllOf(HasSubstr("checksum"),
                               HasSubstr("(written by rank 0 on " + holo::process_identity().host + ")")));
}

TEST(Manager, AFailedSaveRemovesItsPartialFolderAndSaysWhy) {
  const std::string d = holo::testing::temp_dir();
  ManagerOptions o;
  o.background = false;
  Manager m(d, o);
  m.save(snapshot(10, 1), true);
  // The shard's path is taken by a folder: writing it fails.
  fs::create_directories(d + "/.partial-step-00000020/shard-00000-of-00001.holo");
  EXPECT_THAT([&] { m.save(snapshot(20, 2), true); },
              ::testing::ThrowsMessage<IoError>(::testing::AllOf(
                  HasSubstr("step-00000020"), HasSubstr("was not saved"), HasSubstr("MiB free"),
                  HasSubstr(".partial-step-00000020' was removed"))));
  EXPECT_FALSE(fs::exists(d + "/.partial-step-00000020"));
  EXPECT_EQ(steps_in(d), (std::vector<int64_t>{10}));
  m.save(snapshot(20, 2), true);  // and the next save works
  EXPECT_EQ(steps_in(d), (std::vector<int64_t>{10, 20}));
}

TEST(Manager, LeftoversAndOrphansAreRemovedAtTheNextStart) {
  const std::string d = holo::testing::temp_dir();
  ManagerOptions o;
  o.background = false;
  {
    Manager m(d, o);
    m.save(snapshot(10, 1), true);
  }
  fs::create_directories(d + "/step-00000020");  // a cleanup killed after the manifest went
  std::ofstream(d + "/step-00000020/shard-00000-of-00001.holo") << "x";
  fs::create_directories(d + "/.partial-step-00000030");
  fs::create_directories(d + "/.deleting-step-00000005");
  const Survey s = Manager::survey(d, "");
  EXPECT_EQ(s.orphans, (std::vector<std::string>{d + "/step-00000020"}));
  EXPECT_EQ(s.leftovers.size(), 2u);
  Manager::remove_leftovers(s);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(d)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"step-00000010"}));
}

TEST(Manager, NoReadableCheckpointIsAnErrorNamingEachOne) {
  const std::string d = holo::testing::temp_dir();
  ManagerOptions o;
  o.background = false;
  {
    Manager m(d, o);
    m.save(snapshot(10, 1), true);
    m.save(snapshot(20, 2), true);
  }
  corrupt(Manager::step_dir(d, 10));
  corrupt(Manager::step_dir(d, 20));
  fs::create_directories(d + "/step-00000030");
  std::ofstream(d + "/step-00000030/manifest.json") << "{ not json";
  EXPECT_THAT([&] { Manager::load_latest(d, 0, 1); },
              ::testing::ThrowsMessage<IoError>(::testing::AllOf(
                  HasSubstr("no checkpoint under"), HasSubstr("step-00000010"), HasSubstr("step-00000020"),
                  HasSubstr("step-00000030: unreadable manifest"))));
  EXPECT_FALSE(Manager::load_latest(d + "/none", 0, 1).has_value());
}

TEST(Manager, RunDirectoryFallsBackToTheNewestGoodCheckpoint) {
  const std::string run = holo::testing::temp_dir();
  const std::string d = run + "/checkpoints";
  ManagerOptions o;
  o.background = false;
  {
    Manager m(d, o);
    m.save(snapshot(10, 1), true);
    m.save(snapshot(20, 2), true);
  }
  corrupt(Manager::step_dir(d, 20));
  for (const std::string& path : {run, d}) {
    const auto loaded = Manager::load_newest_valid(path, 0, 1);
    EXPECT_EQ(loaded.step, 10) << path;
  }
  // A checkpoint named explicitly is loaded as it is, or not at all.
  EXPECT_THAT([&] { Manager::load_newest_valid(Manager::step_dir(d, 20), 0, 1); },
              ::testing::ThrowsMessage<IoError>(HasSubstr("step-00000020")));
}

}  // namespace holo::ckpt
