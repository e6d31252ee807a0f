// The HDF5 feature store across processes and from Python, the probe and its manifest, and
// `holo data synth` output checked by ffprobe.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <tuple>

#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/recipe.h"
#include "pipeline/dataset.h"
#include "pipeline/decoder.h"
#include "pipeline/feature_store.h"
#include "pipeline/loader.h"
#include "pipeline/probe.h"
#include "pipeline/sampling.h"
#include "pipeline/synth.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace holo::pipeline {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(FeatureStore, ShardsFromTwoProcessesOneIndexReadByHoloAndPython) {
  const fs::path dir = fs::path(holo::testing::temp_dir()) / "store";
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Rank 1 in its own process.
    int rc = 0;
    try {
      FeatureWriter w(dir.string(), 1);
      w.write("b/x", torch::full({4}, 2.5f));
      for (int64_t f = 0; f < 3; ++f) w.write("c", f, torch::full({2}, static_cast<float>(f)));
      w.close();
    } catch (...) {
      rc = 1;
    }
    _exit(rc);
  }
  {
    FeatureWriter w(dir.string(), 0, FeatureStoreOptions().set_compression(4));
    w.write("a", torch::arange(6, torch::kFloat32).view({2, 3}));
    EXPECT_THAT([&] { w.write("a", torch::zeros({1})); }, ::testing::ThrowsMessage<IoError>(HasSubstr("'a' is already stored")));
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(write_feature_index(dir.string()), 3);

  FeatureReader r(dir.string());
  EXPECT_THAT(r.ids(), ElementsAre("a", "b/x", "c"));
  EXPECT_TRUE(r.contains("a"));
  EXPECT_FALSE(r.contains("c"));
  EXPECT_TRUE(r.contains("c", 2));
  EXPECT_FALSE(r.contains("c", 3));
  EXPECT_TRUE(torch::equal(r.read("a"), torch::arange(6, torch::kFloat32).view({2, 3})));
  EXPECT_TRUE(torch::equal(r.read("b/x"), torch::full({4}, 2.5f)));
  EXPECT_TRUE(torch::equal(r.read("c", 1), torch::full({2}, 1.0f)));
  EXPECT_THAT([&] { r.read("zzz"); }, ::testing::ThrowsMessage<IoError>(HasSubstr("no clip feature for 'zzz'")));

  // Python reads the index (external links into both shards) while Holo still has it open.
  ASSERT_TRUE(fs::exists("/usr/bin/python3")) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string script =
      "import h5py, sys\n"
      "f = h5py.File(sys.argv[1] + '/index.h5', 'r')\n"
      "ids = [x.decode() if isinstance(x, bytes) else x for x in f['ids'][()]]\n"
      "assert ids == ['a', 'b/x', 'c'], ids\n"
      "assert list(f['shards'][()]) == [0, 1, 1]\n"
      "a = f['clips/a'][()]\n"
      "assert a.shape == (2, 3) and a.sum() == 15, a\n"
      "assert f['clips/a'].compression == 'gzip'\n"
      "assert (f['clips']['b%2Fx'][()] == 2.5).all()\n"
      "assert f['frames/c/000002'][()].tolist() == [2.0, 2.0]\n"
      "print('python ok')\n";
  holo::testing::write_text_file((dir.parent_path() / "check.py").string(), script);
  const auto res = holo::testing::run_command("/usr/bin/python3 " + (dir.parent_path() / "check.py").string() + " " + dir.string());
  EXPECT_EQ(res.exit_code, 0) << res.output;
  EXPECT_THAT(res.output, HasSubstr("python ok"));
}

