// The trainer end to end through the `holo` binary on synthetic videos: losses, exact resume,
// preemption, multi-label training, fine-tuning, evaluation, export.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <tuple>

#include "checkpoints/checkpoint.h"
#include "pipeline/feature_store.h"
#include "tests/test_util.h"
#include "tests/train/python_util.h"

namespace holo {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using holo::testing::holo_binary;
using holo::testing::run_command;

std::string data_root() {
  const char* t = std::getenv("HOLO_TEST_TMP");
  return std::string(t ? t : "/tmp/holo-test") + "/trainer-data";
}

class Trainer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One motion and one HVU-style dataset for the whole suite (a second each).
    fs::remove_all(data_root());
    for (const auto& [kind, extra] : std::vector<std::pair<std::string, std::string>>{
             {"motion", "--classes 4 --videos 32"},
             {"motion2", "--classes 2 --videos 32"},
             {"hvu", "--videos 32"},
             {"unlabeled", "--videos 12"}}) {
      const std::string synth_kind = kind == "motion2" ? "motion" : kind;
      const auto r = run_command(holo_binary() + " data synth --kind " + synth_kind + " --out " + data_root() +
                                 "/" + kind + " --frames 16 --size 48x32 --seed 5 " + extra);
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }

  /// A small, fast, deterministic recipe over the motion data; `extra` is appended TOML.
  std::string recipe(const std::string& dir, const std::string& extra = "") {
    const std::string m = data_root() + "/motion";
    const std::string path = dir + "/recipe.toml";
    fs::create_directories(dir);
    std::ofstream(path) << "[run]\nseed = 3\ndir = \"" << dir << "/run\"\n"
                        << "[data]\ndataset = \"kinetics\"\nroot = \"" << m << "\"\ntrain = \"" << m
                        << "/train.csv\"\n"
                        << "[sampling]\nnum_frames = 4\nstride = 2\ntest_clips = 2\ntest_crops = 1\n"
                        << "[transform]\ncrop_size = 32\ntrain_scale_min = 32\ntrain_scale_max = 36\ntest_scale = 32\n"
                        << "[loader]\nbatch_size = 4\nworkers = 1\n"
                        << "[model]\nname = \"resnet3d\"\ndepth = 10\nwidth = 0.125\ndropout = 0.2\n"
                        << "[optim]\nlr = 0.05\n"
                        << "[schedule]\nkind = \"step\"\nstep_epochs = 2\ngamma = 0.5\n"
                        << "[train]\nepochs = 3\nlog_every = 1\n"
                        << "[checkpoint]\nevery_steps = 4\nbackground = true\n"
                        << extra;
    return path;
  }

  static holo::testing::CommandResult train(const std::string& recipe, const std::string& sets = "",
                                            const std::string& env = "") {
    return run_command(env + " HOLO_NUM_THREADS=1 " + holo_binary() + " train " + recipe + " " + sets);
  }

  static std::vector<nlohmann::json> metric_lines(const std::string& run, const std::string& split) {
    std::vector<nlohmann::json> out;
    std::ifstream in(run + "/metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (j["split"] == split) {
        j.erase("time");
        j.erase("clips_per_s");
        out.push_back(j);
      }
    }
    return out;
  }

  static std::map<std::string, torch::Tensor> final_state(const std::string& run) {
    const auto entries = ckpt::Manager::list(run + "/checkpoints");
    EXPECT_FALSE(entries.empty()) << run;
    return ckpt::Manager::load(entries.back().path, 0, 1).replicated;
  }
};

TEST_F(Trainer, LossFallsAndRunDirectoryIsComplete) {
  const std::string d = holo::testing::temp_dir();
  // Two motion classes (left or right) on one batch of the training set, no flips (a flip
  // turns left into right): the network fits it within a few dozen steps on a CPU.
  const std::string m = data_root() + "/motion2";
  const auto r = train(recipe(d), "--set data.root=" + m + " --set data.train=" + m + "/train.csv "
                       "--set data.fraction=0.17 --set train.epochs=30 --set schedule.kind=constant "
                       "--set optim.lr=0.01 --set model.width=0.25 --set sampling.num_frames=8 "
                       "--set model.dropout=0 --set transform.flip=false --set train.log_every=3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = metric_lines(d + "/run", "train");
  ASSERT_GE(lines.size(), 10u);
  auto mean_loss = [&](size_t from, size_t n) {
    double s = 0;
    for (size_t i = from; i < from + n; ++i) s += lines[i]["loss"].get<double>();
    return s / n;
  };
  const double first = mean_loss(0, 3), last = mean_loss(lines.size() - 3, 3);
  EXPECT_LT(last, first * 0.5) << "first " << first << " last " << last;
  for (const auto& f : {"recipe.toml", "train.log", "metrics.jsonl", "summary.json"}) {
    EXPECT_TRUE(fs::exists(d + "/run/" + f)) << f;
  }
  const auto summary = nlohmann::json::parse(std::ifstream(d + "/run/summary.json"));
  EXPECT_EQ(summary["step"], lines.back()["step"]);
  // keep = 3 by default: the periodic ones beyond the newest three are gone.
  EXPECT_LE(ckpt::Manager::list(d + "/run/checkpoints").size(), 3u);
}

TEST_F(Trainer, ExactResumeIsBitwise) {
  const std::string a = holo::testing::temp_dir() + "/a";
  const std::string b = holo::testing::temp_dir() + "/b";
  fs::create_directories(a);
  fs::create_directories(b);
  // A: 12 steps straight. B: 6 steps, a new process resumes for 6 more.
  ASSERT_EQ(train(recipe(a), "--set train.max_steps=12").exit_code, 0);
  const auto r1 = train(recipe(b), "--set train.max_steps=6");
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  const auto r2 = train(recipe(b), "--set train.max_steps=12");
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  EXPECT_THAT(r2.output, HasSubstr("resumed from"));
  EXPECT_EQ(metric_lines(a + "/run", "train"), metric_lines(b + "/run", "train"));
  const auto sa = final_state(a + "/run");
  const auto sb = final_state(b + "/run");
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [name, t] : sa) {
    ASSERT_TRUE(sb.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, sb.at(name))) << name << " differs after resume";
  }
}

