#pragma once
// Helpers for the pipeline tests: small coded videos and the files that break decoders.

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "pipeline/video_writer.h"
#include "tests/test_util.h"

namespace holo::testing {

/// Writes a video whose frame i shows the code of i on a plain background.
inline void write_coded_video(const std::string& path, int64_t frames,
                              pipeline::VideoWriterOptions options = {}) {
  pipeline::VideoWriter writer(path, options);
  std::vector<uint8_t> img(static_cast<size_t>(options.width) * options.height * 3);
  for (int64_t i = 0; i < frames; ++i) {
    for (size_t p = 0; p < img.size(); p += 3) {
      img[p] = static_cast<uint8_t>(40 + (i * 7) % 160);
      img[p + 1] = 90;
      img[p + 2] = static_cast<uint8_t>(200 - (p / 3) % 97);
    }
    pipeline::draw_frame_code(img.data(), options.width, options.height, i);
    writer.write(img.data());
  }
  writer.close();
}

/// A valid WAV file with one second of silence: a container with an audio stream only.
inline void write_wav(const std::string& path) {
  const uint32_t rate = 8000, samples = 8000;
  std::ofstream f(path, std::ios::binary);
  auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
  f.write("RIFF", 4);
  u32(36 + samples * 2);
  f.write("WAVEfmt ", 8);
  u32(16);
  u16(1);
  u16(1);
  u32(rate);
  u32(rate * 2);
  u16(2);
  u16(16);
  f.write("data", 4);
  u32(samples * 2);
  std::vector<char> zeros(samples * 2, 0);
  f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
}

/// Copies `from` to `to` with the bytes from `start` to `end` (fractions of the size) zeroed:
/// a file damaged in the middle, whose container still reads.
inline void write_corrupted(const std::string& from, const std::string& to, double start,
                            double end) {
  std::ifstream in(from, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t i = static_cast<size_t>(data.size() * start);
       i < static_cast<size_t>(data.size() * end); ++i)
    data[i] = 0;
  std::ofstream out(to, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

/// Broken timestamps, made with the ffmpeg command line from an H.264 mp4: `to` ending in .mkv
/// gets frame 3 the timestamp of frame 2 (two frames share one); ending in .h264, the raw
/// stream without any timestamp. Returns ffmpeg's exit status and output.
inline CommandResult write_broken_timestamps(const std::string& from, const std::string& to) {
  const bool raw = to.size() > 5 && to.compare(to.size() - 5, 5, ".h264") == 0;
  return run_command("ffmpeg -v error -y -i " + from + " -c copy " +
                     (raw ? std::string("-bsf:v h264_mp4toannexb -f h264 ")
                          : std::string("-bsf:v \"setts=pts=if(eq(N\\,3)\\,PREV_INPTS\\,PTS)\" ")) +
                     to + " 2>&1");
}

inline void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

/// Copies the first `fraction` of `from` to `to` (a truncated download).
inline void write_truncated(const std::string& from, const std::string& to, double fraction) {
  std::ifstream in(from, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream out(to, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size() * fraction));
}

/// The first `bytes` bytes of `from`.
inline void write_truncated(const std::string& from, const std::string& to, int64_t bytes) {
  std::ifstream in(from, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream out(to, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(std::min<int64_t>(bytes, data.size())));
}

}  // namespace holo::testing
