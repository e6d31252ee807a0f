// Frame-exact decoding: every returned frame carries its own index, checked after seeks,
// strides, repeats, scaling and on variable-frame-rate files, for both encoders.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <random>

extern "C" {
#include <libavformat/avformat.h>
}

#include "pipeline/decode_floor.h"
#include "pipeline/decoder.h"
#include "pipeline/video_writer.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/test_util.h"

namespace holo::pipeline {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

std::vector<int64_t> codes(const FrameBuffer& b) {
  std::vector<int64_t> out;
  for (int64_t t = 0; t < b.count; ++t) out.push_back(read_frame_code(b.frame(t), b.width, b.height));
  return out;
}

struct Case {
  std::string codec;
  bool vfr;
};

class DecoderExact : public ::testing::TestWithParam<Case> {};

TEST_P(DecoderExact, EveryRequestReturnsExactlyTheAskedFrames) {
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/v.mp4";
  const int64_t n = 61;
  holo::testing::write_coded_video(
      path, n, VideoWriterOptions().set_codec(GetParam().codec).set_gop(10).set_variable_rate(GetParam().vfr));
  auto d = open_decoder(path, DecoderOptions().set_threads(2));
  const VideoInfo& info = d->info();
  ASSERT_EQ(info.frames, n);
  EXPECT_EQ(info.variable_rate, GetParam().vfr);
  EXPECT_EQ(info.width, 128);
  EXPECT_EQ(info.height, 96);
  EXPECT_EQ(info.codec, GetParam().codec == "mpeg4" ? "mpeg4" : "h264");
  EXPECT_GE(info.keyframes.size(), 6u);

  std::vector<int64_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  EXPECT_EQ(codes(d->decode(all, 0)), all);

  // Backward seeks, forward skips over keyframes, repeats, stride and the last frame.
  const std::vector<std::vector<int64_t>> requests = {
      {40, 41, 42}, {3}, {57, 59, 60}, {0, 30, 60}, {25, 25, 26}, {12, 2, 50}, {7, 9, 11, 13, 15, 17, 19, 21}};
  for (const auto& r : requests) {
    EXPECT_EQ(codes(d->decode(r, 0)), r) << "request starting " << r[0];
  }
  // Scaled: the short side is exact and the codes survive.
  const FrameBuffer small = d->decode({5, 44}, 48);
  EXPECT_EQ(small.height, 48);
  EXPECT_EQ(small.width, 64);
  EXPECT_EQ(codes(small), (std::vector<int64_t>{5, 44}));
}

INSTANTIATE_TEST_SUITE_P(Codecs, DecoderExact,
                         ::testing::Values(Case{"auto", false}, Case{"auto", true}, Case{"mpeg4", false},
                                           Case{"mpeg4", true}),
                         [](const auto& info) {
                           return (info.param.codec == "auto" ? std::string("h264") : info.param.codec) +
                                  (info.param.vfr ? "_vfr" : "_cfr");
                         });

// Widths that are not a multiple of swscale's vector width, and a request whose frames are
// decoded in another order than they sit in the clip: every frame equals the same frame decoded
// alone (swscale writing past a row's end would spill into the neighbouring frame).
TEST(Decoder, OddWidthsAndOutOfOrderRequestsKeepFramesApart) {
  const auto dir = holo::testing::temp_dir();
  struct Size { int w, h, short_side; };
  // 1280x720 is large enough for swscale's slice threads (see FrameConverter::convert in
  // pipeline/libav_decoder.cc).
  for (const Size z : {Size{40, 32, 0}, Size{40, 32, 27}, Size{128, 96, 37}, Size{48, 34, 0}, Size{1280, 720, 75}}) {
    const std::string path = dir + "/v" + std::to_string(z.w) + "x" + std::to_string(z.h) + ".mp4";
    holo::testing::write_coded_video(path, 12, VideoWriterOptions().set_size(z.w, z.h).set_gop(4));
    for (const int threads : {1, 2}) {  // 2: swscale's slice threads write neighbouring bands
      auto d = open_decoder(path, DecoderOptions().set_threads(threads));
      const std::vector<int64_t> request = {9, 2, 5};
      const FrameBuffer clip = d->decode(request, z.short_side);
      const size_t bytes = static_cast<size_t>(clip.width) * clip.height * 3;
      ASSERT_EQ(clip.data.size(), bytes * request.size());
      for (size_t s = 0; s < request.size(); ++s) {
        auto alone_decoder = open_decoder(path, DecoderOptions().set_threads(threads));
        const FrameBuffer alone = alone_decoder->decode({request[s]}, z.short_side);
        ASSERT_EQ(alone.width, clip.width);
        const uint8_t* got = clip.frame(static_cast<int64_t>(s));
        EXPECT_EQ(std::vector<uint8_t>(got, got + bytes), std::vector<uint8_t>(alone.frame(0), alone.frame(0) + bytes))
            << path << " short side " << z.short_side << ", " << threads << " threads: frame " << request[s]
            << " differs";
      }
    }
  }
}

// Frames that are not asked for and that no frame refers to are dropped by the codec, not
// decoded; what comes back is unchanged, later requests for the dropped frames seek, and a
// request that goes on where the last one ended does not.
class DecoderDiscard : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderDiscard, UnrequestedNonReferenceFramesAreNotDecoded) {
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/b.mp4";
  holo::testing::write_coded_video(
      path, 90, VideoWriterOptions().set_codec(GetParam()).set_gop(30).set_bframes(3).set_adaptive_bframes(false));
  auto d = open_decoder(path, DecoderOptions().set_threads(2));
  const std::vector<int64_t> keys = d->info().keyframes;
  ASSERT_GE(keys.size(), 3u);
  const int64_t k1 = keys[1];
  const int64_t k2 = keys[2];
  ASSERT_GE(k2 - k1, 20);

  std::vector<int64_t> stride3;
  for (int64_t i = k1 + 1; i <= k2 - 2; i += 3) stride3.push_back(i);
  const int64_t last = stride3.back();
  const DecodeCounters before = d->counters();
  EXPECT_EQ(codes(d->decode(stride3, 0)), stride3);
  const DecodeCounters after = d->counters();
  EXPECT_EQ(after.seeks - before.seeks, 1);
  // The seek starts at the keyframe before the first frame: the packets of frames k1..last
  // and the few that reordering and frame threads read ahead, not a group of pictures more.
  EXPECT_LE(after.packets - before.packets, last - k1 + 1 + 8);
  EXPECT_GT(after.discardable - before.discardable, 0);
  // Frames k1..last had to be decoded without discarding; some B-frames among them were not.
  EXPECT_LT(after.decoded - before.decoded, last - k1 + 1) << "nothing was discarded";
  EXPECT_EQ(after.converted - before.converted, static_cast<int64_t>(stride3.size()));

  // Frames dropped above come back exact (behind the read position: a seek).
  const std::vector<int64_t> between = {k1 + 2, k1 + 3, k1 + 5, last - 2, last - 1};
  EXPECT_EQ(codes(d->decode(between, 0)), between);
  // Going on from the end of a request decodes forward without a seek.
  const int64_t seeks = d->counters().seeks;
  std::vector<int64_t> next;
  for (int64_t i = last; i < k2; ++i) next.push_back(i);
  EXPECT_EQ(codes(d->decode(next, 0)), next);
  const std::vector<int64_t> after_key = {k2, k2 + 1, k2 + 2};
  EXPECT_EQ(codes(d->decode(after_key, 0)), after_key);
  EXPECT_EQ(d->counters().seeks, seeks) << "frames after a request's last one are decoded, not dropped";

  // Every frame asked for: nothing is discarded.
  std::vector<int64_t> all(90);
  for (int64_t i = 0; i < 90; ++i) all[i] = i;
  const int64_t discardable = d->counters().discardable;
  EXPECT_EQ(codes(d->decode(all, 0)), all);
  EXPECT_EQ(d->counters().discardable, discardable);
}