TEST_F(Trainer, SignalSavesCheckpointExitsThreeAndResumes) {
  const std::string d = holo::testing::temp_dir();
  const std::string path = recipe(d, "");
  const std::string log = d + "/samples";
  const std::string cmd = "HOLO_NUM_THREADS=1 HOLO_SAMPLE_LOG=" + log + " exec " + holo_binary() +
                          " train " + path + " --set train.epochs=40 --set checkpoint.every_steps=0 > " +
                          d + "/out.txt 2>&1";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait (bounded by the run itself) until some steps are logged, then preempt.
  for (int i = 0; i < 6000; ++i) {
    if (metric_lines(d + "/run", "train").size() >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGUSR1);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3) << holo::testing::run_command("cat " + d + "/out.txt").output;
  const auto entries = ckpt::Manager::list(d + "/run/checkpoints");
  ASSERT_EQ(entries.size(), 1u);
  const int64_t saved = entries[0].step;
  EXPECT_GE(saved, 3);

  const auto r = train(path, "--set train.epochs=3", "HOLO_SAMPLE_LOG=" + log);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resumed from"));
  // Every sample of each epoch once: no sample lost or repeated across the stop.
  std::map<int64_t, std::multiset<int64_t>> per_epoch;
  std::map<int64_t, int64_t> steps;
  std::ifstream in(log + ".rank0");
  int64_t e, s, rec;
  while (in >> e >> s >> rec) {
    per_epoch[e].insert(rec);
    steps[s]++;
  }
  ASSERT_EQ(per_epoch.size(), 3u);
  for (const auto& [epoch, recs] : per_epoch) {
    for (int64_t x : recs) EXPECT_EQ(recs.count(x), 1u) << "epoch " << epoch << " record " << x;
    EXPECT_EQ(recs.size(), per_epoch.begin()->second.size()) << epoch;
  }
  for (const auto& [step, n] : steps) EXPECT_EQ(n, 4) << "step " << step << " trained twice or partly";
}

/// Samples per epoch from a HOLO_SAMPLE_LOG prefix, over all ranks' files.
std::map<int64_t, std::multiset<int64_t>> logged_samples(const std::string& prefix) {
  std::map<int64_t, std::multiset<int64_t>> per_epoch;
  for (int rank = 0; rank < 4; ++rank) {
    std::ifstream in(prefix + ".rank" + std::to_string(rank));
    int64_t e, s, rec;
    while (in >> e >> s >> rec) per_epoch[e].insert(rec);
  }
  return per_epoch;
}

TEST_F(Trainer, ResumeOnAnotherNumberOfRanksSeesEverySampleOnce) {
  // 24 training videos, 4 per rank per step. Two ranks take 16 samples of epoch 0 and stop;
  // one rank resumes, takes the other 8 and trains epoch 1; and the other way round. From 2 to
  // 3 ranks, the 8 left are one uneven step (3, 3, 2); from 3 ranks (one step, 12 samples) to
  // 2, a whole step of 8 and an uneven one (2, 2).
  for (const auto& [first, second, steps] :
       std::vector<std::tuple<int, int, int>>{{2, 1, 2}, {1, 2, 2}, {2, 3, 2}, {3, 2, 1}}) {
    const std::string d = holo::testing::temp_dir() + "/" + std::to_string(first) + "to" + std::to_string(second);
    fs::create_directories(d);
    const std::string path = recipe(d);
    const std::string env = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HOLO_NUM_THREADS=1 HOLO_SAMPLE_LOG=" + d + "/samples ";
    const auto a = run_command(env + holo_binary() + " launch --np " + std::to_string(first) + " " + path +
                               " --set train.epochs=2 --set train.max_steps=" + std::to_string(steps));
    ASSERT_EQ(a.exit_code, 0) << a.output;
    const auto b = run_command(env + holo_binary() + " launch --np " + std::to_string(second) + " " + path +
                               " --set train.epochs=2");
    ASSERT_EQ(b.exit_code, 0) << b.output;
    EXPECT_THAT(b.output, HasSubstr("saved by " + std::to_string(first) + " rank(s)"));
    const auto samples = logged_samples(d + "/samples");
    ASSERT_TRUE(samples.count(0));
    const auto& epoch0 = samples.at(0);
    for (int64_t x : epoch0) EXPECT_EQ(epoch0.count(x), 1u) << first << "->" << second << " record " << x;
    EXPECT_EQ(std::set<int64_t>(epoch0.begin(), epoch0.end()).size(), 24u) << first << "->" << second;
    ASSERT_TRUE(samples.count(1));
    EXPECT_EQ(samples.at(1).size(), 24u);  // epoch 1 whole on the new number of ranks
    EXPECT_EQ(samples.count(2), 0u);       // and no further: train.epochs = 2
    const auto done = nlohmann::json::parse(std::ifstream(d + "/run/summary.json"));
    EXPECT_EQ(done["epoch"].get<int64_t>(), 2) << first << "->" << second;
    // The second run's peak host memory: the largest rank's, and the sum over its ranks.
    EXPECT_THAT(b.output, HasSubstr("peak host memory: "));
    EXPECT_THAT(b.output, HasSubstr(second == 1 ? " on the largest of 1 rank, "
                                                : " on the largest of " + std::to_string(second) + " ranks, "));
    const auto summary = nlohmann::json::parse(std::ifstream(d + "/run/summary.json"));
    const double largest = summary["peak_host_memory_mib"]["largest_rank"].get<double>();
    const double all = summary["peak_host_memory_mib"]["all_ranks"].get<double>();
    EXPECT_GT(largest, 50) << "a process with LibTorch and a model holds more";
    if (second == 1) {
      EXPECT_EQ(all, largest);
    } else {
      EXPECT_GT(all, largest);
      EXPECT_LE(all, second * largest + 1);
    }
  }
}

