// The `holo` binary end to end: exit codes 0 / 1 / 2 and what it prints.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "tests/test_util.h"

namespace holo {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using holo::testing::holo_binary;
using holo::testing::run_command;

/// The report lines of `holo version` and `holo doctor` ("  NAME  found|missing  what was seen"),
/// by name; a missing part must be followed by its "to get it:" line.
std::map<std::string, std::string> parts_of(const std::string& output) {
  std::map<std::string, std::string> parts;
  static const std::regex part("^  (\\S+(?: \\S+)?) +(found|missing) +(.*)$");
  std::istringstream in(output);
  std::string line, missing;
  while (std::getline(in, line)) {
    if (!missing.empty()) {
      EXPECT_THAT(line, ::testing::MatchesRegex(" +to get it: .+")) << missing << " says nothing of how to get it";
      missing.clear();
      continue;
    }
    std::smatch m;
    if (!std::regex_match(line, m, part)) continue;
    parts[m[1]] = m[2].str() + " " + m[3].str();
    if (m[2] == "missing") missing = m[1];
  }
  EXPECT_TRUE(missing.empty()) << missing << " is the last line, with nothing of how to get it";
  return parts;
}

TEST(Cli, VersionSaysWhatWasFoundAndHowToGetWhatIsMissing) {
  const auto r = run_command(holo_binary() + " version");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("holo "), HasSubstr("libtorch ")));
  const auto parts = parts_of(r.output);
  for (const char* name : {"LibTorch", "CUDA", "GPUs", "NCCL", "FFmpeg", "NVDEC", "MPI", "HDF5"}) {
    EXPECT_EQ(parts.count(name), 1u) << name << " in\n" << r.output;
  }
  EXPECT_THAT(parts.at("LibTorch"), ::testing::MatchesRegex("found [0-9]+\\.[0-9]+.*, (CPU only|with CUDA.*) \\(/.*\\)"));
  EXPECT_THAT(parts.at("FFmpeg"), AllOf(HasSubstr("found "), HasSubstr("libavcodec "), HasSubstr("libswscale ")));
  EXPECT_THAT(parts.at("MPI"), ::testing::MatchesRegex("found .+ \\(MPI [0-9]\\.[0-9]+\\)"));
  EXPECT_THAT(parts.at("HDF5"), ::testing::MatchesRegex("found 1\\.[0-9]+\\.[0-9]+"));
  if (parts.at("LibTorch").find("CPU only") != std::string::npos) {
    EXPECT_THAT(parts.at("CUDA"), HasSubstr("missing this LibTorch"));
    EXPECT_THAT(r.output, HasSubstr("to get it: build Holo against a CUDA LibTorch"));
    EXPECT_THAT(parts.at("GPUs"), HasSubstr("missing "));
  }
}