TEST(FeatureStore, SameKeyInTwoShardsIsAnError) {
  const fs::path dir = fs::path(holo::testing::temp_dir()) / "store";
  FeatureWriter(dir.string(), 0).write("x", torch::ones({1}));
  FeatureWriter(dir.string(), 1).write("x", torch::ones({1}));
  EXPECT_THAT([&] { write_feature_index(dir.string()); },
              ::testing::ThrowsMessage<IoError>(HasSubstr("'x' is in both rank 0 and rank 1 shards")));
  EXPECT_THAT(
      [&] { FeatureReader reader(dir.string()); },
      ::testing::ThrowsMessage<IoError>(HasSubstr("is in the shards of rank 0 and rank 1")));
}

TEST(Probe, ReportsEveryFileAndTheManifestFeedsTheDataset) {
  const fs::path dir = holo::testing::temp_dir();
  holo::testing::write_coded_video((dir / "good.mp4").string(), 20);
  holo::testing::write_coded_video((dir / "vfr.mp4").string(), 20, VideoWriterOptions().set_variable_rate(true));
  holo::testing::write_text_file((dir / "zero.mp4").string(), "");
  holo::testing::write_truncated((dir / "good.mp4").string(), (dir / "cut.mp4").string(), 0.3);
  holo::testing::write_wav((dir / "sound.wav").string());
  fs::copy_file(dir / "good.mp4", dir / "copy.mp4");
  holo::testing::write_corrupted((dir / "good.mp4").string(), (dir / "corrupt.mp4").string(), 0.6,
                                 0.7);
  for (const char* name : {"dup.mkv", "raw.h264"}) {
    const auto made =
        holo::testing::write_broken_timestamps((dir / "good.mp4").string(), (dir / name).string());
    ASSERT_EQ(made.exit_code, 0) << made.output;
  }
  // The folder is scanned by content: the raw .h264 stream is a video, the zero-byte .mp4 is
  // not (listed as skipped), nor is the .wav, which is probed all the same because it is named.
  EXPECT_EQ(scan_videos({dir.string()}).skipped.size(), 2u);
  const ScanResult scan = scan_videos({dir.string(), (dir / "sound.wav").string()});
  ASSERT_EQ(scan.videos.size(), 8u);
  ASSERT_EQ(scan.skipped.size(), 1u);
  EXPECT_EQ(fs::path(scan.skipped[0].path).filename(), "zero.mp4");
  EXPECT_EQ(scan.skipped[0].status, "zero-byte file");
  EXPECT_TRUE(scan.skipped[0].skipped);
  auto results = probe_videos(scan.videos, 2, false);
  std::map<std::string, ProbeResult> by;
  for (const auto& r : results) by[fs::path(r.path).filename().string()] = r;
  results.push_back(scan.skipped[0]);
  EXPECT_TRUE(by["good.mp4"].ok());
  EXPECT_TRUE(by["good.mp4"].decodes_to_end);
  EXPECT_EQ(by["good.mp4"].frames, 20);
  EXPECT_EQ(by["good.mp4"].codec, "h264");
  EXPECT_EQ(by["good.mp4"].width, 128);
  EXPECT_FALSE(by["good.mp4"].variable_rate);
  EXPECT_TRUE(by["vfr.mp4"].variable_rate);
  EXPECT_EQ(by["good.mp4"].hash, by["copy.mp4"].hash);
  EXPECT_NE(by["good.mp4"].hash, by["vfr.mp4"].hash);
  // Cut: usable as far as it goes (the dataset applies data.min_readable_fraction).
  EXPECT_TRUE(by["cut.mp4"].ok());
  EXPECT_EQ(by["cut.mp4"].declared_frames, 20);
  EXPECT_LT(by["cut.mp4"].frames, 10);
  EXPECT_THAT(by["cut.mp4"].warning, HasSubstr("truncated: the container lists 20 frames"));
  EXPECT_EQ(by["sound.wav"].status, "audio only (no video stream)");
  // Damaged in the middle: the container and the frame table read, a frame does not decode.
  EXPECT_EQ(by["corrupt.mp4"].frames, 20);
  EXPECT_FALSE(by["corrupt.mp4"].decodes_to_end);
  EXPECT_THAT(by["corrupt.mp4"].status,
              ::testing::MatchesRegex("frame [0-9]+ of 20 cannot be decoded"));
  EXPECT_EQ(by["dup.mkv"].status, "broken timestamps: two frames share the timestamp 63");
  EXPECT_EQ(by["raw.h264"].status, "broken timestamps: no video packet has a timestamp");
  const std::string table = format_probe_table(results);
  EXPECT_THAT(
      table,
      HasSubstr("8 files: 4 ok (1 with variable frame rate, 1 with a warning), 4 quarantined"));
  EXPECT_THAT(table, HasSubstr("; 1 other files skipped as not videos"));
  EXPECT_THAT(table, HasSubstr("ok, warning: truncated: the container lists 20 frames"));
  EXPECT_THAT(table, ::testing::Not(HasSubstr("zero.mp4")));
  // Columns line up under their header also when a codec name is long.
  std::vector<ProbeResult> long_codec = results;
  long_codec[0].codec = "mpeg2video";
  const std::string aligned = format_probe_table(long_codec);
  const size_t column = aligned.find("resolution");
  std::istringstream rows(aligned);
  std::string row;
  std::getline(rows, row);  // the header
  for (size_t i = 0; i + 1 < long_codec.size() && std::getline(rows, row);
       ++i) {  // not the skipped one
    const auto& r = long_codec[i];
    const std::string res = r.width > 0 ? std::to_string(r.width) + "x" + std::to_string(r.height) : "-";
    EXPECT_EQ(row.compare(column, res.size(), res), 0) << "\n" << aligned;
  }

  const std::string manifest = (dir / "manifest.json").string();
  write_manifest(manifest, results);
  const auto back = read_manifest(manifest);
  EXPECT_EQ(back.size(), 9u);
  EXPECT_EQ(back.at((dir / "vfr.mp4").string()).frames, 20);
  EXPECT_EQ(back.at((dir / "cut.mp4").string()).warning, by["cut.mp4"].warning);
  EXPECT_EQ(back.at((dir / "cut.mp4").string()).declared_frames, 20);
  EXPECT_TRUE(back.at((dir / "zero.mp4").string()).skipped);

  holo::testing::write_text_file((dir / "list.txt").string(), "good.mp4 0\ncut.mp4 1\nvfr.mp4 1\n");
  Recipe r;
  r.data.dataset = "list";
  r.data.root = dir.string();
  r.data.train = (dir / "list.txt").string();
  r.data.manifest = manifest;
  auto ds = make_dataset(r, "train");
  EXPECT_EQ(ds->records().size(), 2u);
  ASSERT_EQ(ds->known_bad().size(), 1u);
  EXPECT_THAT(ds->known_bad()[0], HasSubstr("cut.mp4: truncated: the container lists 20 frames"));
  EXPECT_THAT(ds->known_bad()[0], HasSubstr("of the 20 frames it declares can be read"));
  EXPECT_THAT(ds->known_bad()[0], HasSubstr("fewer than data.min_readable_fraction = 0.5"));
  // Under a lower data.min_readable_fraction the cut file is used for the frames it has (one
  // here: the cut leaves a second packet, part of which does not decode).
  r.data.min_readable_fraction = 0.01;
  ds = make_dataset(r, "train");
  ASSERT_EQ(ds->records().size(), 3u);
  EXPECT_EQ(ds->records()[1].frames, by["cut.mp4"].frames);
  EXPECT_EQ(ds->records()[1].min_readable_fraction, 0.01);
  EXPECT_TRUE(ds->known_bad().empty());
}