// Each rank meets the bad videos of its own share only: data.max_bad_fraction applies to their
// sum over the ranks, and both ranks stop at the same step with the message (no rank left
// waiting in a collective). 6 of 24 training videos are zero bytes, above a limit of 0.2 (4.8)
// in all, while each rank alone meets fewer than 5.
TEST_F(Trainer, BadVideosOfAllRanksCountTowardsTheLimit) {
  const std::string d = holo::testing::temp_dir();
  const fs::path data = fs::path(d) / "data";
  fs::copy(data_root() + "/motion", data, fs::copy_options::recursive);
  const auto classes = [&] {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(data / "videos")) {
      if (e.is_directory()) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }();
  ASSERT_FALSE(classes.empty());
  int zeroed = 0;
  for (const auto& e : fs::directory_iterator(classes.front())) {
    std::ofstream(e.path(), std::ios::trunc);
    ++zeroed;
  }
  ASSERT_EQ(zeroed, 8);  // 6 training and 2 validation videos of one class
  const std::string path = recipe(d);
  const std::string env =
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HOLO_NUM_THREADS=1 ";
  const std::string sets = " --set data.root=" + data.string() +
                           " --set data.train=" + (data / "train.csv").string() +
                           " --set data.max_bad_fraction=0.2 --set train.epochs=1";
  const auto two = run_command(env + holo_binary() + " launch --np 2 " + path + sets);
  EXPECT_NE(two.exit_code, 0) << two.output;
  const std::string message =
      "6 of 24 videos (25%) are missing (0) or undecodable (6), above data.max_bad_fraction = 0.2";
  size_t found = 0;
  for (size_t at = two.output.find(message); at != std::string::npos;
       at = two.output.find(message, at + 1))
    ++found;
  EXPECT_GE(found, 2u) << "both ranks stop with the count of all ranks:\n" << two.output;
  EXPECT_THAT(two.output, ::testing::Not(HasSubstr("did not reach"))) << two.output;
  // One rank meets them all itself, and stops at the fifth.
  const auto one = train(path, sets);
  EXPECT_NE(one.exit_code, 0);
  EXPECT_THAT(one.output,
              HasSubstr("5 of 24 videos (20.8333%) are missing (0) or undecodable (5), above "
                        "data.max_bad_fraction = 0.2"))
      << one.output;
}

TEST_F(Trainer, MultiTaskHvuTrainsAndEvaluates) {
  const std::string d = holo::testing::temp_dir();
  const std::string h = data_root() + "/hvu";
  const std::string extra = "[task]\nkind = \"multilabel\"\n";
  const std::string path = recipe(d, extra);
  const std::string sets = "--set data.dataset=hvu --set data.root=" + h + " --set data.train=" + h +
                           "/HVU_Train_V1.0.csv --set data.val=" + h + "/HVU_Val_V1.0.csv --set data.categories=" + h +
                           "/HVU_Tags_Categories_V1.0.csv --set model.heads=multitask --set train.epochs=2";
  const auto r = train(path, sets);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = metric_lines(d + "/run", "train");
  ASSERT_FALSE(lines.empty());
  for (const char* cat : {"action", "attribute", "concept", "event", "object", "scene"}) {
    EXPECT_TRUE(lines.back().contains(std::string("loss_") + cat)) << cat;
  }
  const auto val = metric_lines(d + "/run", "val");
  ASSERT_FALSE(val.empty());
  EXPECT_GT(val.back()["mAP"].get<double>(), 0.0);
  EXPECT_LE(val.back()["mAP"].get<double>(), 1.0);
  const auto ev = run_command(holo_binary() + " eval " + path + " " + sets + " --checkpoint " + d + "/run");
  ASSERT_EQ(ev.exit_code, 0) << ev.output;
  EXPECT_THAT(ev.output, HasSubstr("mAP_scene"));
  EXPECT_TRUE(fs::exists(d + "/run/eval-val-per-class.csv"));
}

TEST_F(Trainer, FinetuneFreezesStagesAndReplacesTheHead) {
  const std::string src = holo::testing::temp_dir() + "/src";
  const std::string dst = holo::testing::temp_dir() + "/dst";
  fs::create_directories(src);
  fs::create_directories(dst);
  ASSERT_EQ(train(recipe(src), "--set train.max_steps=4").exit_code, 0);
  const auto r = train(recipe(dst, "[task]\nkind = \"finetune\"\nfreeze = [\"stem\", \"res2\"]\n"),
                       "--set model.init=" + src + "/run --set train.max_steps=4 --set data.root=" +
                           data_root() + "/motion2 --set data.train=" + data_root() + "/motion2/train.csv");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("initialised"));
  const auto a = final_state(src + "/run");
  const auto b = final_state(dst + "/run");
  int frozen_checked = 0, changed = 0;
  for (const auto& [name, t] : b) {
    if (name.rfind("model.heads.", 0) == 0 && t.dim() == 2) EXPECT_EQ(t.size(0), 2) << name;
    if (!a.count(name) || name.find("running_") != std::string::npos || name.find("num_batches") != std::string::npos) continue;
    if (name.rfind("model.stem.", 0) == 0 || name.rfind("model.res2.", 0) == 0) {
      EXPECT_TRUE(torch::equal(t, a.at(name))) << name << " should be frozen";
      ++frozen_checked;
    } else if (name.rfind("model.res4.", 0) == 0 && !torch::equal(t, a.at(name))) {
      ++changed;
    }
  }
  EXPECT_GT(frozen_checked, 0);
  EXPECT_GT(changed, 0);
}