// On a machine without a GPU (or with its GPUs hidden): no GPU, training on the CPU with MPI,
// decoding on the CPU with NVDEC's reason, and a verdict that it can train.
TEST(Cli, DoctorSaysWhatWouldRunWhereAndWhy) {
  const auto r = run_command("CUDA_VISIBLE_DEVICES= " + holo_binary() + " doctor");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto parts = parts_of(r.output);
  for (const char* name : {"NVIDIA driver", "GPUs", "NCCL", "NVDEC", "FFmpeg", "MPI", "SLURM"}) {
    EXPECT_EQ(parts.count(name), 1u) << name << " in\n" << r.output;
  }
  EXPECT_THAT(parts.at("GPUs"), HasSubstr("missing "));
  EXPECT_THAT(parts.at("NVDEC"), HasSubstr("missing "));
  const std::string mpirun = run_command("command -v mpirun").output;
  ASSERT_FALSE(mpirun.empty()) << "the tests need OpenMPI's mpirun";
  EXPECT_THAT(parts.at("MPI"), AllOf(HasSubstr("found " + mpirun.substr(0, mpirun.find('\n')) + ": "),
                                     HasSubstr("Open MPI")));
  EXPECT_THAT(r.output, HasSubstr("  training:    CPU with MPI all-reduce, because no GPU is visible"));
  EXPECT_THAT(r.output, HasSubstr("  decoding:    CPU FFmpeg, because NVDEC is not available: "));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("  launching:   holo launch --np N starts its workers with (mpirun|srun)"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("  submitting:  holo submit (sends batch jobs to SLURM|cannot be used here, because .+)"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("this machine can train: on the CPU \\([0-9]+ cores\\), with several workers"));

  // Without mpirun (nor anything else) on PATH: one worker, still able to train.
  const auto bare = run_command("PATH=/nonexistent CUDA_VISIBLE_DEVICES= " + holo_binary() + " doctor");
  ASSERT_EQ(bare.exit_code, 0) << bare.output;
  const auto bare_parts = parts_of(bare.output);
  EXPECT_THAT(bare_parts.at("MPI"), HasSubstr("missing mpirun is not on PATH"));
  EXPECT_THAT(bare_parts.at("SLURM"), HasSubstr("missing sinfo and sbatch not on PATH"));
  EXPECT_THAT(bare.output, HasSubstr("  training:    CPU, one worker only (no mpirun), because no GPU is visible"));
  EXPECT_THAT(bare.output, HasSubstr("  launching:   holo launch --np 1 only"));
  EXPECT_THAT(bare.output, HasSubstr("this machine can train: on the CPU"));
}

TEST(Cli, EverySubcommandHasHelp) {
  for (const char* sub : {"", "version", "doctor", "env", "recipe", "recipe check", "recipe show", "recipe doc"}) {
    const auto r = run_command(holo_binary() + " " + sub + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr("Usage")) << sub;
  }
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(run_command(holo_binary()).exit_code, 2);
  EXPECT_EQ(run_command(holo_binary() + " frobnicate").exit_code, 2);
  EXPECT_EQ(run_command(holo_binary() + " recipe check").exit_code, 2);  // missing RECIPE
  const auto r = run_command("HOLO_LOG_LEVEL=loud " + holo_binary() + " version");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("loud"));
}

TEST(Cli, RecipeCheckMisspelledKeyExitsTwoNamingKeyAndLine) {
  const std::string d = holo::testing::temp_dir();
  std::ofstream(d + "/bad.toml") << "[optim]\nlr = 0.1\nweight_dacay = 1e-4\n";
  const auto r = run_command(holo_binary() + " recipe check " + d + "/bad.toml");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("bad.toml:3:1"), HasSubstr("optim.weight_dacay"),
                              HasSubstr("did you mean 'optim.weight_decay'")));
}

TEST(Cli, RecipeCheckAndShowWithOverrides) {
  const std::string d = holo::testing::temp_dir();
  std::ofstream(d + "/ok.toml") << "[data]\ndataset = \"synth\"\n[optim]\nlr = 0.1\n";
  const auto ok = run_command(holo_binary() + " recipe check " + d + "/ok.toml --set optim.lr=0.05");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("1 override"));
  const auto show = run_command(holo_binary() + " recipe show " + d + "/ok.toml --set optim.lr=0.05");
  EXPECT_EQ(show.exit_code, 0) << show.output;
  EXPECT_THAT(show.output, AllOf(HasSubstr("[optim]\nname = \"sgd\"\nlr = 0.05"),
                                 HasSubstr("[slurm]")));
  const auto bad = run_command(holo_binary() + " recipe show " + d + "/ok.toml --set optim.lr=fast");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("--set optim.lr=fast"));
}

TEST(Cli, RuntimeFailureExitsOne) {
  const std::string d = holo::testing::temp_dir();
  std::ofstream(d + "/ok.toml") << "";
  const auto r = run_command(holo_binary() + " recipe show " + d + "/ok.toml --out /nonexistent/dir/r.toml");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("/nonexistent/dir/r.toml"));
}