// The manifest is trusted for files that did not change (a file it marks bad is left out
// without being opened, its frame count drives the sampling) and not for files that did
// (they are probed again).
TEST(Probe, ManifestEntriesAreTrustedUntilTheFileChanges) {
  const fs::path dir = holo::testing::temp_dir();
  for (const char* name : {"short.mp4", "fine.mp4", "stale.mp4"}) holo::testing::write_coded_video((dir / name).string(), 20);
  holo::testing::write_truncated((dir / "fine.mp4").string(), (dir / "cut.mp4").string(), 0.3);
  std::map<std::string, ProbeResult> by;
  for (auto& p : probe_videos(find_videos({dir.string()}), 2, false)) by[fs::path(p.path).filename().string()] = p;
  ASSERT_EQ(by.size(), 4u);
  ASSERT_EQ(by["short.mp4"].frames, 20);
  ASSERT_THAT(by["cut.mp4"].warning, HasSubstr("truncated"));
  by["short.mp4"].frames = 5;                               // current entry: its count is used
  by["short.mp4"].declared_frames = 0;  // as in a manifest written before the field
  by["fine.mp4"].status = "truncated: as the manifest says";  // current entry: trusted, never decoded
  by["stale.mp4"].status = "zero-byte file";                // changed size: probed again, it is fine
  by["stale.mp4"].size += 1;
  by["cut.mp4"].status = "ok";                              // changed time: probed again, it is truncated
  by["cut.mp4"].mtime -= 100;
  const std::string manifest = (dir / "manifest.json").string();
  auto write = [&] {
    std::vector<ProbeResult> entries;
    for (auto& [name, p] : by) entries.push_back(p);
    write_manifest(manifest, entries);
  };
  write();
  holo::testing::write_text_file((dir / "list.txt").string(), "short.mp4 0\nfine.mp4 1\nstale.mp4 1\ncut.mp4 0\n");
  Recipe r;
  r.data.dataset = "list";
  r.data.root = dir.string();
  r.data.train = (dir / "list.txt").string();
  r.data.manifest = manifest;
  auto ds = make_dataset(r, "train");
  ASSERT_EQ(ds->records().size(), 2u);
  EXPECT_EQ(ds->records()[0].id, "short");
  EXPECT_EQ(ds->records()[0].frames, 5);
  EXPECT_EQ(ds->records()[1].id, "stale");
  EXPECT_EQ(ds->records()[1].frames, 20);
  ASSERT_EQ(ds->known_bad().size(), 2u);
  EXPECT_EQ(ds->known_bad()[0], (dir / "fine.mp4").string() + ": truncated: as the manifest says");
  EXPECT_THAT(ds->known_bad()[1], HasSubstr("cut.mp4: truncated: the container lists 20 frames"));
  {
    // The same files through a symbolic link to their folder find the same entries.
    const fs::path link = dir.parent_path() / (dir.filename().string() + "-link");
    fs::remove(link);
    fs::create_directory_symlink(dir, link);
    Recipe linked = r;
    linked.data.root = (link / "." / "").string();
    auto via_link = make_dataset(linked, "train");
    ASSERT_EQ(via_link->records().size(), 2u);
    EXPECT_EQ(via_link->records()[0].frames, 5);
    EXPECT_EQ(via_link->known_bad().size(), 2u);
    fs::remove(link);
  }
  // An entry without a path names the manifest and the entry.
  holo::testing::write_text_file((dir / "bad-manifest.json").string(),
                                 R"({"version": 1, "videos": [{"path": "a.mp4"}, {"frames": 3}]})");
  EXPECT_THAT([&] { read_manifest((dir / "bad-manifest.json").string()); },
              ::testing::ThrowsMessage<IoError>(
                  HasSubstr("bad-manifest.json: video entry 2 has no \"path\"")));

  // The sampler sees the manifest's count: clip indices stay below 5 although the file has 20.
  auto d = open_decoder(ds->records()[0].path, DecoderOptions());
  EXPECT_EQ(sampling_frames(ds->records()[0], d->info()), 5);
  VideoRecord unprobed = ds->records()[0];
  unprobed.frames = 0;
  EXPECT_EQ(sampling_frames(unprobed, d->info()), 20);
  r.sampling.num_frames = 4;
  r.sampling.stride = 3;
  r.sampling.test_clips = 1;
  const ClipRequest req = test_clip(r, sampling_frames(ds->records()[0], d->info()), 0);
  EXPECT_THAT(req.frames, ElementsAre(0, 3, 4, 4));  // span 10 > 5 frames: the last frame repeats

  // A manifest that lists more frames than the file has is stale: the loader quarantines the
  // file with that reason and counts it with the manifest's known-bad files.
  by["short.mp4"].frames = 400;
  write();
  ds = make_dataset(r, "train");
  ASSERT_EQ(ds->records()[0].frames, 400);
  r.loader.batch_size = 1;
  r.loader.workers = 0;
  r.transform.crop_size = 32;
  r.transform.train_scale_min = 34;
  r.transform.train_scale_max = 40;
  r.data.max_bad_fraction = 0.75;  // 3 of 4 bad after the quarantine
  ClipLoader loader(ds, r, LoaderMode::kTrain, 0, 1);
  std::vector<int64_t> seen;
  while (auto b = loader.next()) seen.insert(seen.end(), b->indices.begin(), b->indices.end());
  EXPECT_THAT(seen, ElementsAre(1, 1));  // the bad slot is filled from the order: record 1 again
  ASSERT_EQ(loader.quarantined().size(), 1u);
  EXPECT_EQ(loader.quarantined()[0].reason, "the manifest lists 400 frames, the file has 20 (changed since probing)");
  r.data.max_bad_fraction = 0.5;
  ClipLoader strict(ds, r, LoaderMode::kTrain, 0, 1);
  EXPECT_THAT([&] { while (strict.next()) {} }, ::testing::Throws<Error>());
}