TEST_F(Trainer, EvalMultiViewAndExportReadableByPython) {
  const std::string d = holo::testing::temp_dir();
  const std::string m = data_root() + "/motion";
  const std::string path = recipe(d);
  ASSERT_EQ(train(path, "--set train.max_steps=4 --set data.val=" + m + "/val.csv --set train.val_every=0").exit_code, 0);
  const auto ev = run_command(holo_binary() + " eval " + path + " --set data.val=" + m +
                              "/val.csv --set sampling.test_clips=2 --set sampling.test_crops=3 --checkpoint " + d + "/run");
  ASSERT_EQ(ev.exit_code, 0) << ev.output;
  EXPECT_THAT(ev.output, HasSubstr("2 clips x 3 crops"));
  const auto j = nlohmann::json::parse(std::ifstream(d + "/run/eval-val.json"));
  int64_t val_videos = -1;  // the val CSV's rows
  {
    std::ifstream in(m + "/val.csv");
    std::string line;
    while (std::getline(in, line)) ++val_videos;
  }
  EXPECT_EQ(j["metrics"]["videos"].get<double>(), static_cast<double>(val_videos));
  const double top1 = j["metrics"]["top1"];
  EXPECT_GE(top1, 0.0);
  EXPECT_LE(top1, 1.0);
  std::ifstream csv(d + "/run/eval-val-per-class.csv");
  int rows = 0;
  std::string line;
  while (std::getline(csv, line)) ++rows;
  EXPECT_EQ(rows, 1 + 4);

  // Features of the validation videos into the store, then clustered.
  const auto fx = run_command(holo_binary() + " extract " + path + " --set data.val=" + m +
                              "/val.csv --checkpoint " + d + "/run --split val --out " + d + "/features");
  ASSERT_EQ(fx.exit_code, 0) << fx.output;
  EXPECT_THAT(fx.output, HasSubstr("wrote features of " + std::to_string(val_videos) + " videos"));
  const auto cl = run_command(holo_binary() + " cluster " + d + "/features/index.h5 --k 4 --labels " + d +
                              "/features/labels.csv");
  ASSERT_EQ(cl.exit_code, 0) << cl.output;

  ASSERT_TRUE(holo::testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string h5 = holo::testing::run_python(d,
      "import h5py\nf = h5py.File('" + d + "/features/index.h5', 'r')\n"
      "n = sum(1 for k in f['clips'] if f['clips'][k].shape[0] > 0)\nopen(OUT, 'w').write(str(n))\n");
  EXPECT_EQ(h5, std::to_string(val_videos));
  const auto ex = run_command(holo_binary() + " ckpt export " + d + "/run --out " + d + "/model.pt");
  ASSERT_EQ(ex.exit_code, 0) << ex.output;
  const std::string out = holo::testing::run_python(d,
      "import torch\nsd = torch.load('" + d + "/model.pt')\n"
      "with open(OUT, 'w') as f:\n"
      "    for k in sorted(sd):\n"
      "        f.write('%s %r\\n' % (k, float(sd[k].double().sum())))\n");
  const auto state = final_state(d + "/run");
  int n = 0;
  std::istringstream in(out);
  std::string name;
  double sum;
  while (in >> name >> sum) {
    ASSERT_TRUE(state.count("model." + name)) << name;
    EXPECT_DOUBLE_EQ(sum, state.at("model." + name).to(torch::kFloat64).sum().item<double>()) << name;
    ++n;
  }
  int64_t model_tensors = 0;
  for (const auto& [k, v] : state) model_tensors += k.rfind("model.", 0) == 0;
  EXPECT_EQ(n, model_tensors);
}

TEST_F(Trainer, EvalOnTwoRanksScoresEveryVideoOnceAsOnOne) {
  // Three views per video on two ranks: the views of a video land on both ranks, and their
  // scores must be merged into one video, as on one rank.
  const std::string d = holo::testing::temp_dir();
  const std::string m = data_root() + "/motion";
  const std::string path = recipe(d);
  ASSERT_EQ(train(path, "--set train.max_steps=4 --set data.val=" + m + "/val.csv --set train.val_every=0").exit_code, 0);
  const std::string sets = " --set data.val=" + m + "/val.csv --set sampling.test_clips=3 --set sampling.test_crops=1";
  auto read = [](const std::string& f) {
    std::ifstream in(f);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const auto one = run_command(holo_binary() + " eval " + path + sets + " --checkpoint " + d + "/run");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const auto j1 = nlohmann::json::parse(std::ifstream(d + "/run/eval-val.json"));
  const std::string csv1 = read(d + "/run/eval-val-per-class.csv");
  const auto two = run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HOLO_NUM_THREADS=1 " +
                               holo_binary() + " launch --np 2 --command eval " + path + sets + " -- --checkpoint " + d + "/run");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  const auto j2 = nlohmann::json::parse(std::ifstream(d + "/run/eval-val.json"));
  int64_t val_videos = -1;  // the val CSV's rows
  {
    std::ifstream in(m + "/val.csv");
    std::string line;
    while (std::getline(in, line)) ++val_videos;
  }
  EXPECT_EQ(j1["metrics"]["videos"].get<double>(), static_cast<double>(val_videos));
  EXPECT_EQ(j2["metrics"]["videos"].get<double>(), static_cast<double>(val_videos));
  for (const auto& [k, v] : j1["metrics"].items()) {
    EXPECT_NEAR(j2["metrics"][k].get<double>(), v.get<double>(), 1e-6) << k;
  }
  EXPECT_EQ(read(d + "/run/eval-val-per-class.csv"), csv1);
}

// holo eval --save-predictions: per-video top 5 in a CSV and the score matrix in an .npy that
// numpy reads, in the same row order; an unlabeled test split gives predictions and exit 0.
TEST_F(Trainer, EvalSavesPredictionsAlsoForAnUnlabeledSplit) {
  ASSERT_TRUE(holo::testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string d = holo::testing::temp_dir();
  const std::string m = data_root() + "/motion";
  const std::string path = recipe(d);
  ASSERT_EQ(train(path, "--set train.max_steps=4 --set train.val_every=0").exit_code, 0);
  const std::string sets = " --set data.val=" + m + "/val.csv --set data.test=" + m + "/test.csv --set sampling.test_clips=2";
  const auto val = run_command(holo_binary() + " eval " + path + sets + " --split val --save-predictions --checkpoint " + d + "/run");
  ASSERT_EQ(val.exit_code, 0) << val.output;
  EXPECT_THAT(val.output, HasSubstr("top1"));
  EXPECT_THAT(val.output, HasSubstr("predictions: " + d + "/run/predictions-val.csv"));
  const auto test = run_command(holo_binary() + " eval " + path + sets + " --split test --save-predictions --checkpoint " + d + "/run");
  ASSERT_EQ(test.exit_code, 0) << test.output;
  EXPECT_THAT(test.output, HasSubstr("no labels"));
  EXPECT_FALSE(fs::exists(d + "/run/eval-test.json"));  // no metrics without labels
  // numpy reads the scores; each CSV row's pred_1 is its row's argmax, with that score.
  const std::string both = holo::testing::run_python(d,
      "import numpy as np, csv\n"
      "for split in ['val', 'test']:\n"
      "    s = np.load('" + d + "/run/predictions-' + split + '.npy')\n"
      "    rows = list(csv.DictReader(open('" + d + "/run/predictions-' + split + '.csv')))\n"
      "    ok = len(rows) == s.shape[0] and s.shape[1] == 4 and np.allclose(s.sum(1), 1, atol=1e-4)\n"
      "    ok = ok and all(abs(float(r['score_1']) - s[i].max()) < 1e-5 for i, r in enumerate(rows))\n"
      "    ok = ok and all(float(r['score_1']) >= float(r['score_2']) for r in rows)\n"
      "    labels = sum(1 for r in rows if r['label'])\n"
      "    open(OUT, 'a').write('%s %d %d %d\\n' % (split, ok, len(rows), labels))\n");
  int64_t videos = -1;
  {
    std::ifstream in(m + "/val.csv");
    std::string line;
    while (std::getline(in, line)) ++videos;
  }
  const std::string n = std::to_string(videos);
  EXPECT_EQ(both, "val 1 " + n + " " + n + "\ntest 1 " + n + " 0\n");
  // Validation loss: the cross entropy of each video's averaged scores, as numpy computes it
  // from the saved matrix (the classes are sorted names, classes.txt's order).
  const auto j = nlohmann::json::parse(std::ifstream(d + "/run/eval-val.json"));
  ASSERT_TRUE(j["metrics"].contains("loss")) << j.dump();
  fs::remove(d + "/reference.out");
  const std::string loss = holo::testing::run_python(d,
      "import numpy as np, csv\n"
      "names = open('" + m + "/classes.txt').read().split()\n"
      "s = np.load('" + d + "/run/predictions-val.npy').astype(np.float64)\n"
      "rows = list(csv.DictReader(open('" + d + "/run/predictions-val.csv')))\n"
      "y = [names.index(r['label']) for r in rows]\n"
      "open(OUT, 'w').write(repr(float(-np.log(np.maximum(s[np.arange(len(y)), y], 1e-12)).mean())))\n");
  EXPECT_NEAR(std::stod(loss), j["metrics"]["loss"].get<double>(), 1e-5);
  EXPECT_GT(j["metrics"]["loss"].get<double>(), 0.0);
  // Without --save-predictions an unlabeled split has nothing to give: a usage error, not "label -1".
  const auto bare = run_command(holo_binary() + " eval " + path + sets + " --split test --checkpoint " + d + "/run");
  EXPECT_EQ(bare.exit_code, 2) << bare.output;
  EXPECT_THAT(bare.output, HasSubstr("has no labels"));
}

// An SGS network's cost varies per clip: training, validation and evaluation record its GFLOPs
// and active bins (mean, min, max), on one rank and on two alike.
TEST_F(Trainer, SgsCostIsRecordedInTrainingValidationAndEval) {
  const std::string d = holo::testing::temp_dir();
  const std::string m = data_root() + "/motion";
  const std::string path = recipe(d, "");
  const std::string sets = " --set model.name=r3d18_atfr --set model.depth=18 --set sampling.num_frames=8 --set optim.lr=0.01 --set data.val=" +
                           m + "/val.csv --set train.val_every=1 --set sampling.test_clips=2";
  const auto r = train(path, "--set train.max_steps=6" + sets);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto check = [](const nlohmann::json& j, const std::string& where) {
    for (const std::string name : {"gflops", "active_bins"}) {
      ASSERT_TRUE(j.contains(name + "_mean")) << where << " " << j.dump();
      const double lo = j[name + "_min"], mean = j[name + "_mean"], hi = j[name + "_max"];
      EXPECT_LE(lo, mean) << where;
      EXPECT_LE(mean, hi) << where;
      EXPECT_GT(lo, 0) << where;
    }
    EXPECT_LE(j["active_bins_max"].get<double>(), 8.0) << where;  // B = T = 8 at most
  };
  const auto train_lines = metric_lines(d + "/run", "train");
  ASSERT_FALSE(train_lines.empty());
  for (const auto& j : train_lines) check(j, "train step " + std::to_string(j["step"].get<int64_t>()));
  const auto val_lines = metric_lines(d + "/run", "val");
  ASSERT_FALSE(val_lines.empty());
  for (const auto& j : val_lines) check(j, "val");
  for (const std::string& launcher : {std::string(""), std::string("launch --np 2 --command ")}) {
    const auto ev = run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HOLO_NUM_THREADS=1 " +
                                holo_binary() + " " + (launcher.empty() ? "" : launcher) + "eval " + path + sets +
                                (launcher.empty() ? " " : " -- ") + "--checkpoint " + d + "/run");
    ASSERT_EQ(ev.exit_code, 0) << ev.output;
    EXPECT_THAT(ev.output, HasSubstr("gflops per view (mean, min, max)"));
    const auto j = nlohmann::json::parse(std::ifstream(d + "/run/eval-val.json"));
    ASSERT_TRUE(j.contains("cost")) << j.dump();
    for (const std::string name : {"gflops", "active_bins"}) {
      const auto& c = j["cost"][name];
      EXPECT_LE(c["min"].get<double>(), c["mean"].get<double>());
      EXPECT_LE(c["mean"].get<double>(), c["max"].get<double>());
      // Every view of every validation video: 2 clips each.
      EXPECT_EQ(c["clips"].get<double>(), 2 * j["metrics"]["videos"].get<double>()) << launcher;
    }
  }
}

TEST_F(Trainer, TransferFromATrainedTeacherThenFinetune) {
  // The teacher: a 2D ResNet-18 trained by a recipe on frames of the labelled videos, exported
  // with torchvision names, as a user would export torchvision's ImageNet weights.
  const std::string d = holo::testing::temp_dir();
  fs::create_directories(d + "/teacher");
  const std::string teacher = recipe(d + "/teacher", "");
  ASSERT_EQ(train(teacher, "--set model.name=resnet18_2d --set model.depth=18 --set model.width=0.25 --set optim.lr=0.01 "
                           "--set train.max_steps=4").exit_code, 0);
  const auto ex = run_command(holo_binary() + " ckpt export " + d + "/teacher/run --torchvision --out " + d + "/teacher.pt");
  ASSERT_EQ(ex.exit_code, 0) << ex.output;
  // The student: a 3D ResNet on unlabeled videos, pairs against the frozen teacher.
  fs::create_directories(d + "/student");
  const std::string student = recipe(d + "/student",
      "[task]\nkind = \"transfer\"\nteacher = \"" + d + "/teacher.pt\"\nteacher_arch = \"resnet18\"\n"
      "teacher_width = 0.25\nteacher_frames = 2\n");
  const std::string u = data_root() + "/unlabeled/videos";
  const std::string folder = "--set data.dataset=folder --set data.root=" + u + " --set data.train= --set optim.lr=0.01 ";
  // Online (the default): the teacher runs on the student's own clip; nothing is cached.
  const auto r = train(student, folder + "--set train.epochs=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("the teacher sees 2 frames of each student clip, after the same crop"));
  EXPECT_FALSE(fs::exists(d + "/student/run/teacher_features"));
  const auto lines = metric_lines(d + "/student/run", "train");
  ASSERT_FALSE(lines.empty());
  for (const auto& l : lines) {
    ASSERT_TRUE(l["loss"].is_number()) << l.dump();
    EXPECT_GT(l["loss"].get<double>(), 0.0);
    EXPECT_LT(l["loss"].get<double>(), 5.0);
  }
  const auto state = final_state(d + "/student/run");
  int64_t head = 0, frozen_teacher = 0;
  for (const auto& [k, v] : state) {
    head += k.rfind("task.", 0) == 0;
    frozen_teacher += k.find("teacher") != std::string::npos && k.find("teacher_fc.") == std::string::npos;
  }
  EXPECT_EQ(head, 12);  // the transfer head: teacher_fc, student_fc and 4 more linear layers, weight and bias
  EXPECT_EQ(state.at("task.teacher_fc.weight").sizes(), (std::vector<int64_t>{1024, 128}));  // 512 x 0.25 -> 1024
  EXPECT_EQ(frozen_teacher, 0);  // the teacher is not part of the student's checkpoint
  // From the store: every video's frame features once, one dataset per video, read per batch.
  fs::create_directories(d + "/stored");
  const std::string stored = recipe(d + "/stored",
      "[task]\nkind = \"transfer\"\nteacher = \"" + d + "/teacher.pt\"\nteacher_arch = \"resnet18\"\n"
      "teacher_width = 0.25\nteacher_frames = 2\nteacher_source = \"store\"\n");
  const auto s1 = train(stored, folder + "--set train.epochs=2");
  ASSERT_EQ(s1.exit_code, 0) << s1.output;
  ASSERT_TRUE(fs::exists(d + "/stored/run/teacher_features/index.h5"));
  {
    pipeline::FeatureReader reader(d + "/stored/run/teacher_features");
    const auto ids = reader.ids();
    EXPECT_EQ(ids.size(), 12u);  // the unlabeled videos
    for (const auto& id : ids) EXPECT_EQ(reader.read(id).sizes(), (std::vector<int64_t>{16, 128})) << id;
  }
  for (const auto& l : metric_lines(d + "/stored/run", "train")) ASSERT_TRUE(l["loss"].is_number()) << l.dump();
  // A second run reuses the cached teacher features.
  const auto again = train(stored, folder + "--set train.epochs=3");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("teacher features: reusing"));
  // The student initialises a fine-tuning run.
  fs::create_directories(d + "/ft");
  const auto ft = train(recipe(d + "/ft", "[task]\nkind = \"finetune\"\n"),
                        "--set model.init=" + d + "/student/run --set train.max_steps=2");
  ASSERT_EQ(ft.exit_code, 0) << ft.output;
  EXPECT_THAT(ft.output, HasSubstr("initialised"));
}

// On a terminal (a pseudo-terminal made by script(1)) the progress bar and the log lines never
// share a line: each log line takes the bar off its line first (the resumed run's rate is
// Progress.RateCountsOnlyTheItemsThisProcessDid).
TEST_F(Trainer, TerminalRunNeverGluesALogLineOntoTheBar) {
  ASSERT_EQ(run_command("script --version").exit_code, 0) << "script(1) from bsdutils is missing";
  const std::string d = holo::testing::temp_dir();
  const std::string path = recipe(d, "");
  auto tty = [&](const std::string& sets) {
    const std::string cmd = "HOLO_NUM_THREADS=1 HOLO_PROGRESS=auto " + holo_binary() + " train " + path + " " + sets;
    return run_command("script -qec '" + cmd + "' /dev/null");
  };
  const auto first = tty("--set train.max_steps=12 --set checkpoint.every_steps=2");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto resumed = tty("--set train.max_steps=24 --set checkpoint.every_steps=2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  for (const auto& out : {first.output, resumed.output}) {
    EXPECT_THAT(out, HasSubstr("steps/s"));  // the bar was drawn
    EXPECT_THAT(out, HasSubstr("checkpoint: saved"));  // and log lines came while it was up
    // What a terminal shows on one line: the text between two carriage returns or newlines.
    std::string seg;
    for (char c : out + "\n") {
      if (c == '\r' || c == '\n') {
        // A log line's timestamp (its level is coloured on a terminal) on the bar's line.
        static const std::regex stamp("[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}");
        EXPECT_FALSE(seg.find("steps/s") != std::string::npos && std::regex_search(seg, stamp))
            << "a log line glued onto the bar: " << seg;
        seg.clear();
      } else {
        seg += c;
      }
    }
  }
}

// A run whose loss stops being finite stops with an error on the step it happened, instead of
// training on and saving NaN weights over the last good checkpoint.
TEST_F(Trainer, DivergedRunStopsAndKeepsTheLastGoodCheckpoint) {
  // Checkpoints every 4 steps, and every step: at lr 100 a batch-norm variance overflows before
  // the loss does, and that checkpoint is refused.
  for (const std::string every : {"4", "1"}) {
    const std::string d = holo::testing::temp_dir() + "/every" + every;
    const std::string path = recipe(d, "");
    const auto r = train(path, "--set optim.lr=100 --set schedule.kind=constant --set model.dropout=0 "
                               "--set checkpoint.every_steps=" + every);
    ASSERT_NE(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("training diverged: "));
    EXPECT_THAT(r.output, ::testing::ContainsRegex("is not finite at step [0-9]+ \\(optim.lr = 100\\)"));
    if (every == "1") EXPECT_THAT(r.output, ::testing::ContainsRegex("running_var is not finite|the loss is not finite"));
    const auto entries = ckpt::Manager::list(d + "/run/checkpoints");
    ASSERT_FALSE(entries.empty()) << r.output;
    for (const auto& e : entries) {
      for (const auto& [name, t] : ckpt::Manager::load(e.path, 0, 1).replicated) {
        if (t.is_floating_point()) EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << e.path << " " << name;
      }
    }
    // Where the loss went first, the last train line's loss is not a number.
    const auto lines = metric_lines(d + "/run", "train");
    ASSERT_FALSE(lines.empty());
    if (r.output.find("the loss is not finite") != std::string::npos) {
      EXPECT_TRUE(lines.back()["loss"].is_null()) << lines.back().dump();
    }
  }
}

TEST_F(Trainer, BadRecipeStopsBeforeAnyWork) {
  const std::string d = holo::testing::temp_dir();
  const auto r = train(recipe(d, "[eval]\nper_klass = true\n"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("eval.per_klass"));
  EXPECT_FALSE(fs::exists(d + "/run"));
  const auto f = train(recipe(d), "--set train.precision=fp16", "CUDA_VISIBLE_DEVICES=");
  EXPECT_EQ(f.exit_code, 2) << f.output;
  EXPECT_THAT(f.output, HasSubstr("fp16 needs a CUDA device"));
  EXPECT_FALSE(fs::exists(d + "/run/metrics.jsonl"));
}

// Validation after each of 3 epochs: its lines say epochs 1, 2 and 3 once each, at the
// epochs' last steps (the run's final validation is the third, not a fourth). A run stopped
// inside an epoch by train.max_steps says how far into it its final validation is.
TEST_F(Trainer, ValidationLinesCountEachEpochOnce) {
  const std::string d = holo::testing::temp_dir();
  const std::string m = data_root() + "/motion";
  const std::string val = " --set data.val=" + m + "/val.csv --set train.val_every=1";
  const auto r = train(recipe(d + "/whole"), val);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<nlohmann::json> epochs, steps;
  for (const auto& j : metric_lines(d + "/whole/run", "val")) {
    EXPECT_TRUE(j["epoch"].is_number_integer()) << j.dump();
    epochs.push_back(j["epoch"]);
    steps.push_back(j["step"]);
  }
  EXPECT_EQ(epochs, (std::vector<nlohmann::json>{1, 2, 3}));
  EXPECT_EQ(steps, (std::vector<nlohmann::json>{6, 12, 18}));  // 24 videos, 4 a step
  const auto summary = nlohmann::json::parse(std::ifstream(d + "/whole/run/summary.json"));
  EXPECT_EQ(summary["epoch"], 3);

  // 15 steps: two epochs and half of the third.
  const auto part = train(recipe(d + "/part"), val + " --set train.max_steps=15");
  ASSERT_EQ(part.exit_code, 0) << part.output;
  epochs.clear();
  for (const auto& j : metric_lines(d + "/part/run", "val")) epochs.push_back(j["epoch"]);
  EXPECT_EQ(epochs, (std::vector<nlohmann::json>{1, 2, 2.5}));
}

// ---- On a GPU. Each test ends in _CUDA and skips without a CUDA device; ctest runs them again
// as `train_gpu` (label gpu). A CPU run on the GPU machine hides the GPU with CUDA_VISIBLE_DEVICES.

const char* const kCpu = "CUDA_VISIBLE_DEVICES=";
// GPU runs in full float32 (no TF32 in cuDNN and cuBLAS), to compare with the CPU.
const char* const kGpu = "NVIDIA_TF32_OVERRIDE=0";

/// Per-step training losses of a run.
std::vector<double> losses(const std::vector<nlohmann::json>& lines) {
  std::vector<double> out;
  for (const auto& j : lines) out.push_back(j["loss"].get<double>());
  return out;
}

/// Every loss of `got` finite and within `rel` (relative) of `want`'s at the same step, the first
/// `tight_steps` within `tight`. Later steps get a looser bound: these tiny networks on batches of
/// four clips amplify a last-bit difference (another device's order of summation) into losses
/// that differ by whole percents within a few steps, as measured on an H100.
void expect_close_losses(const std::vector<double>& got, const std::vector<double>& want, size_t tight_steps,
                         double tight, double rel, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = (i < tight_steps ? tight : rel) * std::max(1e-3, std::abs(want[i]));
    EXPECT_TRUE(std::isfinite(got[i])) << what << " step " << i + 1;
    EXPECT_NEAR(got[i], want[i], tol) << what << " step " << i + 1;
  }
}

#define HOLO_NEED_CUDA()                                                    \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here"

// Fixed weights and data: no dropout (its masks come from a device's own generator), frames
// decoded on the CPU (NVDEC's colour conversion differs by a step of rounding), deterministic
// kernels in full float32. The same recipe on the GPU and on the CPU starts from the same weights
// and sees the same clips, so the first step's losses agree up to the devices' order of summation.
#define HOLO_STEADY \
  " --set model.dropout=0 --set run.deterministic=true --set optim.lr=0.005 --set decode.device=cpu"
const char* const kSame = HOLO_STEADY " --set train.max_steps=8 --set checkpoint.every_steps=4";

TEST_F(Trainer, CudaRunFollowsTheCpuRun_CUDA) {
  HOLO_NEED_CUDA();
  const std::string d = holo::testing::temp_dir();
  const auto g = train(recipe(d + "/gpu"), kSame, kGpu);
  ASSERT_EQ(g.exit_code, 0) << g.output;
  EXPECT_THAT(g.output, HasSubstr("device cuda:0"));
  const auto c = train(recipe(d + "/cpu"), kSame, kCpu);
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_THAT(c.output, HasSubstr("device cpu"));
  const auto lg = losses(metric_lines(d + "/gpu/run", "train"));
  const auto lc = losses(metric_lines(d + "/cpu/run", "train"));
  ASSERT_EQ(lg.size(), 8u);
  expect_close_losses(lg, lc, 1, 1e-4, 0.25, "GPU vs CPU");
  // What the GPU run saved: CPU tensors with the CPU run's names, shapes and dtypes.
  const auto sg = final_state(d + "/gpu/run");
  const auto sc = final_state(d + "/cpu/run");
  ASSERT_EQ(sg.size(), sc.size());
  for (const auto& [name, t] : sg) {
    ASSERT_TRUE(sc.count(name)) << name;
    EXPECT_TRUE(t.device().is_cpu()) << name;
    EXPECT_EQ(t.sizes(), sc.at(name).sizes()) << name;
    EXPECT_EQ(t.scalar_type(), sc.at(name).scalar_type()) << name;
  }
}

TEST_F(Trainer, MixedPrecisionTracksFp32_CUDA) {
  HOLO_NEED_CUDA();
  const std::string d = holo::testing::temp_dir();
  std::map<std::string, std::vector<double>> l;
  for (const std::string p : {"fp32", "bf16", "fp16"}) {
    const auto r = train(recipe(d + "/" + p), std::string(kSame) + " --set train.precision=" + p, kGpu);
    ASSERT_EQ(r.exit_code, 0) << p << "\n" << r.output;
    l[p] = losses(metric_lines(d + "/" + p + "/run", "train"));
    ASSERT_EQ(l[p].size(), 8u) << p;
  }
  expect_close_losses(l["fp16"], l["fp32"], 1, 5e-3, 0.5, "fp16 vs fp32");
  expect_close_losses(l["bf16"], l["fp32"], 1, 2e-2, 0.5, "bf16 vs fp32");
  // fp16 kept a dynamic loss scale in its checkpoint: a power of two, at most the initial 2^16.
  const auto entries = ckpt::Manager::list(d + "/fp16/run/checkpoints");
  ASSERT_FALSE(entries.empty());
  const auto loaded = ckpt::Manager::load(entries.back().path, 0, 1);
  ASSERT_TRUE(loaded.meta.contains("loss_scale"));
  const double scale = loaded.meta["loss_scale"].get<double>();
  EXPECT_GE(scale, 1.0);
  EXPECT_LE(scale, 65536.0);
  EXPECT_EQ(std::exp2(std::round(std::log2(scale))), scale);
  // The fp16 weights stay float32 (master weights); the step updates them.
  for (const auto& [name, t] : loaded.replicated) {
    if (name.rfind("model.", 0) == 0 && t.is_floating_point()) {
      EXPECT_EQ(t.scalar_type(), torch::kFloat) << name;
    }
  }
}

// A checkpoint saved on the GPU resumes on the CPU, and one saved on the CPU resumes on the GPU;
// each continuation follows the uninterrupted run of the device it started on.
TEST_F(Trainer, CheckpointsMoveBetweenGpuAndCpu_CUDA) {
  HOLO_NEED_CUDA();
  const std::string d = holo::testing::temp_dir();
  const std::string twelve = HOLO_STEADY " --set checkpoint.every_steps=6 --set train.max_steps=12";
  const std::string six = HOLO_STEADY " --set checkpoint.every_steps=6 --set train.max_steps=6";
  for (const auto& [name, env] : std::vector<std::pair<std::string, std::string>>{{"gpu", kGpu}, {"cpu", kCpu}}) {
    const auto whole = train(recipe(d + "/" + name + "-whole"), twelve, env);
    ASSERT_EQ(whole.exit_code, 0) << whole.output;
    const auto first = train(recipe(d + "/" + name + "-moved"), six, env);
    ASSERT_EQ(first.exit_code, 0) << first.output;
  }
  const auto to_cpu = train(recipe(d + "/gpu-moved"), twelve, kCpu);
  ASSERT_EQ(to_cpu.exit_code, 0) << to_cpu.output;
  EXPECT_THAT(to_cpu.output, HasSubstr("at step 6"));
  EXPECT_THAT(to_cpu.output, HasSubstr("device cpu"));
  const auto to_gpu = train(recipe(d + "/cpu-moved"), twelve, kGpu);
  ASSERT_EQ(to_gpu.exit_code, 0) << to_gpu.output;
  EXPECT_THAT(to_gpu.output, HasSubstr("at step 6"));
  EXPECT_THAT(to_gpu.output, HasSubstr("device cuda:0"));
  for (const std::string name : {"gpu", "cpu"}) {
    const auto whole = losses(metric_lines(d + "/" + name + "-whole/run", "train"));
    const auto moved = losses(metric_lines(d + "/" + name + "-moved/run", "train"));
    ASSERT_EQ(whole.size(), 12u) << name;
    ASSERT_EQ(moved.size(), 12u) << name;
    // The first six steps ran on the same device as the whole run, with deterministic kernels.
    // The seventh, the first on the other device, runs on the same clips from the weights the
    // first half saved. From a CPU checkpoint those are the CPU run's own: equal up to the GPU's
    // order of summation (measured on an H100: under 1e-4). From a GPU checkpoint they are close
    // to the GPU run's, not equal: MaxPool3d's backward on CUDA adds with atomics (LibTorch has no
    // deterministic version of it), and six steps grow that to about 1e-3 (measured: 1.1e-3).
    const double seventh = name == "cpu" ? 1e-4 : 5e-3;
    expect_close_losses(std::vector<double>(moved.begin(), moved.begin() + 6),
                        std::vector<double>(whole.begin(), whole.begin() + 6), 3, 1e-5, 0.25, name + " first half");
    expect_close_losses(std::vector<double>(moved.begin() + 6, moved.end()),
                        std::vector<double>(whole.begin() + 6, whole.end()), 1, seventh, 0.25, name + " moved half");
  }
}

// One rank under `holo launch`: gradients go through the reducer and the NCCL communicator; with
// one rank the average is the gradient itself, so the run follows the plain GPU run.
TEST_F(Trainer, NcclRunUnderLaunchFollowsThePlainRun_CUDA) {
  HOLO_NEED_CUDA();
  const std::string d = holo::testing::temp_dir();
  const auto plain = train(recipe(d + "/plain"), kSame, kGpu);
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  const auto launched = run_command(std::string(kGpu) + " HOLO_NUM_THREADS=1 " + holo_binary() + " launch --np 1 " +
                                    recipe(d + "/nccl") + kSame + " --set dist.backend=nccl");
  ASSERT_EQ(launched.exit_code, 0) << launched.output;
  EXPECT_THAT(launched.output, HasSubstr("collectives nccl"));
  expect_close_losses(losses(metric_lines(d + "/nccl/run", "train")),
                      losses(metric_lines(d + "/plain/run", "train")), 3, 1e-5, 0.25, "NCCL vs plain");
}

}  // namespace
}  // namespace holo