// A clip whose stride steps over keyframes decodes through them instead of seeking to each (a
// seek restarts decoding at a keyframe, and in mp4 lands a group of pictures early); a target
// whose keyframe lies more than a few frames ahead is still reached by a seek.
TEST(Decoder, StridesOverKeyframesDecodeForward) {
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/g8.mp4";
  holo::testing::write_coded_video(path, 80, VideoWriterOptions().set_gop(8).set_bframes(2));
  auto d = open_decoder(path, DecoderOptions().set_threads(1));
  ASSERT_EQ(d->info().keyframes, (std::vector<int64_t>{0, 8, 16, 24, 32, 40, 48, 56, 64, 72}));
  for (const int64_t stride : {2, 4}) {
    std::vector<int64_t> clip;
    for (int64_t i = 1; i < 40; i += stride) clip.push_back(i);
    const int64_t seeks = d->counters().seeks;
    EXPECT_EQ(codes(d->decode(clip, 0)), clip);
    EXPECT_EQ(d->counters().seeks - seeks, 1) << "stride " << stride;
  }
  // From frame 41 on, frame 60's keyframe (56) is 15 frames ahead: a seek skips them.
  EXPECT_EQ(codes(d->decode({41}, 0)), std::vector<int64_t>{41});
  const DecodeCounters before = d->counters();
  EXPECT_EQ(codes(d->decode({60}, 0)), std::vector<int64_t>{60});
  EXPECT_EQ(d->counters().seeks - before.seeks, 1);
  EXPECT_LE(d->counters().decoded - before.decoded, 8);
}