// --gop and --bframes reach the encoder: keyframes where asked, B-frames present or absent.
TEST(Synth, CommandSetsKeyframeIntervalAndBFrames) {
  const fs::path dir = holo::testing::temp_dir();
  auto synth = [&](const std::string& out, const std::string& flags) {
    const auto r = holo::testing::run_command(holo::testing::holo_binary() + " data synth --kind unlabeled --videos 1 "
                                              "--frames 36 --out " + (dir / out).string() + " " + flags);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const auto files = find_videos({(dir / out).string()});
    EXPECT_EQ(files.size(), 1u);
    return files.empty() ? std::string() : files[0];
  };
  const std::string g12 = synth("g12", "--gop 12 --bframes 0");
  ASSERT_FALSE(g12.empty());
  EXPECT_EQ(open_decoder(g12, DecoderOptions())->info().keyframes, (std::vector<int64_t>{0, 12, 24}));
  const auto types = [](const std::string& file) {
    return holo::testing::run_command("ffprobe -v error -select_streams v:0 -show_entries frame=pict_type -of csv=p=0 '" +
                                      file + "' | tr -d '\\n'").output;
  };
  EXPECT_EQ(types(g12).find('B'), std::string::npos) << types(g12);
  const auto bad = holo::testing::run_command(holo::testing::holo_binary() + " data synth --kind unlabeled --out " +
                                              (dir / "bad").string() + " --gop 0");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.output, ::testing::HasSubstr("--gop"));
}