TEST(Cli, EnvListsKnobs) {
  const auto r = run_command("HOLO_NUM_THREADS=5 " + holo_binary() + " env");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("HOLO_NUM_THREADS=5\n"), HasSubstr("HOLO_LOG_LEVEL=info  (default)")));
}

TEST(Cli, DocListsEveryKey) {
  const auto r = run_command(holo_binary() + " recipe doc");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("optim.lr (float, default 0.1, allowed 0 .. 100)"),
                              HasSubstr("[slurm]")));
}

/// `holo bench decode` / `holo bench loader` on tiny synthetic sets made in the test's folder.
std::string bench_env(const std::string& dir) { return "HOLO_CACHE_DIR=" + dir + "/cache "; }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return in.good() ? nlohmann::json::parse(in) : nlohmann::json::object();
}

TEST(Cli, BenchDecodeDevicesReportsCpuFramesAndNvdecReasonOrRatio) {
  const std::string d = holo::testing::temp_dir();
  const auto r = run_command(bench_env(d) + holo_binary() +
                             " bench decode --devices cpu,nvdec --threads 1 --synth-videos 1 --synth-size 64x48"
                             " --synth-frames 24 --clips 3 --frames 4 --stride 2 --python '' --json " + d + "/d.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = read_json(d + "/d.json");
  const auto& cpu = j.at("devices").at("cpu");
  EXPECT_TRUE(cpu.at("available").get<bool>());
  EXPECT_EQ(cpu.at("clips").get<int64_t>(), 3);
  EXPECT_EQ(cpu.at("frames").get<int64_t>(), 12);  // 3 clips of 4 frames
  EXPECT_GT(cpu.at("frames_per_s").get<double>(), 0);
  EXPECT_NEAR(cpu.at("frames_per_s").get<double>(), 12 / cpu.at("seconds").get<double>(),
              1e-9 * cpu.at("frames_per_s").get<double>());
  EXPECT_EQ(j.at("holo_clips_device"), "cpu");
  // What the decoders did: at least one seek, every returned frame converted once and decoded.
  EXPECT_GE(cpu.at("seeks").get<int64_t>(), 1);
  EXPECT_GE(cpu.at("decoded").get<int64_t>(), 12);
  EXPECT_GE(cpu.at("packets").get<int64_t>(), cpu.at("decoded").get<int64_t>());
  EXPECT_LE(cpu.at("discardable").get<int64_t>(), cpu.at("packets").get<int64_t>());
  EXPECT_THAT(r.output, HasSubstr("frames per clip frame; "));
  const auto& nvdec = j.at("devices").at("nvdec");
  if (nvdec.at("available").get<bool>()) {  // a machine with NVDEC: the ratio of the two
    EXPECT_EQ(nvdec.at("frames").get<int64_t>(), 12);
    EXPECT_NEAR(j.at("ratio_nvdec_cpu").get<double>(),
                nvdec.at("frames_per_s").get<double>() / cpu.at("frames_per_s").get<double>(), 1e-9);
    EXPECT_THAT(r.output, HasSubstr("\nnvdec/cpu "));
  } else {  // here: the reason NVDEC cannot be used, on the nvdec/cpu line as well
    const std::string reason = nvdec.at("reason").get<std::string>();
    EXPECT_FALSE(reason.empty());
    EXPECT_FALSE(j.contains("ratio_nvdec_cpu"));
    EXPECT_THAT(r.output, HasSubstr("\nnvdec/cpu not available: " + reason));
  }
  // The Python columns say why they have no figure.
  EXPECT_EQ(j.at("pyav_error"), "no --python");
  EXPECT_THAT(r.output, HasSubstr("pyslowfast   not available: no --python"));

  const auto bad = run_command(bench_env(d) + holo_binary() + " bench decode --devices cpu,gpu --python ''");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("'gpu' is not a decode device"));
}