// A seek that lands on an H.264 IDR leaves the codec as it is instead of resetting it (a reset
// makes the NVDEC hwaccel create its GPU decoder again, docs/pipeline.md): the frames still in
// the codec from before the seek come out first and are dropped, never returned for a
// requested frame. Keyframes that are not IDRs (open groups of pictures) and other codecs get
// the reset. Both NAL unit layouts: length-prefixed (mp4) and start codes (MPEG-TS).
TEST(Decoder, SeeksToIdrFramesKeepTheCodec) {
  const auto dir = holo::testing::temp_dir();
  const std::vector<std::vector<int64_t>> requests = {{60, 62, 64, 66}, {20, 22, 24}, {5}, {44, 45}, {70}, {9, 10}};
  const auto frames_equal = [](const FrameBuffer& a, int64_t i, const FrameBuffer& b, int64_t j) {
    const size_t bytes = static_cast<size_t>(a.width) * a.height * 3;
    return std::memcmp(a.frame(i), b.frame(j), bytes) == 0;
  };
  for (const std::string codec : {"auto", "mpeg4"}) {
    const std::string path = dir + "/g8_" + codec + ".mp4";
    holo::testing::write_coded_video(
        path, 80, VideoWriterOptions().set_codec(codec).set_gop(8).set_bframes(2).set_adaptive_bframes(false));
    for (const int threads : {1, 2}) {
      auto d = open_decoder(path, DecoderOptions().set_threads(threads));
      for (const auto& r : requests) EXPECT_EQ(codes(d->decode(r, 0)), r) << path << ", " << threads << " threads";
      const DecodeCounters c = d->counters();
      EXPECT_GE(c.seeks, static_cast<int64_t>(requests.size())) << path;
      if (codec == "auto") {
        EXPECT_EQ(c.flushes, 0) << path << ", " << threads << " threads";
        // With B-frames the codec holds frames back for reordering: some were in it at a seek.
        EXPECT_GT(c.stale, 0) << path << ", " << threads << " threads";
      } else {
        EXPECT_EQ(c.flushes, c.seeks) << path;
        EXPECT_EQ(c.stale, 0) << path;
      }
    }
  }

  const std::string encoders = holo::testing::run_command("ffmpeg -hide_banner -encoders").output;
  ASSERT_NE(encoders.find(" libx264 "), std::string::npos) << "this ffmpeg has no libx264";
  struct File { std::string name, args; bool idr; };
  for (const File& f : {File{"annexb.ts", "-g 25 -bf 3", true},
                        File{"opengop.mkv", "-bf 3 -x264-params open-gop=1:keyint=25", false}}) {
    const std::string path = dir + "/" + f.name;
    const auto made = holo::testing::run_command("ffmpeg -v error -y -f lavfi -i testsrc2=size=160x120:rate=25 -t 4 "
                                                 "-c:v libx264 " + f.args + " " + path);
    ASSERT_EQ(made.exit_code, 0) << made.output;
    auto reference = open_decoder(path, DecoderOptions().set_threads(1));
    const int64_t n = reference->info().frames;
    ASSERT_EQ(n, 100) << path;
    ASSERT_GE(reference->info().keyframes.size(), 3u) << path;
    std::vector<int64_t> all(n);
    for (int64_t i = 0; i < n; ++i) all[i] = i;
    const FrameBuffer full = reference->decode(all, 0);
    for (const int threads : {1, 2}) {
      auto d = open_decoder(path, DecoderOptions().set_threads(threads));
      // Starts after the first group of pictures and clips ending well before the end of the
      // file (a codec told the stream ended must be reset).
      for (const int64_t start : {60, 30, 52, 27, 33, 45}) {
        std::vector<int64_t> r;
        for (int64_t i = start; i < start + 12; i += 3) r.push_back(i);
        const FrameBuffer b = d->decode(r, 0);
        for (size_t k = 0; k < r.size(); ++k) {
          EXPECT_TRUE(frames_equal(b, static_cast<int64_t>(k), full, r[k]))
              << path << ", " << threads << " threads: frame " << r[k] << " of the clip from " << start;
        }
      }
      const DecodeCounters c = d->counters();
      EXPECT_GE(c.seeks, 4) << path;
      EXPECT_EQ(c.flushes, f.idr ? 0 : c.seeks) << path << ", " << threads << " threads";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, DecoderDiscard, ::testing::Values("libx264", "mpeg4"),
                         [](const auto& info) { return info.param == "libx264" ? std::string("h264") : info.param; });

// The frame numbers from, from + 1, ..., n of them.
std::vector<int64_t> consecutive(int64_t from, int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = from + i;
  return v;
}

// Opens `path` with 1 and 2 threads: it has `frames` frames, a full decode gives them all in
// order, and so does each request of frame numbers (repeats, reversed, strided, far apart)
// built from the last frame L: {0}, {L}, {L-23, L-21, L-19}, {L-24}, {3}, {31, 30, 29},
// {12, 12, 13}, {L-1, L}, {1, L-3}. `check` looks at each decoder's info first.
void expect_every_request_exact(const std::string& path, int64_t frames,
                                const std::function<void(const VideoInfo&)>& check) {
  const int64_t last = frames - 1;
  for (const int threads : {1, 2}) {
    auto d = open_decoder(path, DecoderOptions().set_threads(threads));
    ASSERT_EQ(d->info().frames, frames) << path;
    check(d->info());
    EXPECT_EQ(codes(d->decode(consecutive(0, frames), 0)), consecutive(0, frames)) << path;
    const std::vector<std::vector<int64_t>> requests = {
        {0}, {last}, {last - 23, last - 21, last - 19}, {last - 24}, {3}, {31, 30, 29},
        {12, 12, 13}, {last - 1, last}, {1, last - 3}};
    for (const std::vector<int64_t>& r : requests) {
      EXPECT_EQ(codes(d->decode(r, 0)), r)
          << path << " request starting " << r[0] << ", " << threads << " threads";
    }
  }
}

// AVI stores frames in decode order with decode timestamps only; with B-frames the decoder
// stamps each frame with a later packet's timestamp. Frames are still exact, by index.
TEST(Decoder, AviWithBFramesIsFrameExact) {
  const auto dir = holo::testing::temp_dir();
  for (const std::string codec : {"mpeg4", "libx264"}) {
    const std::string path = dir + "/" + codec + ".avi";
    holo::testing::write_coded_video(
        path, 45, VideoWriterOptions().set_codec(codec).set_gop(10).set_bframes(2).set_adaptive_bframes(false));
    expect_every_request_exact(path, 45, [&](const VideoInfo& info) {
      EXPECT_TRUE(info.decode_order_timestamps) << path;
    });
  }
  // An mp4 carries presentation timestamps: numbered by them, seeking to any keyframe.
  const std::string mp4 = dir + "/b.mp4";
  holo::testing::write_coded_video(mp4, 20, VideoWriterOptions().set_bframes(2));
  EXPECT_FALSE(open_decoder(mp4, DecoderOptions())->info().decode_order_timestamps);
}

// MPEG-1/2 in program streams: some frames come out of the demuxer without a pts, some with
// another frame's (in the MPEG-2 .mpg here, an I-frame gets the pts of the B-frame after it,
// and a P-frame the dts of that B-frame). Frames are numbered by their place in display order,
// exact whatever the request.
TEST(Decoder, ProgramStreamsAreFrameExact) {
  const auto dir = holo::testing::temp_dir();
  const std::string mp4 = dir + "/src.mp4", mp4_25 = dir + "/src25.mp4";  // MPEG-1 has no 16 fps
  holo::testing::write_coded_video(mp4, 64, VideoWriterOptions().set_gop(8).set_bframes(2));
  holo::testing::write_coded_video(mp4_25, 64,
                                   VideoWriterOptions().set_fps(25).set_gop(8).set_bframes(2));
  for (const std::string args :
       {"-c:v mpeg2video -bf 2 -g 8 x.mpg", "-c:v mpeg2video -bf 2 -g 15 -f vob x.vob",
        "-c:v mpeg1video -bf 3 -g 12 x1.mpg"}) {
    const std::string path = dir + "/" + args.substr(args.rfind(' ') + 1);
    const auto made = holo::testing::run_command(
        "ffmpeg -v error -y -i " + (args.find("mpeg1") != std::string::npos ? mp4_25 : mp4) + " " +
        args.substr(0, args.rfind(' ') + 1) + path);
    ASSERT_EQ(made.exit_code, 0) << made.output;
    expect_every_request_exact(
        path, 64, [&](const VideoInfo& info) { EXPECT_FALSE(info.variable_rate) << path; });
  }
}

// Program streams as they are met: one cut out of a longer recording by stream copy starts on
// an open group of pictures, whose leading B-frames refer to a picture that is not in the file
// and never come out of the decoder (they get no frame index); two recordings joined at
// different aspect ratios make the decoder start over; and soft telecine (MPEG-2 pictures that
// repeat a field or frame) shows some frames longer than others, which the frame times follow
// (the parser's packet durations, not one frame period).
TEST(Decoder, ProgramStreamsCutFromRecordingsAndWithRepeatedPictures) {
  const auto dir = holo::testing::temp_dir();
  const std::string mp4 = dir + "/src.mp4";
  holo::testing::write_coded_video(mp4, 96, VideoWriterOptions().set_gop(8).set_bframes(2));
  const auto ffmpeg = [&](const std::string& args) {
    const auto made = holo::testing::run_command("ffmpeg -v error -y " + args);
    ASSERT_EQ(made.exit_code, 0) << args << "\n" << made.output;
  };

  // Open groups of pictures of 12 (ffmpeg's MPEG-2 default), copied from 2 s on (frame 32).
  ffmpeg("-i " + mp4 + " -c:v mpeg2video -bf 2 -g 12 -f vob " + dir + "/open.vob");
  ffmpeg("-ss 2 -i " + dir + "/open.vob -c copy -f vob " + dir + "/cut.vob");
  const std::string count_frames =
      "ffprobe -v error -count_frames -select_streams v -show_entries stream=nb_read_frames "
      "-of csv=p=0 ";
  const auto counted = holo::testing::run_command(count_frames + dir + "/cut.vob");
  ASSERT_EQ(counted.exit_code, 0) << counted.output;
  const int64_t decodable = std::stoll(counted.output);
  auto d = open_decoder(dir + "/cut.vob", DecoderOptions().set_threads(2));
  ASSERT_EQ(d->info().frames, decodable);
  const std::vector<int64_t> shown = codes(d->decode(consecutive(0, decodable), 0));
  ASSERT_FALSE(shown.empty());
  EXPECT_EQ(shown, consecutive(shown.front(), decodable)) << "frames in order, none missing";
  EXPECT_EQ(codes(d->decode({0, decodable - 1}, 0)),
            (std::vector<int64_t>{shown.front(), shown.back()}));

  // Two recordings joined end to end, the second at another aspect ratio (as a DVD switching
  // from 4:3 to 16:9): the decoder starts over at the second sequence header and never shows
  // the reference picture it held back from the first. Every frame that comes out is indexed,
  // in order, and a request gets the frames a full decode gives at those places.
  ffmpeg("-i " + mp4 + " -c:v mpeg2video -bf 2 -g 12 -aspect 4:3 -f vob " + dir + "/a.vob");
  ffmpeg("-i " + mp4 + " -c:v mpeg2video -bf 2 -g 12 -aspect 16:9 -f vob " + dir + "/b.vob");
  ASSERT_EQ(holo::testing::run_command("cat " + dir + "/a.vob " + dir + "/b.vob > " + dir +
                                       "/joined.vob")
                .exit_code,
            0);
  const auto joined_count = holo::testing::run_command(count_frames + dir + "/joined.vob");
  ASSERT_EQ(joined_count.exit_code, 0) << joined_count.output;
  const int64_t joined_frames = std::stoll(joined_count.output);
  EXPECT_LT(joined_frames, 2 * 96);
  auto j = open_decoder(dir + "/joined.vob", DecoderOptions().set_threads(2));
  ASSERT_EQ(j->info().frames, joined_frames);
  const std::vector<int64_t> joined = codes(j->decode(consecutive(0, joined_frames), 0));
  ASSERT_EQ(static_cast<int64_t>(joined.size()), joined_frames);
  size_t restart = 1;
  while (restart < joined.size() && joined[restart] == joined[restart - 1] + 1) ++restart;
  ASSERT_LT(restart, joined.size()) << "the second recording starts over";
  EXPECT_EQ(joined.front(), 0);
  EXPECT_EQ(joined.back(), 95);
  for (size_t i = restart + 1; i < joined.size(); ++i) EXPECT_EQ(joined[i], joined[i - 1] + 1) << i;
  const auto r = static_cast<int64_t>(restart);
  EXPECT_EQ(codes(j->decode({r + 5, r - 1, 3}, 0)),
            (std::vector<int64_t>{joined[restart + 5], joined[restart - 1], joined[3]}));

  // Soft telecine: every picture of an MPEG-2 elementary stream at 25 frames/s with an even
  // temporal reference (its place in its group of pictures, in display order) repeats its frame
  // (repeat_first_field in a progressive sequence, top_field_first clear: shown for two frame
  // periods); then the stream is copied into a program stream. The groups are closed, so a
  // picture is shown at its group's first frame plus its temporal reference.
  const std::string mp4_25 = dir + "/src25.mp4";
  holo::testing::write_coded_video(mp4_25, 96, VideoWriterOptions().set_fps(25).set_gop(8));
  ffmpeg("-i " + mp4_25 +
         " -c:v mpeg2video -bf 2 -g 8 -flags +cgop -sc_threshold 1000000000 -f mpeg2video " + dir +
         "/x.m2v");
  std::string es;
  {
    std::ifstream in(dir + "/x.m2v", std::ios::binary);
    es.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(es[i]); };
  std::vector<bool> repeated(96);
  int temporal_reference = -1, pictures = 0, group_start = 0;
  for (size_t i = 0; i + 8 < es.size(); ++i) {
    if (byte(i) != 0 || byte(i + 1) != 0 || byte(i + 2) != 1) continue;
    if (byte(i + 3) == 0xB8) group_start = pictures;
    if (byte(i + 3) == 0x00) {
      temporal_reference = byte(i + 4) << 2 | byte(i + 5) >> 6;
      ++pictures;
    }
    if (byte(i + 3) == 0xB5 && byte(i + 4) >> 4 == 8 && temporal_reference >= 0) {
      // Picture coding extension: byte 7 holds top_field_first (0x80), repeat_first_field (0x02).
      const bool repeat = temporal_reference % 2 == 0;
      es[i + 7] = static_cast<char>((byte(i + 7) & 0x7D) | (repeat ? 0x02 : 0));
      ASSERT_LT(group_start + temporal_reference, 96);
      repeated[static_cast<size_t>(group_start + temporal_reference)] = repeat;
      temporal_reference = -1;
    }
  }
  ASSERT_EQ(pictures, 96);
  const auto doubled = std::count(repeated.begin(), repeated.end(), true);
  ASSERT_GT(doubled, 40);
  std::ofstream(dir + "/tel.m2v", std::ios::binary) << es;
  ffmpeg("-i " + dir + "/tel.m2v -c copy -f vob " + dir + "/tel.vob");
  for (const int threads : {1, 2}) {
    auto t = open_decoder(dir + "/tel.vob", DecoderOptions().set_threads(threads));
    const VideoInfo& info = t->info();
    ASSERT_EQ(info.frames, 96);
    EXPECT_TRUE(info.variable_rate);
    for (int64_t i = 0; i + 1 < 96; ++i) {
      EXPECT_NEAR(info.frame_time(i + 1) - info.frame_time(i), repeated[i] ? 0.08 : 0.04, 1e-3)
          << "frame " << i;
    }
    EXPECT_NEAR(info.duration, doubled * 0.08 + (96 - doubled) * 0.04, 1e-3);
    EXPECT_EQ(codes(t->decode(consecutive(0, 96), 0)), consecutive(0, 96));
    EXPECT_EQ(codes(t->decode({70, 72, 74}, 0)), (std::vector<int64_t>{70, 72, 74}));
    EXPECT_EQ(t->info().frame_at(info.frame_time(51) + 0.01), 51);
  }
}

// Files from the ffmpeg command line's encoders, laid out as downloaded videos are (libx264's
// defaults, open GOPs, HEVC, VP9, MPEG-2 in a transport stream, MPEG-1 and MPEG-2 in program
// streams, MPEG-4 and H.264 in AVI, a variable frame rate, the BT.709 matrix, full range):
// every frame of a full decode equals ffmpeg's own decode of the file, and seeded random
// requests (any start, stride, length) equal the full decode. Encoders the local ffmpeg lacks are
// left out and named.
TEST(Decoder, FilesFromCommonEncodersMatchFfmpegFrameByFrame) {
  const auto dir = holo::testing::temp_dir();
  const std::string src = "-f lavfi -i testsrc2=size=160x120:rate=25 -t 4 ";
  struct File { std::string name, encoder, args; };
  const std::vector<File> files = {
      {"x264_bt709.mp4", "libx264",
       "-c:v libx264 -colorspace bt709 -color_primaries bt709 -color_trc bt709"},
      {"x264_full_range.mp4", "libx264", "-c:v libx264 -pix_fmt yuvj420p"},
      {"x264.mp4", "libx264", "-c:v libx264"},
      {"x264_opengop.mp4", "libx264", "-c:v libx264 -x264-params open-gop=1:keyint=30"},
      {"x264_g25.mkv", "libx264", "-c:v libx264 -g 25"},
      {"x264_vfr.mp4", "libx264",
       "-vf setpts='PTS+if(gte(N\\,50)\\,0.3/TB\\,0)' -fps_mode passthrough -c:v libx264"},
      {"x264.avi", "libx264", "-c:v libx264 -g 30"},
      {"mpeg4_b2.avi", "mpeg4", "-c:v mpeg4 -bf 2 -g 30"},
      {"hevc.mp4", "libx265", "-c:v libx265 -x265-params log-level=error:keyint=30"},
      {"vp9.webm", "libvpx-vp9", "-c:v libvpx-vp9 -g 40 -b:v 300k"},
      {"mpeg2.ts", "mpeg2video", "-c:v mpeg2video -bf 2 -g 30"},
      // Program streams: about one frame in five starts inside a PES packet and carries no
      // presentation timestamp of its own.
      {"mpeg2.mpg", "mpeg2video", "-c:v mpeg2video -bf 2 -g 30"},
      {"mpeg2_dvd.vob", "mpeg2video", "-c:v mpeg2video -bf 2 -g 15 -f vob"},
      {"mpeg1.mpg", "mpeg1video", "-c:v mpeg1video -bf 2 -g 12"},
  };
  const std::string encoders = holo::testing::run_command("ffmpeg -hide_banner -encoders").output;
  std::vector<std::string> skipped;
  for (const File& f : files) {
    if (encoders.find(" " + f.encoder + " ") == std::string::npos) {
      skipped.push_back(f.encoder);
      continue;
    }
    const std::string path = dir + "/" + f.name;
    const auto made = holo::testing::run_command("ffmpeg -v error -y " + src + f.args + " " + path);
    ASSERT_EQ(made.exit_code, 0) << made.output;
    const std::string raw = path + ".rgb";
    const auto ref = holo::testing::run_command("ffmpeg -v error -y -i " + path +
                                                " -fps_mode passthrough -pix_fmt rgb24 -f rawvideo " + raw);
    ASSERT_EQ(ref.exit_code, 0) << ref.output;
    std::ifstream in(raw, std::ios::binary);
    const std::vector<uint8_t> ffmpeg_frames((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

    auto full_decoder = open_decoder(path, DecoderOptions().set_threads(1));
    const int64_t n = full_decoder->info().frames;
    std::vector<int64_t> all(n);
    for (int64_t i = 0; i < n; ++i) all[i] = i;
    const FrameBuffer full = full_decoder->decode(all, 0);
    const size_t bytes = static_cast<size_t>(full.width) * full.height * 3;
    ASSERT_EQ(ffmpeg_frames.size(), bytes * n) << f.name << ": ffmpeg decoded another number of frames";
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(std::memcmp(full.frame(i), ffmpeg_frames.data() + i * bytes, bytes), 0)
          << f.name << ": frame " << i << " differs from ffmpeg's";
    }

    const FrameBuffer scaled = full_decoder->decode(all, 48);
    const size_t scaled_bytes = static_cast<size_t>(scaled.width) * scaled.height * 3;
    for (const int threads : {1, 2}) {
      auto d = open_decoder(path, DecoderOptions().set_threads(threads));
      std::mt19937_64 rng(static_cast<uint64_t>(threads) * 1000 + f.name.size());
      for (int r = 0; r < 40; ++r) {
        const int64_t start = static_cast<int64_t>(rng() % n);
        const int64_t stride = 1 + static_cast<int64_t>(rng() % 4), len = 1 + static_cast<int64_t>(rng() % 12);
        std::vector<int64_t> request;
        for (int64_t k = 0; k < len; ++k) request.push_back(std::min(n - 1, start + k * stride));
        const FrameBuffer b = d->decode(request, 48);
        for (size_t k = 0; k < request.size(); ++k) {
          ASSERT_EQ(std::memcmp(b.frame(static_cast<int64_t>(k)), scaled.frame(request[k]), scaled_bytes), 0)
              << f.name << ", " << threads << " threads: frame " << request[k] << " of request " << r;
        }
      }
    }
  }
  if (!skipped.empty()) std::cout << "encoders not in this ffmpeg, left out: " << ::testing::PrintToString(skipped) << "\n";
}

// swscale's slice threads (decoders with more than one thread) give the same bytes as one thread.
TEST(Decoder, ThreadedScalingEqualsOneThread) {
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/s.mp4";
  // Large enough for slice threads at every size below (one per 2^18 source and output pixels).
  holo::testing::write_coded_video(path, 8, VideoWriterOptions().set_size(1280, 720));
  auto one = open_decoder(path, DecoderOptions().set_threads(1));
  auto three = open_decoder(path, DecoderOptions().set_threads(3));
  for (const int short_side : {0, 112, 75, 240}) {
    const FrameBuffer a = one->decode({1, 6, 3}, short_side);
    const FrameBuffer b = three->decode({1, 6, 3}, short_side);
    ASSERT_EQ(a.width, b.width);
    ASSERT_EQ(a.height, b.height);
    EXPECT_TRUE(a.data == b.data) << "short side " << short_side;
    EXPECT_EQ(codes(b), (std::vector<int64_t>{1, 6, 3}));
  }
}

// Decoders with more than one thread convert frames in conversion threads while they decode
// (two of them with 6 threads or when asked for, finishing frames out of order): the bytes
// equal one thread's, for clips with repeats and out-of-order requests, sequential chunks and
// the unscaled frames.
TEST(Decoder, ConversionThreadsGiveTheBytesOfOne) {
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/c.mp4";
  holo::testing::write_coded_video(
      path, 72, VideoWriterOptions().set_size(320, 240).set_gop(8).set_bframes(2));
  std::vector<std::vector<int64_t>> requests = {
      {40, 42, 44, 46, 48, 50}, {3, 3, 1, 9, 2}, {71, 0, 35}};
  for (int64_t start = 0; start < 72; start += 32) {
    std::vector<int64_t> chunk;
    for (int64_t i = start; i < std::min<int64_t>(72, start + 32); ++i) chunk.push_back(i);
    requests.push_back(chunk);
  }
  auto one = open_decoder(path, DecoderOptions().set_threads(1));
  const std::vector<DecoderOptions> options = {
      DecoderOptions().set_threads(2), DecoderOptions().set_threads(6),
      DecoderOptions().set_threads(3).set_conversion_threads(2),
      DecoderOptions().set_threads(3).set_conversion_threads(0)};
  for (const DecoderOptions& o : options) {
    const std::string threads =
        std::to_string(o.threads) + " (" + std::to_string(o.conversion_threads) + " converting)";
    auto many = open_decoder(path, o);
    for (const int short_side : {0, 112}) {
      for (const auto& r : requests) {
        const FrameBuffer a = one->decode(r, short_side);
        const FrameBuffer b = many->decode(r, short_side);
        EXPECT_EQ(codes(b), r) << threads << " threads, short side " << short_side;
        EXPECT_TRUE(a.data == b.data)
            << threads << " threads, short side " << short_side << ", request from " << r[0];
      }
    }
    EXPECT_EQ(many->counters().converted, one->counters().converted) << threads << " threads";
    one = open_decoder(path, DecoderOptions().set_threads(1));
  }
  // Conversion threads come out of the decoder's threads: at least one must decode.
  try {
    open_decoder(path, DecoderOptions().set_threads(2).set_conversion_threads(2));
    ADD_FAILURE() << "2 conversion threads of 2 were accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("2 conversion threads need more decoder threads than that, not 2"));
  }
}

// A request that fails after some of its frames went to the conversion threads throws the
// frame's DecodeError, and the decoder goes on serving the next request. (Whether frames are
// still queued when it throws depends on timing: the failure comes after two seeks back.)
TEST(Decoder, FailingRequestWithFramesInConversionRecovers) {
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/m.mp4";
  holo::testing::write_coded_video(
      path, 40, VideoWriterOptions().set_codec("mpeg4").set_gop(8).set_bframes(0));
  // Blank frame 13's packet (a P-frame): the decoder finds no picture in it.
  int64_t pos = -1, size = 0;
  {
    AVFormatContext* raw = nullptr;
    ASSERT_GE(avformat_open_input(&raw, path.c_str(), nullptr, nullptr), 0);
    AVPacket* packet = av_packet_alloc();
    for (int n = 0; av_read_frame(raw, packet) >= 0; ++n) {
      if (n == 13) {
        pos = packet->pos;
        size = packet->size;
      }
      av_packet_unref(packet);
    }
    av_packet_free(&packet);
    avformat_close_input(&raw);
  }
  ASSERT_GT(pos, 0);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(pos);
    const std::string zeros(static_cast<size_t>(size), '\0');
    f.write(zeros.data(), size);
  }
  for (const int threads : {1, 2, 6}) {
    auto d = open_decoder(path, DecoderOptions().set_threads(threads));
    try {
      d->decode({8, 9, 10, 11, 12, 13, 14}, 112);
      ADD_FAILURE() << threads << " threads: frame 13 came out of a blank packet";
    } catch (const DecodeError& e) {
      EXPECT_THAT(e.reason(), HasSubstr("frame 13 ")) << threads << " threads";
    }
    EXPECT_GE(d->counters().converted, 5)
        << threads << " threads: frames 8-12 were handed to conversion first";
    EXPECT_EQ(codes(d->decode({16, 17, 30}, 0)), (std::vector<int64_t>{16, 17, 30}))
        << threads << " threads";
  }
}

// Scaled frames keep the colours of a full-chroma scaling: at least 44 dB PSNR against
// ffmpeg's Lanczos scaler with full chroma interpolation and accurate rounding, at even and odd
// output widths (46.7-52.2 dB measured). swscale's one-pass bilinear scaling to packed RGB
// interpolates chroma horizontally only at some widths: at 160x120 it came out at 34.6 dB.
TEST(Decoder, ScaledFramesKeepFullChromaResolution) {
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/colour.mp4";
  const int w = 320, h = 240;
  {
    VideoWriter writer(path, VideoWriterOptions().set_size(w, h).set_bframes(0));
    std::vector<uint8_t> img(static_cast<size_t>(w) * h * 3);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {  // colour that changes every few pixels, across and down
        uint8_t* p = img.data() + (static_cast<size_t>(y) * w + x) * 3;
        p[0] = static_cast<uint8_t>(128 + 100 * std::sin(x / 9.0));
        p[1] = static_cast<uint8_t>(128 + 60 * std::sin((x + y) / 11.0));
        p[2] = static_cast<uint8_t>(128 + 100 * std::cos(y / 12.0 + x / 15.0));
      }
    }
    for (int i = 0; i < 2; ++i) writer.write(img.data());
    writer.close();
  }
  for (const int short_side : {120, 160, 128, 80}) {
    for (const int threads : {1, 2}) {
      auto d = open_decoder(path, DecoderOptions().set_threads(threads));
      const FrameBuffer got = d->decode({0}, short_side);
      const std::string raw = dir + "/ref.rgb";
      const auto ref = holo::testing::run_command(
          "ffmpeg -v error -y -i " + path + " -frames:v 1 -vf scale=" + std::to_string(got.width) + ":" +
          std::to_string(got.height) + ":flags=lanczos+full_chroma_int+full_chroma_inp+accurate_rnd,format=rgb24"
          " -f rawvideo " + raw);
      ASSERT_EQ(ref.exit_code, 0) << ref.output;
      std::ifstream in(raw, std::ios::binary);
      const std::vector<uint8_t> want((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      ASSERT_EQ(want.size(), static_cast<size_t>(got.width) * got.height * 3);
      double squared = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        const double e = static_cast<double>(got.data[i]) - want[i];
        squared += e * e;
      }
      const double psnr = 10 * std::log10(255.0 * 255.0 / (squared / static_cast<double>(want.size())));
      EXPECT_GE(psnr, 44.0) << got.width << "x" << got.height << ", " << threads << " threads";
    }
  }
}

// The YUV matrix and range come from the file, as ffmpeg's conversion takes them, also with
// slice threads (1280x720) and when scaled: a BT.709 file converted with the BT.601 matrix
// (what swscale does unless told) differed from ffmpeg's frames, and its scaled frames came
// out at 24.2 dB PSNR against ffmpeg's Lanczos full-chroma scaling (38.7 dB now; testsrc2's
// sharp edges keep bilinear and Lanczos apart).
TEST(Decoder, ColourMatrixAndRangeFollowTheFile) {
  const std::string encoders = holo::testing::run_command("ffmpeg -hide_banner -encoders").output;
  ASSERT_NE(encoders.find(" libx264 "), std::string::npos)
      << "the ffmpeg command line has no libx264 (scripts/install-deps.sh installs Debian's, which has it)";
  const auto dir = holo::testing::temp_dir();
  struct File { std::string name, args; };
  for (const File& f : {File{"bt709.mp4", "-colorspace bt709 -color_primaries bt709 -color_trc bt709"},
                        File{"full.mp4", "-pix_fmt yuvj420p"}}) {
    const std::string path = dir + "/" + f.name;
    const auto made = holo::testing::run_command("ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=25 "
                                                 "-frames:v 2 -c:v libx264 " + f.args + " " + path);
    ASSERT_EQ(made.exit_code, 0) << made.output;
    for (const int short_side : {0, 160}) {
      const std::string raw = path + ".rgb";
      const std::string flags = short_side == 0 ? "" : "scale=284:160:flags=lanczos+full_chroma_int+full_chroma_inp+accurate_rnd,";
      const auto ref = holo::testing::run_command("ffmpeg -v error -y -i " + path + " -vf " + flags +
                                                  "format=rgb24 -f rawvideo " + raw);
      ASSERT_EQ(ref.exit_code, 0) << ref.output;
      std::ifstream in(raw, std::ios::binary);
      const std::vector<uint8_t> want((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      for (const int threads : {1, 3}) {
        const FrameBuffer got = open_decoder(path, DecoderOptions().set_threads(threads))->decode({0, 1}, short_side);
        ASSERT_EQ(got.data.size(), want.size()) << f.name;
        if (short_side == 0) {
          EXPECT_TRUE(std::equal(got.data.begin(), got.data.end(), want.begin()))
              << f.name << ", " << threads << " threads: differs from ffmpeg's frames";
          continue;
        }
        double squared = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          const double e = static_cast<double>(got.data[i]) - want[i];
          squared += e * e;
        }
        const double psnr = 10 * std::log10(255.0 * 255.0 / (squared / static_cast<double>(want.size())));
        EXPECT_GE(psnr, 34.0) << f.name << " scaled, " << threads << " threads";
      }
    }
  }
}

TEST(Decoder, VariableRateTimesMapToFrames) {
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/vfr.mp4";
  holo::testing::write_coded_video(path, 30, VideoWriterOptions().set_fps(10).set_variable_rate(true));
  auto d = open_decoder(path, DecoderOptions());
  const VideoInfo& info = d->info();
  ASSERT_TRUE(info.variable_rate);
  // Frame i lasts (1 + i % 3) / 10 s: start times 0, 0.1, 0.3, 0.6, 0.7, 0.9, 1.2, ...
  double t = 0;
  for (int64_t i = 0; i < 30; ++i) {
    EXPECT_NEAR(info.frame_time(i), t, 0.002) << i;
    EXPECT_EQ(info.frame_at(t + 0.05), i) << i;
    t += (1 + i % 3) / 10.0;
  }
  // The last frame's own duration is not stored by every muxer: the decoder takes the typical
  // frame duration for it.
  EXPECT_GT(info.duration, info.frame_time(29));
  EXPECT_LE(info.duration, t + 0.002);
  EXPECT_DOUBLE_EQ(info.fps, 30 / info.duration);
  // The frame shown at 1.0 s is frame 5 (shown from 0.9 s to 1.2 s).
  EXPECT_EQ(codes(d->decode({info.frame_at(1.0)}, 0)), (std::vector<int64_t>{5}));
}

TEST(Decoder, ConstantRateFacts) {
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/c.mp4";
  holo::testing::write_coded_video(path, 24, VideoWriterOptions().set_fps(12));
  auto d = open_decoder(path, DecoderOptions().set_device("cpu"));
  EXPECT_EQ(d->backend(), "cpu");
  EXPECT_FALSE(d->info().variable_rate);
  EXPECT_NEAR(d->info().fps, 12.0, 1e-6);
  EXPECT_NEAR(d->info().duration, 2.0, 1e-6);
  EXPECT_THAT([&] { d->decode({24}, 0); }, ::testing::ThrowsMessage<Error>(HasSubstr("frame 24 requested")));
}

TEST(Decoder, BadFilesAreNamedWithTheirReason) {
  const auto dir = holo::testing::temp_dir();
  holo::testing::write_text_file(dir + "/empty.mp4", "");
  holo::testing::write_text_file(dir + "/text.mp4", "this is not a video, just some text\n");
  holo::testing::write_wav(dir + "/audio.wav");
  auto reason = [](const std::string& path) {
    try {
      open_decoder(path, DecoderOptions());
    } catch (const DecodeError& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_THAT(e.what(), HasSubstr(path));
      return e.reason();
    }
    return std::string("no error");
  };
  EXPECT_EQ(reason(dir + "/missing.mp4"), "missing file");
  EXPECT_EQ(reason(dir + "/empty.mp4"), "zero-byte file");
  EXPECT_THAT(reason(dir + "/text.mp4"), HasSubstr("not a readable container"));
  EXPECT_EQ(reason(dir + "/audio.wav"), "audio only (no video stream)");
  // H.264 in an MPEG program stream: most frames carry no timestamp at all, and nothing in the
  // container says where they are shown.
  if (holo::testing::run_command("ffmpeg -hide_banner -encoders").output.find(" libx264 ") !=
      std::string::npos) {
    const auto made = holo::testing::run_command(
        "ffmpeg -v error -y -f lavfi -i testsrc2=size=160x120:rate=25 -t 4 "
        "-c:v libx264 -f mpeg " +
        dir + "/h264.mpg 2>&1");
    ASSERT_EQ(made.exit_code, 0) << made.output;
    EXPECT_THAT(reason(dir + "/h264.mpg"),
                MatchesRegex("broken timestamps: [0-9]+ of 100 video packets have no timestamp"));
  }
}

TEST(Decoder, TruncatedFileDecodesWhatIsThereAndNamesTheRest) {
  const auto dir = holo::testing::temp_dir();
  holo::testing::write_coded_video(dir + "/full.mp4", 48, VideoWriterOptions().set_gop(8));
  holo::testing::write_truncated(dir + "/full.mp4", dir + "/cut.mp4", 0.6);
  auto d = open_decoder(dir + "/cut.mp4", DecoderOptions());
  // The frames in the first part decode exactly.
  EXPECT_EQ(codes(d->decode({0, 5, 10}, 0)), (std::vector<int64_t>{0, 5, 10}));
  // Frames past the cut are either absent from the table or fail with a DecodeError.
  const int64_t n = d->info().frames;
  EXPECT_LT(n, 48);
  EXPECT_EQ(d->info().container_frames, 48);
  EXPECT_EQ(d->info().declared_frames, 48);
  // How much is missing is known: named as truncated (the sample table points past the end of
  // the file), and usable for its readable frames.
  EXPECT_EQ(d->info().shortfall,
            "truncated: the container lists 48 frames, " + std::to_string(n) + " can be read");
  EXPECT_FALSE(d->info().truncated());
  std::vector<int64_t> last = {n - 1};
  try {
    const auto got = codes(d->decode(last, 0));
    EXPECT_EQ(got, last);
  } catch (const DecodeError& e) {
    EXPECT_THAT(e.reason(), HasSubstr("cannot be decoded"));
  }
  // A file cut before its index is not a container at all.
  holo::testing::write_truncated(dir + "/full.mp4", dir + "/head.mp4", 0.01);
  EXPECT_THROW(open_decoder(dir + "/head.mp4", DecoderOptions()), DecodeError);
}

// Containers without a frame count (Matroska, WebM, MPEG-TS, MPEG-PS, FLV) still say when their
// tail is missing: a declared duration longer than the readable frames, or a transport or
// program stream that ends inside a packet. Whole files of the same kinds are not truncated, nor is
// H.264 copied into AVI, whose header counts half frames. Where the container declares how much
// there is (a frame count or a duration: `measured`), the missing part is a shortfall against
// declared_frames, named as truncated where the file ends before its container's size
// (`cut_named`: AVI's RIFF size, Matroska's segment size; FLV declares none), and the file is
// usable; where it does not (TS, PS), the file is truncated().
TEST(Decoder, TruncatedFilesOfEveryContainerAreNamed) {
  const auto dir = holo::testing::temp_dir();
  const std::string mp4 = dir + "/src.mp4";
  holo::testing::write_coded_video(mp4, 64, VideoWriterOptions().set_gop(8).set_bframes(2));
  struct File {
    std::string name, args, reason;
    bool measured, cut_named;
  };
  const std::vector<File> files = {
      {"copy.mkv", "-c copy", "the video track's DURATION tag gives 4.00 s", true, true},
      {"vp9.webm", "-c:v libvpx-vp9 -b:v 200k -deadline realtime -cpu-used 8 -g 8",
       "the video track's DURATION tag gives 4.00 s", true, true},
      {"copy.ts", "-c copy", "the file ends inside a transport-stream packet", false, false},
      {"copy.flv", "-c copy", "the container's header gives", true, false},
      {"copy.avi", "-c copy", "the container lists 64 frames", true, true},
      {"mpeg2.mpg", "-c:v mpeg2video -bf 2 -g 8",
       "the file ends inside an MPEG program-stream packet", false, false},
      {"mpeg2.vob", "-c:v mpeg2video -bf 2 -g 8 -f vob",
       "the file ends inside an MPEG program-stream packet", false, false},
      {"theora.ogv", "-c:v libtheora -q:v 8 -g 8", "the file ends inside an Ogg page", false,
       false},
      {"mpeg4.avi", "-c:v mpeg4 -q:v 3 -bf 2 -g 8", "the container lists 64 frames", true, true},
  };
  for (const File& f : files) {
    const std::string path = dir + "/" + f.name;
    const auto made =
        holo::testing::run_command("ffmpeg -v error -y -i " + mp4 + " " + f.args + " " + path);
    if (made.exit_code != 0 && (f.name == "vp9.webm" || f.name == "theora.ogv"))
      continue;  // not in this ffmpeg
    ASSERT_EQ(made.exit_code, 0) << made.output;
    const VideoInfo whole = open_decoder(path, DecoderOptions())->info();
    EXPECT_EQ(whole.frames, 64) << f.name;
    EXPECT_EQ(whole.truncation, "") << f.name;
    EXPECT_EQ(whole.shortfall, "") << f.name;
    EXPECT_FALSE(whole.truncated()) << f.name;
    EXPECT_EQ(whole.readable_fraction(), 1.0) << f.name;
    const bool program_stream =
        f.name.find(".mpg") != std::string::npos || f.name.find(".vob") != std::string::npos;
    for (const double fraction : {0.5, 0.9, 0.0}) {
      // The file's duration (FLV) covers every stream: its check allows 0.5 s, more than the
      // last tenth of these 4 s.
      if (f.name == "copy.flv" && fraction > 0.5) continue;
      if (fraction == 0.0 && !program_stream) continue;
      const std::string cut = dir + "/cut_" + f.name;
      const auto size = static_cast<int64_t>(std::filesystem::file_size(path));
      if (program_stream) {
        // ffmpeg writes packs of 2048 bytes, and a cut between two cannot be told from an end:
        // cut 1000 bytes into one, or (0.0) 2 bytes into the half-way pack's start code.
        const int64_t pack =
            static_cast<int64_t>(size * (fraction > 0 ? fraction : 0.5)) / 2048 * 2048;
        holo::testing::write_truncated(path, cut, fraction > 0 ? pack + 1000 : pack + 2);
      } else if (f.name == "copy.ts") {
        // Inside a packet of 188 bytes, at a length no 192- or 204-byte packets could make: a
        // cut between two packets cannot be told from an end.
        int64_t at = static_cast<int64_t>(size * fraction) / 188 * 188 + 100;
        while (at % 192 == 0 || at % 204 == 0) ++at;
        holo::testing::write_truncated(path, cut, at);
      } else if (f.name == "copy.flv") {
        // Between two tags (11-byte header with a 24-bit data size at byte 1, the data, a
        // 4-byte back-pointer), as FLV, which declares no size, cannot name: a cut inside a tag
        // would be named truncated, so where the cut falls must not be left to chance.
        std::ifstream in(path, std::ios::binary);
        std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        int64_t pos = 13;  // FLV header, then the first back-pointer
        while (pos + 11 <= size) {
          const int64_t next = pos + 11 + ((int64_t{bytes[pos + 1]} << 16) | (bytes[pos + 2] << 8) | bytes[pos + 3]) + 4;
          if (next > static_cast<int64_t>(size * fraction)) break;
          pos = next;
        }
        holo::testing::write_truncated(path, cut, pos);
      } else {
        holo::testing::write_truncated(path, cut, fraction);
      }
      const VideoInfo info = open_decoder(cut, DecoderOptions())->info();
      EXPECT_LT(info.frames, 64) << f.name;
      if (!f.measured) {
        EXPECT_TRUE(info.truncated()) << f.name << " cut at " << fraction;
        EXPECT_THAT(info.truncation, HasSubstr(f.reason)) << f.name << " cut at " << fraction;
        continue;
      }
      EXPECT_FALSE(info.truncated()) << f.name << " cut at " << fraction << ": " << info.truncation;
      EXPECT_THAT(info.shortfall, HasSubstr(f.reason)) << f.name << " cut at " << fraction;
      EXPECT_EQ(info.shortfall.rfind("truncated: ", 0) == 0, f.cut_named)
          << f.name << " cut at " << fraction << ": " << info.shortfall;
      // A declared duration in frames at the readable rate (FLV's covers the container's end).
      EXPECT_NEAR(info.declared_frames, 64, 2) << f.name << " cut at " << fraction;
      EXPECT_NEAR(info.readable_fraction(), fraction, 0.2) << f.name << " cut at " << fraction;
      // Every readable frame decodes as itself, in order; a frame whose packet the cut left
      // short has no index, nor have the (up to two) B-frames shown before the last reference
      // frame but stored after it: the codes skip them.
      auto d = open_decoder(cut, DecoderOptions());
      std::vector<int64_t> all(static_cast<size_t>(info.frames));
      for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
      const std::vector<int64_t> got = codes(d->decode(all, 0));
      EXPECT_EQ(got.front(), 0) << f.name << " cut at " << fraction;
      for (size_t i = 1; i < got.size(); ++i) {
        EXPECT_GT(got[i], got[i - 1]) << f.name << " cut at " << fraction << ", frame " << i;
        EXPECT_LE(got[i], got[i - 1] + 3) << f.name << " cut at " << fraction << ", frame " << i;
      }
    }
  }
  // Whole files whose video starts late (its DURATION tag is its end time, from 0) or whose
  // audio runs a second longer than the video are not truncated.
  for (const std::string& args :
       {"-itsoffset 0.5 -i " + mp4 + " -f lavfi -i sine=d=5 -map 0:v -map 1:a -c:v copy -c:a aac",
        "-i " + mp4 + " -f lavfi -i sine=d=5 -map 0:v -map 1:a -c:v copy -c:a aac"}) {
    const std::string path = dir + "/whole.mkv";
    const auto made = holo::testing::run_command("ffmpeg -v error -y " + args + " " + path);
    ASSERT_EQ(made.exit_code, 0) << made.output;
    const VideoInfo info = open_decoder(path, DecoderOptions())->info();
    EXPECT_EQ(info.frames, 64) << args;
    EXPECT_EQ(info.truncation, "") << args;
    EXPECT_EQ(info.shortfall, "") << args;
  }
}

TEST(Decoder, CacheKeepsAtMostCapacityOpen) {
  const auto dir = holo::testing::temp_dir();
  for (int i = 0; i < 3; ++i) holo::testing::write_coded_video(dir + "/" + std::to_string(i) + ".mp4", 10);
  DecoderCache cache(2, DecoderOptions());
  auto p = [&](int i) { return dir + "/" + std::to_string(i) + ".mp4"; };
  cache.get(p(0));
  cache.get(p(1));
  cache.get(p(0));  // hit; 1 is now the oldest
  EXPECT_EQ(cache.opens(), 2);
  cache.get(p(2));  // evicts 1
  EXPECT_EQ(cache.size(), 2u);
  cache.get(p(0));
  EXPECT_EQ(cache.opens(), 3);
  cache.get(p(1));
  EXPECT_EQ(cache.opens(), 4);
  EXPECT_EQ(read_frame_code(cache.get(p(1)).decode({7}, 0).frame(0), 128, 96), 7);
}

TEST(Decoder, AutoFallsBackToTheCpuWithoutNvdec) {
  const auto nvdec = nvdec_availability();
  if (nvdec.available) GTEST_SKIP() << "NVDEC is available here; the fallback is not exercised";
  EXPECT_FALSE(nvdec.reason.empty());
  const auto dir = holo::testing::temp_dir();
  holo::testing::write_coded_video(dir + "/a.mp4", 5);
  EXPECT_EQ(open_decoder(dir + "/a.mp4", DecoderOptions().set_device("auto"))->backend(), "cpu");
  EXPECT_THAT([&] { open_decoder(dir + "/a.mp4", DecoderOptions().set_device("nvdec")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("NVDEC is unavailable")));
}

// Registered a second time under the `gpu` label (tests/pipeline/CMakeLists.txt).
TEST(DecoderNvdec, FrameExact_CUDA) {
  const auto nvdec = nvdec_availability();
  if (!nvdec.available) GTEST_SKIP() << "no NVDEC: " << nvdec.reason;
  const auto dir = holo::testing::temp_dir();
  const std::string path = dir + "/v.mp4";
  holo::testing::write_coded_video(path, 61, VideoWriterOptions().set_gop(10));
  auto d = open_decoder(path, DecoderOptions().set_device("nvdec"));
  ASSERT_EQ(d->backend(), "nvdec");
  for (const std::vector<int64_t>& r : std::vector<std::vector<int64_t>>{{40, 41, 42}, {3}, {22, 24}}) {
    EXPECT_EQ(codes(d->decode(r, 0)), r);
  }
  // Seeks to IDRs keep the codec and with it the GPU decoder (no reset before the end of the
  // file was reached).
  EXPECT_GE(d->counters().seeks, 3);
  EXPECT_EQ(d->counters().flushes, 0);
  for (const std::vector<int64_t>& r : std::vector<std::vector<int64_t>>{{0, 30, 60}, {25, 25, 26}}) {
    EXPECT_EQ(codes(d->decode(r, 0)), r);
  }
  EXPECT_EQ(codes(d->decode({5, 44}, 48)), (std::vector<int64_t>{5, 44}));
  // Pixels too: H.264 decoding is bit-exact, so NVDEC's frames differ from the CPU's only in
  // swscale's conversion of NV12 instead of YUV420P, which interpolates chroma differently at
  // sharp colour edges (measured on an H100: largest difference 32 of 255, mean 1.3). A wrong or
  // shifted frame differs by tens on average.
  auto cpu = open_decoder(path, DecoderOptions().set_device("cpu"));
  for (int short_side : {0, 48}) {
    const FrameBuffer a = cpu->decode({0, 17, 40, 60}, short_side);
    const FrameBuffer b = d->decode({0, 17, 40, 60}, short_side);
    ASSERT_EQ(a.count, b.count);
    ASSERT_EQ(a.width, b.width);
    ASSERT_EQ(a.height, b.height);
    ASSERT_EQ(a.data.size(), b.data.size());
    int worst = 0;
    int64_t total = 0;
    for (size_t i = 0; i < a.data.size(); ++i) {
      const int diff = std::abs(static_cast<int>(a.data[i]) - static_cast<int>(b.data[i]));
      worst = std::max(worst, diff);
      total += diff;
    }
    EXPECT_LE(worst, 64) << "short side " << short_side;
    EXPECT_LT(static_cast<double>(total) / static_cast<double>(a.data.size()), 2.5) << "short side " << short_side;
  }
  auto vfr = dir + "/vfr.mp4";
  holo::testing::write_coded_video(vfr, 30, VideoWriterOptions().set_variable_rate(true));
  auto dv = open_decoder(vfr, DecoderOptions().set_device("nvdec"));
  EXPECT_EQ(codes(dv->decode({29, 1, 14}, 0)), (std::vector<int64_t>{29, 1, 14}));
}

// The benchmark's decoding floor (pipeline/decode_floor.h) decodes what a loader that seeks to
// the keyframe before a clip must: every frame from that keyframe to the clip's last one, the
// last clamped to the end of the file.
TEST(DecodeFloor, DecodesFromTheKeyframeBeforeEachClipToItsLastFrame) {
  const auto dir = holo::testing::temp_dir();
  for (const int bframes : {0, 2}) {
    const std::string path = dir + "/floor" + std::to_string(bframes) + ".mp4";
    holo::testing::write_coded_video(path, 64,
                                     VideoWriterOptions().set_gop(8).set_bframes(bframes));
    // Clip 10..16 from keyframe 8: 9 frames. Clip 0..6: 7. Clip 60..63 (66 clamped), from 56: 8.
    const DecodeFloor one = time_decode_floor({path}, {{10}}, 4, 2);
    EXPECT_EQ(one.clips, 1);
    EXPECT_EQ(one.frames_decoded, 9) << bframes << " B-frames";
    const DecodeFloor all = time_decode_floor({path, path}, {{10, 0}, {60}}, 4, 2);
    EXPECT_EQ(all.clips, 3);
    EXPECT_EQ(all.frames_decoded, 9 + 7 + 8) << bframes << " B-frames";
    EXPECT_GT(all.seconds, 0);
  }
  try {
    time_decode_floor({dir + "/missing.mp4"}, {{0}}, 4, 2);
    FAIL() << "a missing file must throw";
  } catch (const DecodeError& e) {
    EXPECT_EQ(e.path(), dir + "/missing.mp4");
  }
  // AVI with B-frames stamps only some packets: no floor, rather than one that names frames
  // wrongly and stops early.
  const std::string avi = dir + "/b.avi";
  holo::testing::write_coded_video(
      avi, 45, VideoWriterOptions().set_codec("mpeg4").set_gop(10).set_bframes(2).set_adaptive_bframes(false));
  try {
    time_decode_floor({avi}, {{10}}, 4, 2);
    FAIL() << "an AVI with B-frames has no floor";
  } catch (const DecodeError& e) {
    EXPECT_THAT(e.reason(), HasSubstr("have no presentation timestamp"));
  }
}

}  // namespace
}  // namespace holo::pipeline