TEST(Synth, CommandWritesDeterministicVideosThatFfprobeReads) {
  const fs::path dir = holo::testing::temp_dir();
  auto synth = [&](const std::string& out, int seed, const std::string& shape = " --classes 8 --frames 24") {
    return holo::testing::run_command(holo::testing::holo_binary() + " data synth --kind motion --out " + (dir / out).string() +
                                      " --seed " + std::to_string(seed) + " --videos 16" + shape);
  };
  auto a = synth("a", 5);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(synth("b", 5).exit_code, 0);
  ASSERT_EQ(synth("c", 6).exit_code, 0);
  const auto files = find_videos({(dir / "a").string()});
  ASSERT_EQ(files.size(), 16u);
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string rel = fs::relative(files[i], dir / "a").string();
    EXPECT_EQ(file_hash(files[i]), file_hash((dir / "b" / rel).string())) << rel;
  }
  // The same seed into a directory of another name, at the learning tests' 48 x 32: the bytes
  // must not depend on what else the process allocated (the RGB to YUV conversion once read a
  // few bytes past each frame, so the files changed with the length of the output path).
  const std::string small = " --size 48x32 --no-frame-code --classes 2 --frames 32";
  ASSERT_EQ(synth("s", 2, small).exit_code, 0);
  ASSERT_EQ(synth("s-in-a-directory-with-a-much-longer-name", 2, small).exit_code, 0);
  const auto small_files = find_videos({(dir / "s").string()});
  ASSERT_EQ(small_files.size(), 16u);
  for (const auto& f : small_files) {
    const std::string rel = fs::relative(f, dir / "s").string();
    EXPECT_EQ(file_hash(f), file_hash((dir / "s-in-a-directory-with-a-much-longer-name" / rel).string())) << rel;
  }
  EXPECT_NE(find_videos({(dir / "c").string()}), std::vector<std::string>());
  EXPECT_NE(fs::relative(find_videos({(dir / "c").string()})[0], dir / "c"), fs::relative(files[0], dir / "a"));

  const auto probe = holo::testing::run_command(
      "ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=codec_name,width,height,nb_read_frames "
      "-of csv=p=0 '" + files[0] + "'");
  EXPECT_EQ(probe.exit_code, 0) << probe.output;
  EXPECT_EQ(probe.output, "h264,96,64,24\n");

  // Kinetics-format annotations: 8 classes x 2 videos, a quarter in val, test without labels.
  Recipe r;
  r.data.dataset = "kinetics";
  r.data.root = (dir / "a" / "videos").string();
  r.data.train = (dir / "a" / "train.csv").string();
  r.data.val = (dir / "a" / "val.csv").string();
  r.data.test = (dir / "a" / "test.csv").string();
  EXPECT_EQ(make_dataset(r, "train")->records().size(), 8u);
  EXPECT_EQ(make_dataset(r, "val")->records().size(), 8u);
  EXPECT_EQ(make_dataset(r, "train")->class_names(), motion_class_names() == std::vector<std::string>() ? std::vector<std::string>() : [] {
    auto n = motion_class_names();
    std::sort(n.begin(), n.end());
    return n;
  }());
  EXPECT_EQ(make_dataset(r, "test")->records().size(), 8u);

  const auto hvu = holo::testing::run_command(holo::testing::holo_binary() + " data synth --kind hvu --out " +
                                              (dir / "h").string() + " --videos 4 --frames 8");
  ASSERT_EQ(hvu.exit_code, 0) << hvu.output;
  EXPECT_TRUE(fs::exists(dir / "h" / "HVU_Tags_Categories_V1.0.csv"));
  const auto unlabeled = holo::testing::run_command(
      holo::testing::holo_binary() + " data synth --kind unlabeled --out " + (dir / "u").string() +
      " --videos 3 --frames 10");
  ASSERT_EQ(unlabeled.exit_code, 0) << unlabeled.output;
  // Every file of the other kinds reads in ffprobe too, with all its frames.
  for (const auto& [kind, frames, count] : {std::tuple<std::string, int, size_t>{"h", 8, 4},
                                            std::tuple<std::string, int, size_t>{"u", 10, 3}}) {
    const auto made = find_videos({(dir / kind).string()});
    EXPECT_EQ(made.size(), count) << kind;
    for (const auto& f : made) {
      const auto p = holo::testing::run_command(
          "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
          "stream=codec_name,nb_read_frames "
          "-of csv=p=0 '" +
          f + "'");
      EXPECT_EQ(p.exit_code, 0) << p.output;
      EXPECT_EQ(p.output, "h264," + std::to_string(frames) + "\n") << f;
    }
  }
  const auto bad = holo::testing::run_command(holo::testing::holo_binary() + " data synth --kind dance --out " + (dir / "x").string());
  EXPECT_EQ(bad.exit_code, 2);
}

}  // namespace
}  // namespace holo::pipeline