TEST(Cli, BenchDecodePythonWithoutPyAvNamesTheReasonPerColumn) {
  const std::string d = holo::testing::temp_dir();
  std::filesystem::create_directories(d + "/noav");
  std::ofstream(d + "/noav/av.py") << "raise ImportError('no PyAV in this test')\n";
  const auto r = run_command("PYTHONPATH=" + d + "/noav " + bench_env(d) + holo_binary() +
                             " bench decode --threads 1 --synth-videos 1 --synth-size 64x48 --synth-frames 24"
                             " --clips 1 --frames 4 --python /usr/bin/python3 --baseline " +
                             holo::testing::source_dir() + "/bench/decode_baseline.py --json " + d + "/d.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = read_json(d + "/d.json");
  for (const char* column : {"pyav", "pyslowfast", "torchvision"}) {
    EXPECT_EQ(j.at(std::string(column) + "_error"), "PyAV: no PyAV in this test") << column;
    EXPECT_FALSE(j.contains(std::string(column) + "_clips_per_s")) << column;
  }
  EXPECT_THAT(r.output, HasSubstr("pyav         not available: PyAV: no PyAV in this test"));
  EXPECT_GT(j.at("holo_clips_per_s").get<double>(), 0);
}

TEST(Cli, BenchLoaderOnCpuReportsLoaderTrainAndTheirRatio) {
  const std::string d = holo::testing::temp_dir();
  // A Python without PyAV: the DataLoader baseline is skipped with the reason.
  std::filesystem::create_directories(d + "/noav");
  std::ofstream(d + "/noav/av.py") << "raise ImportError('no PyAV in this test')\n";
  const auto r = run_command("PYTHONPATH=" + d + "/noav " + bench_env(d) + holo_binary() +
                             " bench loader --device cpu --batch 2 --workers 2 --frames 4 --stride 2 --size 32"
                             " --model stc_resnet18 --width 0.25 --batches 3 --warmup-batches 1 --iters 1 --warmup 0"
                             " --synth-videos 3 --synth-frames 16 --synth-size 64x48 --python /usr/bin/python3"
                             " --baseline " + holo::testing::source_dir() + "/bench/loader_baseline.py --json " + d +
                             "/l.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = read_json(d + "/l.json");
  const double loader = j.at("loader_clips_per_s").get<double>(), train = j.at("train_clips_per_s").get<double>();
  EXPECT_GT(loader, 0);
  EXPECT_GT(train, 0);
  EXPECT_DOUBLE_EQ(j.at("ratio_loader_train").get<double>(), loader / train);
  EXPECT_EQ(j.at("loader_clips").get<int64_t>(), 6);  // 3 timed batches of 2
  EXPECT_NEAR(loader, 6 / j.at("loader_seconds").get<double>(), 1e-9 * loader);
  EXPECT_EQ(j.at("videos").get<int64_t>(), 3);
  EXPECT_EQ(j.at("repeat").get<int64_t>(), 3);  // (1 + 3) batches x 2 clips over 3 videos
  EXPECT_EQ(j.at("precision"), "fp32");
  EXPECT_EQ(j.at("dataloader_error"), "PyAV: no PyAV in this test");
  EXPECT_FALSE(j.contains("ratio_holo_dataloader"));
  EXPECT_THAT(r.output, HasSubstr("DataLoader: not available: PyAV: no PyAV in this test"));
  char line[64];
  std::snprintf(line, sizeof line, "\nloader/train %.2f (", loader / train);
  EXPECT_THAT(r.output, HasSubstr(line));

  const auto bad = run_command(bench_env(d) + holo_binary() + " bench loader --device tpu --python ''");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("--device tpu"));
}

TEST(Cli, BenchLoaderDataLoaderBaselineGivesItsRatio) {
  const std::string d = holo::testing::temp_dir();
  const auto r = run_command(bench_env(d) + holo_binary() +
                             " bench loader --device cpu --batch 2 --workers 1 --frames 4 --stride 2 --size 32"
                             " --model stc_resnet18 --width 0.25 --batches 2 --warmup-batches 1 --iters 1 --warmup 0"
                             " --synth-videos 2 --synth-frames 16 --synth-size 64x48 --python /usr/bin/python3"
                             " --baseline " + holo::testing::source_dir() + "/bench/loader_baseline.py --json " +
                             d + "/l.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = read_json(d + "/l.json");
  ASSERT_TRUE(j.contains("dataloader_clips_per_s")) << r.output;
  const double holo = j.at("loader_clips_per_s").get<double>(), py = j.at("dataloader_clips_per_s").get<double>();
  EXPECT_GT(py, 0);
  EXPECT_DOUBLE_EQ(j.at("ratio_holo_dataloader").get<double>(), holo / py);
  EXPECT_THAT(r.output, HasSubstr("\nholo/DataLoader "));
}

// ---- data checks: before any work starts or any job is queued ---------------------------

/// A recipe file with `text`, and a Kinetics-style folder under `d` (a videos folder, and
/// train.csv with the right header).
std::string data_recipe(const std::string& d, const std::string& text) {
  std::filesystem::create_directories(d + "/videos");
  std::ofstream(d + "/train.csv") << "label,youtube_id,time_start,time_end,split\n";
  std::ofstream(d + "/r.toml") << text;
  return d + "/r.toml";
}

TEST(Cli, RecipeWithoutADatasetIsRefused) {
  const std::string d = holo::testing::temp_dir();
  for (const std::string text : {"", "[optim]\nlr = 0.1\n", "\xEF\xBB\xBF[train]\nepochs = 1\n"}) {
    const std::string path = data_recipe(d, text);
    for (const std::string cmd : {" recipe check ", " train ", " submit --dry-run "}) {
      const auto r = run_command(holo_binary() + cmd + path);
      EXPECT_EQ(r.exit_code, 2) << cmd << text << "\n" << r.output;
      EXPECT_THAT(r.output, AllOf(HasSubstr("data.dataset"), HasSubstr("names no dataset"))) << cmd;
      EXPECT_THAT(r.output, ::testing::Not(HasSubstr("training "))) << cmd;
    }
  }
  const auto synth = run_command(holo_binary() + " recipe check " + data_recipe(d, "[data]\ndataset = \"synth\"\n"));
  EXPECT_EQ(synth.exit_code, 0) << synth.output;
}

TEST(Cli, MissingDataIsNamedWithItsKeyAndLineBeforeAnythingStarts) {
  const std::string d = holo::testing::temp_dir();
  // A byte-order mark in front changes nothing: the keys are read and checked.
  const std::string path = data_recipe(d, "\xEF\xBB\xBF[run]\ndir = \"" + d + "/run\"\n[data]\ndataset = \"kinetics\"\n" +
                                              "root = \"videos\"\ntrain = \"nowhere.csv\"\n");
  for (const std::string cmd : {" recipe check ", " train ", " submit --dry-run ", " eval "}) {
    const auto r = run_command(holo_binary() + cmd + path + (cmd == " eval " ? " --checkpoint " + d : ""));
    EXPECT_EQ(r.exit_code, 2) << cmd << r.output;
    EXPECT_THAT(r.output, AllOf(HasSubstr("r.toml:6:1"), HasSubstr("key 'data.train'"),
                                HasSubstr("'" + d + "/nowhere.csv' does not exist")))
        << cmd;
  }
  EXPECT_FALSE(std::filesystem::exists(d + "/run")) << "train started before the data check";
  // A root that is not there, set with --set: named as the override.
  const auto root = run_command(holo_binary() + " recipe check " + path + " --set data.root=/nonexistent/videos" +
                                " --set data.train=" + d + "/train.csv");
  EXPECT_EQ(root.exit_code, 2) << root.output;
  EXPECT_THAT(root.output, AllOf(HasSubstr("--set data.root=/nonexistent/videos"),
                                 HasSubstr("'/nonexistent/videos' does not exist")));
  // A header that is not Kinetics's.
  std::ofstream(d + "/bad.csv") << "youtube_id;time_start;time_end\nabc;1;2\n";
  const auto header = run_command(holo_binary() + " recipe check " + path + " --set data.train=" + d + "/bad.csv");
  EXPECT_EQ(header.exit_code, 2) << header.output;
  EXPECT_THAT(header.output, AllOf(HasSubstr("key 'data.train'"), HasSubstr("bad.csv':1: the header has no")));
  // And the good one passes; eval then needs the split it reads (eval.split = val).
  const auto ok = run_command(holo_binary() + " recipe check " + path + " --set data.train=" + d + "/train.csv");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  const auto eval = run_command(holo_binary() + " eval " + path + " --set data.train=" + d + "/train.csv --checkpoint " + d);
  EXPECT_EQ(eval.exit_code, 2) << eval.output;
  EXPECT_THAT(eval.output, AllOf(HasSubstr("key 'data.val'"), HasSubstr("is not set: the val split needs")));
}

// What a user mistypes is named, with what would have been right.
TEST(Cli, MistakesAreNamed) {
  const auto top = run_command(holo_binary() + " frobnicate");
  EXPECT_EQ(top.exit_code, 2);
  EXPECT_THAT(top.output, AllOf(HasSubstr("unknown command 'holo frobnicate'"), HasSubstr("train"), HasSubstr("eval")));
  const auto nested = run_command(holo_binary() + " data frobnicate");
  EXPECT_EQ(nested.exit_code, 2);
  EXPECT_THAT(nested.output, AllOf(HasSubstr("unknown command 'holo data frobnicate'"), HasSubstr("synth")));
  const auto np0 = run_command(holo_binary() + " launch --np 0 recipe.toml");
  EXPECT_EQ(np0.exit_code, 2);
  EXPECT_THAT(np0.output, HasSubstr("at least 1, got '0'"));
  EXPECT_THAT(np0.output, ::testing::Not(HasSubstr("1797693")));
  // The options a benchmark passes to its own workers are not offered to users.
  const auto bench = run_command(holo_binary() + " bench scaling --help");
  EXPECT_EQ(bench.exit_code, 0);
  EXPECT_THAT(bench.output, ::testing::Not(HasSubstr("--worker")));
  EXPECT_THAT(bench.output, ::testing::Not(HasSubstr("--result")));
  EXPECT_THAT(run_command(holo_binary() + " eval --help").output, HasSubstr("--split"));
}

// holo model info RECIPE builds the heads the recipe's run would: its training split's classes.
TEST(Cli, ModelInfoOfARecipeUsesItsClasses) {
  const std::string d = holo::testing::temp_dir();
  const auto synth = run_command(holo_binary() + " data synth --kind motion --classes 3 --videos 6 --frames 8 --size 32x32 --out " + d + "/m");
  ASSERT_EQ(synth.exit_code, 0) << synth.output;
  std::ofstream(d + "/r.toml") << "[data]\ndataset = \"kinetics\"\nroot = \"" << d << "/m\"\ntrain = \"" << d
                               << "/m/train.csv\"\n[model]\nname = \"r3d18\"\nwidth = 0.25\n[sampling]\nnum_frames = 8\n";
  const auto r = run_command(holo_binary() + " model info " + d + "/r.toml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("input 3x8x112x112, 3 classes (the recipe's training split)"));
  const auto given = run_command(holo_binary() + " model info " + d + "/r.toml --classes 7");
  EXPECT_THAT(given.output, HasSubstr("7 classes (--classes)"));
}

}  // namespace
}  // namespace holo
