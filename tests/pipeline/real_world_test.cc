// Videos as they come from the real world, each made here with the ffmpeg command line: Theora in
// Ogg, VP9 in AVI, AVI and MP4 headers that declare one frame more than the file holds, an MP4
// whose last frame does not decode, an MP4 cut from the middle by stream copy (frames outside
// its edit list). For each: the folder scan finds it, the probe counts what
// `ffprobe -count_frames` counts, and the loader uses it. Files that are not videos are listed as
// skipped with their reason; the manifest's mtime is Unix seconds; `holo data probe` on a missing
// path fails naming it.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <utime.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>

#include "core/error.h"
#include "core/recipe.h"
#include "pipeline/av_handles.h"
#include "pipeline/dataset.h"
#include "pipeline/decoder.h"
#include "pipeline/loader.h"
#include "pipeline/probe.h"
#include "pipeline/video_writer.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace holo::pipeline {
namespace {

using ::testing::HasSubstr;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

uint32_t le32(const std::string& d, size_t at) {
  uint32_t v = 0;
  for (int b = 3; b >= 0; --b) v = v << 8 | static_cast<uint8_t>(d[at + b]);
  return v;
}
void put_le32(std::string& d, size_t at, uint32_t v) {
  for (int b = 0; b < 4; ++b) d[at + b] = static_cast<char>((v >> (8 * b)) & 0xFF);
}
uint32_t be32(const std::string& d, size_t at) {
  uint32_t v = 0;
  for (int b = 0; b < 4; ++b) v = v << 8 | static_cast<uint8_t>(d[at + b]);
  return v;
}
void put_be32(std::string& d, size_t at, uint32_t v) {
  for (int b = 0; b < 4; ++b) d[at + b] = static_cast<char>((v >> (8 * (3 - b))) & 0xFF);
}

/// An AVI whose header declares one frame more than it holds: the main header's dwTotalFrames,
/// the video stream header's dwLength and the OpenDML header's total, each plus one.
void avi_declaring_one_more_frame(const std::string& from, const std::string& to) {
  std::string d = read_bytes(from);
  const size_t avih = d.find("avih"), strh = d.find("strh");
  ASSERT_NE(avih, std::string::npos);
  ASSERT_NE(strh, std::string::npos);
  ASSERT_EQ(d.compare(strh + 8, 4, "vids"), 0);
  put_le32(d, avih + 8 + 16, le32(d, avih + 8 + 16) + 1);
  put_le32(d, strh + 8 + 32, le32(d, strh + 8 + 32) + 1);
  const size_t dmlh = d.find("dmlh");
  if (dmlh != std::string::npos) put_le32(d, dmlh + 8, le32(d, dmlh + 8) + 1);
  write_bytes(to, d);
}

/// An MP4 (one video track) whose time-to-sample table declares one sample more than the
/// sample sizes hold: the last stts entry's count plus one.
void mp4_declaring_one_more_frame(const std::string& from, const std::string& to) {
  std::string d = read_bytes(from);
  const size_t stts = d.find("stts");
  ASSERT_NE(stts, std::string::npos);
  const uint32_t entries = be32(d, stts + 8);
  ASSERT_GT(entries, 0u);
  const size_t last = stts + 12 + (entries - 1) * 8;
  put_be32(d, last, be32(d, last) + 1);
  write_bytes(to, d);
}

/// `from` with the bytes of its last video packet (in file order) set to 0xFF: the packet reads,
/// its frame does not decode.
void corrupt_last_video_packet(const std::string& from, const std::string& to) {
  AVFormatContext* raw = nullptr;
  ASSERT_GE(avformat_open_input(&raw, from.c_str(), nullptr, nullptr), 0);
  av::InputFormatPtr format(raw);
  ASSERT_GE(avformat_find_stream_info(format.get(), nullptr), 0);
  const int stream = av_find_best_stream(format.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  ASSERT_GE(stream, 0);
  av::PacketPtr packet = av::make_packet();
  int64_t pos = -1, size = 0;
  while (av_read_frame(format.get(), packet.get()) >= 0) {
    if (packet->stream_index == stream && packet->pos > pos) {
      pos = packet->pos;
      size = packet->size;
    }
    av_packet_unref(packet.get());
  }
  ASSERT_GT(pos, 0);
  std::string d = read_bytes(from);
  std::memset(&d[static_cast<size_t>(pos)], 0xFF, static_cast<size_t>(size));
  write_bytes(to, d);
}

/// What `ffprobe -count_frames` reads of the first video stream (frames the decoder outputs).
int64_t ffprobe_count_frames(const std::string& path) {
  const auto r = holo::testing::run_command(
      "ffprobe -v quiet -count_frames -select_streams v:0 "
      "-show_entries stream=nb_read_frames -of csv=p=0 " + path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return std::atoll(r.output.c_str());
}

bool has_encoder(const std::string& name) {
  static const std::string encoders =
      holo::testing::run_command("ffmpeg -hide_banner -encoders").output;
  return encoders.find(" " + name + " ") != std::string::npos;
}

std::vector<int64_t> codes(const FrameBuffer& b) {
  std::vector<int64_t> out;
  for (int64_t t = 0; t < b.count; ++t)
    out.push_back(read_frame_code(b.frame(t), b.width, b.height));
  return out;
}

struct RealWorldCase {
  std::string name;     ///< the file's name, and the test's
  std::string encoder;  ///< an ffmpeg encoder it needs, or ""
  /// Makes the file at `path` from `src` (48 coded frames, H.264, keyframe every 8, B-frames)
  /// and `src_no_b` (the same without B-frames, so that the last packet is the last frame).
  std::function<void(const std::string& src, const std::string& src_no_b, const std::string& path)>
      make;
  std::string warning;     ///< what the probe's warning (VideoInfo::shortfall) holds; "" for none
  int64_t declared;        ///< declared_frames the probe reports when it warns
  bool shortfall_at_open;  ///< the frame table already knows (no decoding needed)
};

void ffmpeg(const std::string& args) {
  const auto made = holo::testing::run_command("ffmpeg -v error -y " + args);
  ASSERT_EQ(made.exit_code, 0) << args << "\n" << made.output;
}

std::vector<RealWorldCase> real_world_cases() {
  return {
      {"theora.ogv", "libtheora",
       [](const std::string& src, const std::string&, const std::string& path) {
         ffmpeg("-i " + src + " -c:v libtheora -q:v 10 " + path);
       },
       "", 0, false},
      {"vp9.avi", "libvpx-vp9",
       [](const std::string& src, const std::string&, const std::string& path) {
         // Alternate reference frames: hidden frames packed with the next shown one.
         ffmpeg("-i " + src + " -c:v libvpx-vp9 -b:v 1M -g 8 -auto-alt-ref 1 -lag-in-frames 16 " +
                path);
       },
       "", 0, false},
      {"one_more.avi", "mpeg4",
       [](const std::string& src, const std::string&, const std::string& path) {
         const std::string whole = path + ".whole.avi";
         ffmpeg("-i " + src + " -c:v mpeg4 -q:v 2 -bf 0 " + whole);
         avi_declaring_one_more_frame(whole, path);
         fs::remove(whole);
       },
       "the container lists 49 frames, 48 can be read", 49, true},
      {"one_more.mp4", "",
       [](const std::string& src, const std::string&, const std::string& path) {
         mp4_declaring_one_more_frame(src, path);
       },
       "the container lists 49 frames, 48 can be read", 49, true},
      {"last_frame_broken.mp4", "",
       [](const std::string&, const std::string& src_no_b, const std::string& path) {
         corrupt_last_video_packet(src_no_b, path);
       },
       "the last 1 of 48 frames does not decode", 48, false},
      {"cut_by_copy.mp4", "",
       [](const std::string& src, const std::string&, const std::string& path) {
         // Stream copy from 1.3 s: the file starts at the keyframe before, and its edit list
         // leaves out the frames before 1.3 s.
         ffmpeg("-ss 1.3 -i " + src + " -c copy " + path);
       },
       "", 0, false},
  };
}

class RealWorld : public ::testing::TestWithParam<RealWorldCase> {};

TEST_P(RealWorld, FoundCountedAsFfprobeAndUsedWithAWarningWhereItDeclaresMore) {
  const RealWorldCase& c = GetParam();
  if (!c.encoder.empty() && !has_encoder(c.encoder))
    GTEST_SKIP() << "this ffmpeg has no " << c.encoder;
  const fs::path dir = holo::testing::temp_dir();
  const std::string src = (dir / "src" / "src.mp4").string(),
                    src_no_b = (dir / "src" / "src_no_b.mp4").string();
  fs::create_directories(dir / "src");
  fs::create_directories(dir / "videos");
  holo::testing::write_coded_video(src, 48, VideoWriterOptions().set_gop(8).set_bframes(2));
  holo::testing::write_coded_video(src_no_b, 48, VideoWriterOptions().set_gop(8).set_bframes(0));
  const std::string path = (dir / "videos" / c.name).string();
  c.make(src, src_no_b, path);
  if (HasFatalFailure()) return;

  // The folder scan finds it by its content.
  const ScanResult scan = scan_videos({(dir / "videos").string()});
  EXPECT_THAT(scan.videos, ::testing::ElementsAre(path));
  EXPECT_TRUE(scan.skipped.empty());

  // The probe counts the frames ffprobe counts, and warns where the file declares more.
  const int64_t expected = ffprobe_count_frames(path);
  ASSERT_GT(expected, 0);
  const ProbeResult probed = probe_video(path);
  EXPECT_TRUE(probed.ok()) << probed.status;
  EXPECT_EQ(probed.frames, expected);
  EXPECT_EQ(probed.warning, c.warning);
  if (!c.warning.empty()) EXPECT_EQ(probed.declared_frames, c.declared);

  // The readable frames decode, each the frame it is named (the codes drawn into them).
  auto d = open_decoder(path, DecoderOptions());
  EXPECT_EQ(d->info().shortfall, c.shortfall_at_open ? c.warning : "");
  EXPECT_FALSE(d->info().truncated()) << d->info().truncation;
  std::vector<int64_t> all(static_cast<size_t>(probed.frames));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  const std::vector<int64_t> got = codes(d->decode(all, 0));
  ASSERT_FALSE(got.empty());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i], got[0] + static_cast<int64_t>(i)) << c.name << " frame " << i;
  if (c.name != "cut_by_copy.mp4") EXPECT_EQ(got[0], 0);

  // The manifest carries the warning; the loader uses the file, with the manifest and, where
  // the frame table alone tells what can be read, without it. A clip of more frames than the
  // video has reads every frame (the last one repeats).
  const std::string manifest = (dir / "manifest.json").string();
  write_manifest(manifest, {probed});
  EXPECT_EQ(read_manifest(manifest).at(path).warning, c.warning);
  Recipe r;
  r.data.dataset = "folder";
  r.data.root = (dir / "videos").string();
  r.sampling.num_frames = 64;
  r.sampling.stride = 1;
  r.sampling.test_clips = 1;
  r.sampling.test_crops = 1;
  r.transform.crop_size = 32;
  r.transform.test_scale = 32;
  r.loader.batch_size = 1;
  r.loader.workers = 0;
  for (const bool with_manifest : {true, false}) {
    if (!with_manifest && c.name == "last_frame_broken.mp4") continue;  // only a decode finds it
    r.data.manifest = with_manifest ? manifest : "";
    auto ds = make_dataset(r, "test");
    ASSERT_EQ(ds->records().size(), 1u);
    EXPECT_TRUE(ds->known_bad().empty());
    EXPECT_EQ(ds->records()[0].frames, with_manifest ? expected : 0);
    ClipLoader loader(ds, r, LoaderMode::kTest, 0, 1);
    int64_t clips = 0;
    while (auto b = loader.next()) clips += b->clips.size(0);
    EXPECT_EQ(clips, 1) << (with_manifest ? "with" : "without") << " the manifest";
    EXPECT_TRUE(loader.quarantined().empty())
        << (with_manifest ? "with" : "without")
        << " the manifest: " << loader.quarantined()[0].reason;
  }
}

INSTANTIATE_TEST_SUITE_P(Files, RealWorld, ::testing::ValuesIn(real_world_cases()),
                         [](const ::testing::TestParamInfo<RealWorldCase>& info) {
                           std::string n = info.param.name;
                           for (auto& ch : n)
                             ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return n;
                         });

// A file that declares more frames than can be read is used only above
// data.min_readable_fraction of them; below, the loader quarantines it with a message that
// names the file, both counts and the key, and a manifest's entry leaves it out.
TEST(RealWorldFraction, FewerReadableFramesThanTheFractionAreQuarantinedNamingTheKey) {
  const fs::path dir = holo::testing::temp_dir();
  fs::create_directories(dir / "videos");
  const std::string src = (dir / "src.mp4").string(),
                    path = (dir / "videos" / "one_more.mp4").string();
  holo::testing::write_coded_video(src, 24, VideoWriterOptions().set_gop(8));
  mp4_declaring_one_more_frame(src, path);
  holo::testing::write_coded_video((dir / "videos" / "whole.mp4").string(), 24);
  Recipe r;
  r.data.dataset = "folder";
  r.data.root = (dir / "videos").string();
  r.data.min_readable_fraction = 0.99;  // 24 of 25 is 0.96
  r.data.max_bad_fraction = 1.0;
  r.sampling.num_frames = 4;
  r.transform.crop_size = 32;
  r.transform.train_scale_min = 34;
  r.transform.train_scale_max = 40;
  r.loader.batch_size = 1;
  r.loader.workers = 0;
  auto ds = make_dataset(r, "train");
  ASSERT_EQ(ds->records().size(), 2u);
  ClipLoader loader(ds, r, LoaderMode::kTrain, 0, 1);
  while (loader.next()) {
  }
  ASSERT_EQ(loader.quarantined().size(), 1u);
  EXPECT_EQ(loader.quarantined()[0].path, path);
  EXPECT_EQ(
      loader.quarantined()[0].reason,
      "the container lists 25 frames, 24 can be read; 24 of the 25 frames it declares can be read "
      "(0.96), fewer than data.min_readable_fraction = 0.99");
  // The same through the manifest: left out before training, with the same words.
  const std::string manifest = (dir / "manifest.json").string();
  write_manifest(manifest, {probe_video(path)});
  r.data.manifest = manifest;
  ds = make_dataset(r, "train");
  ASSERT_EQ(ds->records().size(), 1u);
  EXPECT_EQ(ds->records()[0].id, "whole");
  ASSERT_EQ(ds->known_bad().size(), 1u);
  EXPECT_EQ(ds->known_bad()[0], path + ": " + loader.quarantined()[0].reason);
  // At the default (0.5) it is used.
  r.data.min_readable_fraction = 0.5;
  EXPECT_EQ(make_dataset(r, "train")->records().size(), 2u);
}

// Folder scans judge every file by its content and list the ones that are not videos with why;
// a manifest answers for the files it lists unchanged, without opening them.
TEST(RealWorldScan, FilesThatAreNotVideosAreListedAsSkippedWithTheirReason) {
  const fs::path dir = holo::testing::temp_dir();
  fs::create_directories(dir / "in");
  const fs::path in = dir / "in";
  ffmpeg("-f lavfi -i sine=d=1 -c:a aac " +
         (in / "sound.mp4").string());  // audio only, a video's name
  ffmpeg("-f lavfi -i sine=d=1 -c:a libvorbis " + (in / "sound.ogg").string());
  ffmpeg("-f lavfi -i testsrc=size=64x48 -frames:v 1 " + (in / "still.png").string());
  ffmpeg("-f lavfi -i testsrc=size=64x48 -frames:v 1 " + (in / "still.jpg").string());
  ffmpeg("-f lavfi -i testsrc=size=64x48:rate=5 -frames:v 1 " + (in / "still.gif").string());
  ffmpeg("-f lavfi -i testsrc=size=64x48:rate=5 -frames:v 5 " + (in / "moving.gif").string());
  ffmpeg("-f lavfi -i sine=d=1 -f lavfi -i testsrc=size=64x48 -map 0 -map 1 -frames:v 1 -t 1 "
         "-c:v mjpeg -disposition:v attached_pic " + (in / "song.mp3").string());
  holo::testing::write_text_file((in / "notes.txt").string(), "labels and notes\n");
  holo::testing::write_text_file((in / "readme.nfo").string(), "text that the tty demuxer opens\n");
  holo::testing::write_text_file((in / "empty.avi").string(), "");
  holo::testing::write_coded_video((in / "clip.mp4").string(), 8);
  fs::copy_file(in / "clip.mp4", in / "no_extension");
  if (HasFatalFailure()) return;

  const ScanResult scan = scan_videos({in.string()});
  EXPECT_THAT(scan.videos,
              ::testing::ElementsAre((in / "clip.mp4").string(), (in / "moving.gif").string(),
                                     (in / "no_extension").string()));
  std::map<std::string, std::string> why;
  for (const auto& s : scan.skipped) {
    EXPECT_TRUE(s.skipped);
    EXPECT_GT(s.mtime, 0);
    why[fs::path(s.path).filename().string()] = s.status;
  }
  EXPECT_EQ(why.size(), 9u);
  EXPECT_EQ(why["sound.mp4"], "audio only (no video stream)");
  EXPECT_EQ(why["sound.ogg"], "audio only (no video stream)");
  EXPECT_EQ(why["song.mp3"], "audio only (no video stream; its picture is a cover)");
  EXPECT_THAT(why["still.png"], HasSubstr("an image ("));
  EXPECT_THAT(why["still.jpg"], HasSubstr("an image ("));
  EXPECT_EQ(why["still.gif"], "a still image (gif, one frame), not a video");
  EXPECT_THAT(why["notes.txt"], HasSubstr("not a readable container"));
  EXPECT_EQ(why["readme.nfo"], "text (the tty demuxer draws it as pictures), not a video");
  EXPECT_EQ(why["empty.avi"], "zero-byte file");
  // The decoder agrees: audio with a cover picture is not a one-frame video.
  EXPECT_THAT([&] { open_decoder((in / "song.mp3").string(), DecoderOptions()); },
              ::testing::ThrowsMessage<DecodeError>(
                  HasSubstr("audio only (no video stream; its picture is a cover)")));

  // With a manifest listing every file, unchanged files are judged by their entries: a
  // skipped entry stays skipped with its reason, a probed video stays a video.
  std::vector<ProbeResult> entries = scan.skipped;
  for (const auto& v : scan.videos) entries.push_back(probe_video(v));
  for (auto& e : entries) {
    if (fs::path(e.path).filename() == "notes.txt") e.status = "as the manifest says";
  }
  const std::string manifest = (dir / "manifest.json").string();
  write_manifest(manifest, entries);
  const auto cache = read_manifest(manifest);
  EXPECT_TRUE(cache.at((in / "notes.txt").string()).skipped);
  const ScanResult again = scan_videos({in.string()}, &cache);
  EXPECT_EQ(again.videos, scan.videos);
  ASSERT_EQ(again.skipped.size(), 9u);
  for (const auto& s : again.skipped) {
    if (fs::path(s.path).filename() == "notes.txt") EXPECT_EQ(s.status, "as the manifest says");
  }
  // A file changed since (its time) is opened again.
  struct utimbuf times {};
  times.actime = times.modtime = 1600000000;
  ASSERT_EQ(::utime((in / "notes.txt").c_str(), &times), 0);
  for (const auto& s : scan_videos({in.string()}, &cache).skipped) {
    if (fs::path(s.path).filename() == "notes.txt")
      EXPECT_THAT(s.status, HasSubstr("not a readable container"));
  }
  // The folder dataset reads the same list.
  Recipe r;
  r.data.dataset = "folder";
  r.data.root = in.string();
  const auto ds = make_dataset(r, "train");
  ASSERT_EQ(ds->records().size(), 3u);
  EXPECT_EQ(ds->records()[1].id, "moving");
}

// The manifest's mtime is the file's st_mtime in Unix seconds, the time a file changed is
// compared by.
TEST(RealWorldProbe, ManifestTimesAreUnixSeconds) {
  const fs::path dir = holo::testing::temp_dir();
  const std::string path = (dir / "v.mp4").string();
  holo::testing::write_coded_video(path, 8);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  const ProbeResult now = probe_video(path);
  EXPECT_EQ(now.mtime, static_cast<int64_t>(st.st_mtime));
  EXPECT_NEAR(static_cast<double>(now.mtime), static_cast<double>(std::time(nullptr)), 3600.0);
  struct utimbuf times {};
  times.actime = times.modtime = 1700000000;  // 2023-11-14 22:13:20 UTC
  ASSERT_EQ(::utime(path.c_str(), &times), 0);
  EXPECT_EQ(probe_video(path).mtime, 1700000000);
  EXPECT_EQ(file_mtime(path), 1700000000);
  EXPECT_EQ(file_mtime((dir / "missing.mp4").string()), -1);
  // Written and read back as such.
  const std::string manifest = (dir / "manifest.json").string();
  write_manifest(manifest, {probe_video(path)});
  EXPECT_EQ(read_manifest(manifest).at(path).mtime, 1700000000);
  const auto text = read_bytes(manifest);
  EXPECT_THAT(text, HasSubstr("\"mtime\": 1700000000"));
}

// `holo data probe` on a path that does not exist fails (exit 1) naming it, instead of listing
// it as a missing video and succeeding.
TEST(RealWorldProbe, ProbeCommandOnAMissingPathFailsNamingIt) {
  const fs::path dir = holo::testing::temp_dir();
  const std::string missing = (dir / "nonexistent").string();
  const auto r =
      holo::testing::run_command(holo::testing::holo_binary() + " data probe " + missing);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no such file or folder: " + missing));
  // With a folder of videos and other files: the skipped ones are listed and counted.
  holo::testing::write_coded_video((dir / "a.mp4").string(), 8);
  holo::testing::write_text_file((dir / "notes.txt").string(), "notes\n");
  const auto ok = holo::testing::run_command(holo::testing::holo_binary() + " data probe " +
                                             dir.string() + " --out " + (dir / "m.json").string());
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output,
              HasSubstr("skipped " + (dir / "notes.txt").string() + ": not a readable container"));
  EXPECT_THAT(ok.output, HasSubstr("1 files: 1 ok"));
  EXPECT_THAT(ok.output, HasSubstr("1 other files skipped as not videos"));
}

}  // namespace
}  // namespace holo::pipeline
