#pragma once
/// Encoding RGB frames into a real video file with libavcodec (libx264 when this FFmpeg has it,
/// else the native MPEG-4 part 2 encoder), for synthetic data and tests. Frames can carry their
/// own index as a bit pattern (`draw_frame_code`) so that tests can check that a decoder
/// returned exactly the frame it was asked for.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace holo::pipeline {

struct VideoWriterOptions {
  int width = 128;
  int height = 96;
  double fps = 16;
  /// "auto" (libx264, else mpeg4), "libx264" or "mpeg4".
  std::string codec = "auto";
  int gop = 8;          ///< frames between keyframes (fixed: no scene-cut keyframes)
  int bframes = 2;      ///< B-frames, so that decode order differs from display order
  /// libx264 decides per frame whether a B-frame pays (it often does not on simple content);
  /// false: every run of `bframes` frames between references is B-frames (`b-adapt=0`).
  /// mpeg4 always writes `bframes` B-frames.
  bool adaptive_bframes = true;
  int quality = 20;     ///< libx264 CRF, or 2-31 quantiser for mpeg4 (scaled from it)
  /// Variable frame rate: frame i is shown for (1 + i % 3) / fps seconds instead of 1 / fps.
  bool variable_rate = false;
  /// Writes the index table at the start of an mp4 (as most downloaded videos have it).
  bool faststart = true;

  VideoWriterOptions& set_size(int w, int h) { width = w; height = h; return *this; }
  VideoWriterOptions& set_fps(double f) { fps = f; return *this; }
  VideoWriterOptions& set_codec(std::string c) { codec = std::move(c); return *this; }
  VideoWriterOptions& set_gop(int g) { gop = g; return *this; }
  VideoWriterOptions& set_bframes(int b) { bframes = b; return *this; }
  VideoWriterOptions& set_adaptive_bframes(bool v) { adaptive_bframes = v; return *this; }
  VideoWriterOptions& set_variable_rate(bool v) { variable_rate = v; return *this; }
  VideoWriterOptions& set_faststart(bool v) { faststart = v; return *this; }
};

/// Writes one video file. The file appears under its name only after close() succeeds (it is
/// written beside it and renamed), so a crash never leaves a half-written file behind.
class VideoWriter {
 public:
  VideoWriter(const std::string& path, VideoWriterOptions options);
  ~VideoWriter();
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  /// Appends one frame: packed RGB, height x width x 3.
  void write(const uint8_t* rgb);
  /// Flushes the encoder, writes the trailer and moves the file into place.
  void close();
  /// The encoder used ("libx264" or "mpeg4").
  const std::string& codec_name() const;
  int64_t frames_written() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// The encoder `codec` ("auto", "libx264", "mpeg4") resolves to in this FFmpeg.
std::string resolve_encoder(const std::string& codec);

/// Bits in the frame code (indices up to 2^kFrameCodeBits - 1).
constexpr int kFrameCodeBits = 10;
/// Height in pixels of the band at the top of a frame that holds the code.
int frame_code_band(int height);
/// Draws `index` as kFrameCodeBits black or white cells across the top band of an RGB frame.
void draw_frame_code(uint8_t* rgb, int width, int height, int64_t index);
/// Reads the code back from a (possibly scaled, compressed) RGB frame; -1 when a cell is
/// ambiguous (neither clearly dark nor clearly light).
int64_t read_frame_code(const uint8_t* rgb, int width, int height);

}  // namespace holo::pipeline
