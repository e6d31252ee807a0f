// TensorBoard event files: CRC-32C and the TFRecord framing against known vectors, the tags a
// metrics line gives, the files' names and order, and the files of real training runs (one
// resumed from an earlier checkpoint, then one started afresh) read back in /usr/bin/python3
// with google.protobuf from train/tensorboard.proto and compared with metrics.jsonl.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/test_util.h"
#include "tests/train/python_util.h"
#include "train/tensorboard.h"

namespace holo {
namespace {

namespace fs = std::filesystem;
using holo::testing::holo_binary;
using holo::testing::run_command;
using ::testing::ElementsAre;
using ::testing::Pair;
using train::crc32c;
using train::masked_crc32c;

// ---- CRC-32C and framing ------------------------------------------------------------------

// RFC 3720 (iSCSI), appendix B.4, and the usual check value of "123456789".
TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(crc32c(down), 0x113FDB5Cu);
}

TEST(Crc32c, ContinuesFromThePreviousBytes) {
  EXPECT_EQ(crc32c("56789", crc32c("1234")), 0xE3069283u);
  EXPECT_EQ(crc32c("", crc32c("123456789")), 0xE3069283u);
}

TEST(Crc32c, MaskIsRotateRightFifteenPlusTheConstant) {
  // ((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xa282ead8, modulo 2^32.
  EXPECT_EQ(masked_crc32c("123456789"), 0xC78AB0E5u);
  EXPECT_EQ(masked_crc32c(""), 0xA282EAD8u);
  for (const std::string s : {"a", "abc", "brain.Event:2", "\x01\x02\x03"}) {
    const uint32_t c = crc32c(s);
    EXPECT_EQ(masked_crc32c(s), static_cast<uint32_t>(((c >> 15) | (c << 17)) + 0xa282ead8u)) << s;
  }
}

TEST(TfRecord, FramesLengthCrcDataCrcLittleEndian) {
  // Length 3 (uint64), masked CRC of those 8 bytes, "abc", masked CRC of "abc".
  const std::string expect(
      "\x03\x00\x00\x00\x00\x00\x00\x00"
      "\xb0\x99\x49\x0e"
      "abc"
      "\x6e\x57\xf1\x21",
      19);
  EXPECT_EQ(train::tfrecord("abc"), expect);
  EXPECT_EQ(train::tfrecord("").size(), 16u);
  EXPECT_EQ(train::tfrecord(std::string(300, 'x')).substr(0, 8),
            std::string("\x2c\x01\0\0\0\0\0\0", 8));
}

// ---- Tags ---------------------------------------------------------------------------------

TEST(TensorBoardScalars, EveryNumericFieldButStepEpochAndTimeTaggedBySplit) {
  const auto line = nlohmann::json::parse(
      R"({"step":7,"epoch":1,"split":"train","lr":0.05,"loss":0.5,"acc":1,"clips_per_s":12.5,"time":3.2,)"
      R"("gflops_mean":0.25,"tokens_kept_mean":-3,"note":"x","ok":true,"none":null,"list":[1],"obj":{"a":1}})");
  EXPECT_THAT(train::tensorboard_scalars(line),
              ElementsAre(Pair("train/acc", 1.0), Pair("train/clips_per_s", 12.5),
                          Pair("train/gflops_mean", 0.25), Pair("train/loss", 0.5),
                          Pair("train/lr", 0.05), Pair("train/tokens_kept_mean", -3.0)));
  EXPECT_THAT(
      train::tensorboard_scalars(nlohmann::json::parse(R"({"step":3,"split":"val","top1":0.75})")),
      ElementsAre(Pair("val/top1", 0.75)));
  EXPECT_THAT(train::tensorboard_scalars(nlohmann::json::parse(R"({"step":3,"loss":2})")),
              ElementsAre(Pair("loss", 2.0)));
  // A loss that is not finite (null once metrics.jsonl is written) stays NaN.
  const auto nan =
      train::tensorboard_scalars({{"step", 4}, {"split", "val"}, {"loss", std::nan("")}});
  ASSERT_EQ(nan.size(), 1u);
  EXPECT_EQ(nan[0].first, "val/loss");
  EXPECT_TRUE(std::isnan(nan[0].second));
}

// ---- Files --------------------------------------------------------------------------------

std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> names;
  if (!fs::is_directory(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("events.out.tfevents.", 0) == 0) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(TensorBoardWriter, NamesSortInTheOrderTheFilesWereMadeAndRemovalKeepsOtherFiles) {
  const std::string d = holo::testing::temp_dir() + "/tb";
  std::vector<std::string> paths;
  for (int i = 0; i < 3; ++i) {
    train::TensorBoardWriter w(d);  // within one second: the names still sort in this order
    w.write(i, {{"train/loss", 1.0}});
    paths.push_back(fs::path(w.path()).filename().string());
  }
  EXPECT_EQ(event_files(d), paths);
  const std::regex name(R"(events\.out\.tfevents\.\d{10}\.[^/]+)");
  for (const auto& p : paths) EXPECT_TRUE(std::regex_match(p, name)) << p;
  // The first record of each: the file version, then the flushed event (no close needed).
  const std::string raw = read_all(d + "/" + paths[0]);
  ASSERT_GT(raw.size(), 12u);
  EXPECT_NE(raw.find("brain.Event:2"), std::string::npos);
  EXPECT_NE(raw.find("train/loss"), std::string::npos);
  std::ofstream(d + "/notes.txt") << "kept";
  EXPECT_EQ(train::remove_event_files(d), 3);
  EXPECT_TRUE(event_files(d).empty());
  EXPECT_TRUE(fs::exists(d + "/notes.txt"));
  EXPECT_EQ(train::remove_event_files(d + "/absent"), 0);
}

TEST(TensorBoardWriter, AnUnwritableFolderIsAnIoError) {
  const std::string d = holo::testing::temp_dir();
  std::ofstream(d + "/file") << "not a folder";
  EXPECT_THAT(
      [&] { train::TensorBoardWriter w(d + "/file/tb"); },
      ::testing::ThrowsMessage<IoError>(::testing::HasSubstr("cannot create '" + d + "/file/tb'")));
}

// ---- Training runs ------------------------------------------------------------------------

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

/// The scalars a metrics line must have in TensorBoard, written out here from the rule in
/// docs/metrics.md rather than through the library. A null in metrics.jsonl is a number that
/// was not finite (JSON has no NaN), written to TensorBoard as NaN.
std::map<std::string, double> expected_scalars(const nlohmann::json& line) {
  std::map<std::string, double> out;
  const std::string split = line.at("split");
  for (const auto& [k, v] : line.items()) {
    if (k == "step" || k == "split" || k == "epoch" || k == "time") continue;
    if (v.is_number()) out[split + "/" + k] = v.get<double>();
    if (v.is_null()) out[split + "/" + k] = std::nan("");
  }
  return out;
}

class TensorBoardRun : public ::testing::Test {
 protected:
  static std::string data() {
    const char* t = std::getenv("HOLO_TEST_TMP");
    return std::string(t ? t : "/tmp/holo-test") + "/tensorboard-data/motion";
  }

  static void SetUpTestSuite() {
    fs::remove_all(data());
    const auto r = run_command(holo_binary() + " data synth --kind motion --out " + data() +
                               " --frames 16 --size 48x32 --seed 5 --classes 4 --videos 32");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  /// An SGS network (its cost fields in every line) on half the training set (3 steps an
  /// epoch), validated every epoch, checkpointed every 2 steps.
  static std::string recipe(const std::string& dir) {
    const std::string m = data();
    const std::string path = dir + "/recipe.toml";
    std::ofstream(path)
        << "[run]\nseed = 3\ndir = \"" << dir << "/run\"\n"
        << "[data]\ndataset = \"kinetics\"\nroot = \"" << m << "\"\ntrain = \"" << m
        << "/train.csv\"\nval = \"" << m << "/val.csv\"\nfraction = 0.5\n"
        << "[sampling]\nnum_frames = 8\nstride = 2\ntest_clips = 1\ntest_crops = 1\n"
        << "[transform]\ncrop_size = 32\ntrain_scale_min = 32\ntrain_scale_max = 36\ntest_scale = "
           "32\n"
        << "[loader]\nbatch_size = 4\nworkers = 1\n"
        << "[model]\nname = \"r3d18_atfr\"\ndepth = 18\nwidth = 0.125\n"
        << "[optim]\nlr = 0.001\n"
        << "[train]\nepochs = 10\nlog_every = 1\nval_every = 1\n"
        << "[checkpoint]\nevery_steps = 2\n";
    return path;
  }

  static holo::testing::CommandResult train(const std::string& recipe, const std::string& sets) {
    return run_command("HOLO_NUM_THREADS=1 " + holo_binary() + " train " + recipe + " " + sets);
  }

  /// Every event file in `tb`, in name order, decoded by Python's protobuf from classes that
  /// protoc makes from train/tensorboard.proto, with both CRCs of every record checked by a
  /// CRC-32C written in Python. One JSON object per file: name, events, crc_errors, left
  /// (bytes after the last whole record).
  static nlohmann::json read_events(const std::string& work, const std::string& tb) {
    const char* protoc_env = std::getenv("HOLO_PROTOC");
    const std::string protoc = protoc_env && *protoc_env ? protoc_env : "protoc";
    const std::string py = work + "/py";
    fs::create_directories(py);
    const std::string proto_dir = holo::testing::source_dir() + "/train";
    const auto gen = run_command(protoc + " --python_out=" + py + " -I " + proto_dir + " " +
                                 proto_dir + "/tensorboard.proto");
    EXPECT_EQ(gen.exit_code, 0) << gen.output;
    fs::remove(work + "/reference.out");
    const std::string out = holo::testing::run_python(
        work,
        "import glob, json, math, os, struct\n"
        "sys.path.insert(0, '" +
            py +
            "')\n"
            "import tensorboard_pb2 as pb\n"
            "def crc32c(data):\n"
            "    crc = 0xffffffff\n"
            "    for b in data:\n"
            "        crc ^= b\n"
            "        for _ in range(8):\n"
            "            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)\n"
            "    return crc ^ 0xffffffff\n"
            "def masked(data):\n"
            "    c = crc32c(data)\n"
            "    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xffffffff\n"
            "def num(v):\n"
            "    return v if math.isfinite(v) else repr(v)\n"
            "files = []\n"
            "for f in sorted(glob.glob('" +
            tb +
            "/events.out.tfevents.*')):\n"
            "    raw = open(f, 'rb').read()\n"
            "    pos, bad, events = 0, 0, []\n"
            "    while pos + 12 <= len(raw):\n"
            "        head = raw[pos:pos + 8]\n"
            "        (n,) = struct.unpack('<Q', head)\n"
            "        (head_crc,) = struct.unpack('<I', raw[pos + 8:pos + 12])\n"
            "        if pos + 16 + n > len(raw):\n"
            "            break\n"
            "        data = raw[pos + 12:pos + 12 + n]\n"
            "        (data_crc,) = struct.unpack('<I', raw[pos + 12 + n:pos + 16 + n])\n"
            "        bad += (head_crc != masked(head)) + (data_crc != masked(data))\n"
            "        ev = pb.Event()\n"
            "        ev.ParseFromString(data)\n"
            "        e = {'wall_time': ev.wall_time, 'step': ev.step, 'what': "
            "ev.WhichOneof('what')}\n"
            "        if e['what'] == 'file_version':\n"
            "            e['file_version'] = ev.file_version\n"
            "        if e['what'] == 'summary':\n"
            "            e['values'] = [[v.tag, v.WhichOneof('value'), num(v.simple_value)] for v "
            "in ev.summary.value]\n"
            "        events.append(e)\n"
            "        pos += 16 + n\n"
            "    files.append({'name': os.path.basename(f), 'events': events, 'crc_errors': bad, "
            "'left': len(raw) - pos})\n"
            "json.dump(files, open(OUT, 'w'))\n");
    if (out.empty()) return nlohmann::json::array();
    return nlohmann::json::parse(out);
  }

  /// Checks one file: its records are whole and their CRCs right, the first is the file version,
  /// and the others are, in order, the scalars of `lines` at their steps (float32 of each
  /// value), stamped with wall times in [t0, t1] that never go back.
  static void expect_file_holds(const nlohmann::json& file,
                                const std::vector<nlohmann::json>& lines, double t0, double t1) {
    const std::string name = file.at("name");
    SCOPED_TRACE(name);
    EXPECT_EQ(file.at("crc_errors").get<int>(), 0);
    EXPECT_EQ(file.at("left").get<int>(), 0);
    const auto& events = file.at("events");
    ASSERT_EQ(events.size(), lines.size() + 1);
    EXPECT_EQ(events[0].at("what"), "file_version");
    EXPECT_EQ(events[0].value("file_version", ""), "brain.Event:2");
    double last_time = t0 - 1;
    for (size_t i = 0; i < lines.size(); ++i) {
      const auto& e = events[i + 1];
      const auto& line = lines[i];
      SCOPED_TRACE(line.dump());
      EXPECT_EQ(e.at("what"), "summary");
      EXPECT_EQ(e.at("step").get<int64_t>(), line.at("step").get<int64_t>());
      const double wall = e.at("wall_time");
      EXPECT_GE(wall, last_time);
      EXPECT_GE(wall, t0 - 1);
      EXPECT_LE(wall, t1 + 1);
      last_time = wall;
      std::map<std::string, double> got;
      for (const auto& v : e.at("values")) {
        const std::string tag = v.at(0);
        EXPECT_EQ(v.at(1), "simple_value") << tag;
        // Python gives a number, or the repr of one that is not finite ("nan", "inf").
        const double value =
            v.at(2).is_number() ? v.at(2).get<double>() : std::stod(v.at(2).get<std::string>());
        EXPECT_TRUE(got.emplace(tag, value).second) << "tag twice: " << tag;
      }
      const auto want = expected_scalars(line);
      std::set<std::string> got_tags, want_tags;
      for (const auto& kv : got) got_tags.insert(kv.first);
      for (const auto& kv : want) want_tags.insert(kv.first);
      EXPECT_EQ(got_tags, want_tags);
      for (const auto& [tag, value] : want) {
        if (!got.count(tag)) continue;
        if (std::isnan(value)) {
          EXPECT_TRUE(std::isnan(got[tag])) << tag << " " << got[tag];
        } else {
          EXPECT_FLOAT_EQ(static_cast<float>(got[tag]), static_cast<float>(value)) << tag;
        }
      }
    }
  }
};

// A run of 6 steps, then a run resumed from its step-4 checkpoint to step 8 (steps 5 and 6 and
// the validation at 6 are done again), then a run started afresh in the same directory.
TEST_F(TensorBoardRun, EventFilesHoldEveryMetricsLineAcrossResumeAndFreshStart) {
  ASSERT_TRUE(holo::testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string d = holo::testing::temp_dir();
  const std::string path = recipe(d);
  const std::string run = d + "/run", tb = d + "/run/tb";

  const double t0 = unix_now();
  const auto r1 = train(path, "--set train.max_steps=6");
  const double t1 = unix_now();
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  const auto lines1 = read_lines(run + "/metrics.jsonl");
  ASSERT_EQ(event_files(tb).size(), 1u);

  const std::string step4 = run + "/checkpoints/step-00000004";
  ASSERT_TRUE(fs::is_directory(step4)) << r1.output;
  const auto r2 = train(path, "--set train.max_steps=8 --set checkpoint.resume=" + step4);
  const double t2 = unix_now();
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  const auto lines2 = read_lines(run + "/metrics.jsonl");

  // What the runs wrote: the first, lines1; the second, what metrics.jsonl holds after the
  // lines it kept from the first (its training lines up to step 4, validations up to step 3).
  size_t kept = 0;
  for (const auto& l : lines1) {
    const int64_t s = l.at("step");
    if (l.at("split") == "train" ? s <= 4 : s <= 3) ++kept;
  }
  ASSERT_GT(lines2.size(), kept);
  for (size_t i = 0; i < kept; ++i) EXPECT_EQ(lines2[i].at("step"), lines1[i].at("step")) << i;
  const std::vector<nlohmann::json> appended(lines2.begin() + static_cast<std::ptrdiff_t>(kept),
                                             lines2.end());
  EXPECT_EQ(appended.front().at("step"), 5) << appended.front().dump();

  // What must be there: loss, accuracy, lr, throughput and the SGS cost in training; top-1,
  // loss and the cost in validation; a validation in each run, one of them done twice.
  std::set<std::string> tags1, val_steps1, val_steps2;
  for (const auto& l : lines1) {
    for (const auto& kv : expected_scalars(l)) tags1.insert(kv.first);
    if (l.at("split") == "val") val_steps1.insert(l.at("step").dump());
  }
  for (const auto& l : appended) {
    if (l.at("split") == "val") val_steps2.insert(l.at("step").dump());
  }
  for (const std::string tag :
       {"train/loss", "train/acc", "train/lr", "train/clips_per_s", "train/gflops_mean",
        "train/active_bins_mean", "train/active_bins_max", "val/top1", "val/loss",
        "val/active_bins_mean"}) {
    EXPECT_TRUE(tags1.count(tag)) << tag << " missing; tags: " << ::testing::PrintToString(tags1);
  }
  EXPECT_EQ(val_steps1, (std::set<std::string>{"3", "6"}));
  EXPECT_TRUE(val_steps2.count("6")) << ::testing::PrintToString(val_steps2);

  auto files = read_events(d, tb);
  ASSERT_EQ(files.size(), 2u) << files.dump();
  EXPECT_LT(files[0].at("name").get<std::string>(), files[1].at("name").get<std::string>());
  expect_file_holds(files[0], lines1, t0, t1);
  expect_file_holds(files[1], appended, t1, t2);

  // Afresh (resume = never, the old checkpoints overwritten): the old event files go with the
  // old lines of metrics.jsonl.
  const double t3 = unix_now();
  const auto r3 = train(
      path,
      "--set train.max_steps=2 --set checkpoint.resume=never --set checkpoint.existing=overwrite");
  const double t4 = unix_now();
  ASSERT_EQ(r3.exit_code, 0) << r3.output;
  const auto lines3 = read_lines(run + "/metrics.jsonl");
  ASSERT_GE(lines3.size(), 2u);  // steps 1 and 2, and the validation at the end
  for (const auto& l : lines3) EXPECT_LE(l.at("step").get<int64_t>(), 2) << l.dump();
  files = read_events(d, tb);
  ASSERT_EQ(files.size(), 1u) << files.dump();
  expect_file_holds(files[0], lines3, t3, t4);
}

}  // namespace
}  // namespace holo
