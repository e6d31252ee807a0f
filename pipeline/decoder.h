#pragma once
/// Video decoding: one `VideoDecoder` interface with a CPU implementation (cpu_decoder.h) and an
/// NVDEC one through libavcodec's CUDA hwaccel (nvdec_decoder.h). `open_decoder()` is the only
/// place that names the concrete classes.
///
/// Frames are addressed by index. The index of a frame is its rank among the presentation
/// timestamps of all packets of the stream, read once when the file is opened (demuxing only,
/// no decoding), so indices are exact for variable-frame-rate files and do not trust the
/// container's frame count. A request decodes exactly the asked frames: seek to the keyframe at
/// or before the first one, decode forward, keep the frames whose timestamps match. Frames that
/// are not asked for and that no other frame refers to (most B-frames) are not decoded at all
/// when they lie before the last asked frame: the codec discards their packets (libavcodec's
/// `skip_frame = AVDISCARD_NONREF`, set per packet), which changes no other frame's pixels.
/// The scaling to RGB runs on the decoder's threads when more than one is asked for.
///
/// No torch here: frames come back as a packed uint8 RGB buffer (T x H x W x 3) that
/// pipeline/clip.h wraps into a tensor.

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"

namespace holo::pipeline {

/// A file that cannot be used as a video: zero bytes, not a container, no video stream, no
/// decodable frame, broken timestamps, or a decode error in the requested range. The message
/// names the file and the reason; the loader quarantines the sample with it.
class DecodeError : public IoError {
 public:
  DecodeError(const std::string& path, const std::string& reason)
      : IoError(path + ": " + reason), path_(path), reason_(reason) {}
  const std::string& path() const { return path_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string path_;
  std::string reason_;
};

/// What the demuxer says about a video stream, plus Holo's frame table.
struct VideoInfo {
  /// Frames in the stream: packets with a timestamp, less those the container marks to be
  /// dropped (AV_PKT_FLAG_DISCARD: samples outside an MP4 edit list, as in a file cut by stream
  /// copy, which the codec decodes as references but never outputs).
  int64_t frames = 0;
  double fps = 0;            ///< frames / duration (the average rate)
  double duration = 0;       ///< seconds from the first frame to the end of the last
  std::string codec;         ///< decoder name, e.g. "h264"
  int width = 0;
  int height = 0;
  bool variable_rate = false;  ///< frame durations differ by more than 1% of the mean
  /// Some packets carry only a decode timestamp (AVI): frames are numbered in decode-time
  /// order of their packets, and every seek decodes from the start of the file, where the
  /// decoder's reordering delay is known.
  bool decode_order_timestamps = false;
  std::vector<int64_t> pts;    ///< presentation timestamp of every frame, in stream time base
  std::vector<int64_t> keyframes;  ///< indices of keyframes, ascending
  int time_base_num = 0;
  int time_base_den = 1;
  /// Frames the container's index lists (0 when it has none).
  int64_t container_frames = 0;
  /// Frames the container declares: `container_frames` (MP4, AVI); for a container that
  /// declares a duration instead (Matroska/WebM, FLV), that duration at the readable frame
  /// rate, set only when the readable video falls short of it; 0 when it declares neither.
  int64_t declared_frames = 0;
  /// The container declares more than can be read, empty when it does not: "the container
  /// lists 209 frames, 208 can be read" (MP4, AVI), "the video track's DURATION tag gives
  /// 4.00 s, 2.00 s of video can be read" (Matroska/WebM), "the video stream's header gives
  /// ..." or "the container's header gives ..." (FLV). Prefixed "truncated: " when the file also
  /// ends before its container says it does (an interrupted download or copy: its last video
  /// packet is cut short, the index points past the end, or the RIFF or Matroska segment size is
  /// larger than the file); a container that merely counts a frame it does not hold gets no
  /// prefix. A file cut within what its declared count or duration allows is "truncated: the
  /// file ends inside its last video packet" (or "... before its container says it does").
  /// A warning, not an error: the readable frames are used unless fewer than
  /// data.min_readable_fraction of the declared ones can be read (sampling_frames).
  std::string shortfall;
  /// Why the file's tail is missing when how much of it is missing cannot be told, empty
  /// otherwise: an MPEG-TS file ends inside a packet, an MPEG program stream inside a pack, or
  /// reading stopped with an error well before the end of the file. Such a file is not used.
  std::string truncation;

  bool truncated() const { return !truncation.empty(); }
  /// Readable frames over declared ones (1 when the container declares no more than `frames`).
  double readable_fraction() const {
    return declared_frames > frames && declared_frames > 0
               ? static_cast<double>(frames) / static_cast<double>(declared_frames)
               : 1.0;
  }

  /// Seconds at which frame `i` is presented, relative to the first frame.
  double frame_time(int64_t i) const;
  /// The frame shown at `seconds` after the first frame (the last with time <= seconds),
  /// clamped to [0, frames - 1].
  int64_t frame_at(double seconds) const;
};

/// An allocator that leaves elements made without a value uninitialised: `resize(n)` on a
/// vector of bytes allocates without zero-filling. A decoder writes every byte of its frames,
/// and the zero-filling was a pass over the clip on the thread that reads and sends packets,
/// whose work no other thread can take (57 of its 392 us per frame in `perf` of `holo bench
/// decode --threads 16`, docs/pipeline.md, "Serial work"); the pages are now first touched by
/// the threads that convert. `resize(n, value)` and `assign` still write their value.
template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

/// Bytes that `resize` does not zero-fill (UninitializedAllocator).
using ByteBuffer = std::vector<uint8_t, UninitializedAllocator<uint8_t>>;

/// Packed frames: `count` frames of `height` x `width` RGB, row-major, no padding. `decode`
/// writes every byte of `data` before it returns.
struct FrameBuffer {
  int64_t count = 0;
  int height = 0;
  int width = 0;
  ByteBuffer data;
  const uint8_t* frame(int64_t t) const { return data.data() + t * height * width * 3; }
};

/// How a decoder is set up.
struct DecoderOptions {
  /// "cpu", "nvdec", or "auto" (NVDEC when it can be opened, else CPU with one logged reason).
  std::string device = "cpu";
  /// Decoder threads; 0 lets FFmpeg choose.
  int threads = 0;
  /// CUDA device ordinal for NVDEC.
  int gpu = 0;
  /// Of `threads`, how many convert frames to RGB while the others decode (fewer than
  /// `threads`, or 0: the decoding thread converts); -1: the backend's split
  /// (docs/pipeline.md, "Threads").
  int conversion_threads = -1;

  DecoderOptions& set_device(std::string d) { device = std::move(d); return *this; }
  DecoderOptions& set_threads(int t) { threads = t; return *this; }
  DecoderOptions& set_gpu(int g) { gpu = g; return *this; }
  DecoderOptions& set_conversion_threads(int c) { conversion_threads = c; return *this; }
};

/// What a decoder did since it was opened, for benchmarks and tests.
struct DecodeCounters {
  int64_t seeks = 0;      ///< seeks to a keyframe
  int64_t flushes = 0;    ///< of these, seeks that reset the codec (the others landed on an H.264 IDR)
  int64_t stale = 0;      ///< frames of packets sent before a seek, received and dropped
  int64_t dropped = 0;    ///< packets a seek landed on before its keyframe, not decoded
  int64_t packets = 0;    ///< video packets sent to the codec
  int64_t discardable = 0;  ///< of these, sent with non-reference frames discarded (unrequested frames)
  int64_t decoded = 0;    ///< frames the codec returned (stale ones not included)
  int64_t converted = 0;  ///< frames handed to the conversion to RGB (done when decode() returns)
};

/// One open video file. Not thread-safe: one decoder per thread (see DecoderCache).
class VideoDecoder {
 public:
  virtual ~VideoDecoder() = default;
  /// Stream facts and the frame table, known from open.
  virtual const VideoInfo& info() const = 0;
  /// Decodes the frames at `indices` (any order, repeats allowed, each in [0, frames)) and
  /// returns them in that order, scaled so that the short side is `short_side` (0: unscaled;
  /// the other side keeps the aspect ratio, rounded to the nearest pixel). Throws DecodeError when a
  /// requested frame cannot be produced.
  virtual FrameBuffer decode(const std::vector<int64_t>& indices, int short_side) = 0;
  /// Decodes the whole stream once from its start, converting nothing, and returns the
  /// indices of the frames that came out, ascending: what `ffprobe -count_frames` counts (the
  /// probe's frame count; a frame whose packet does not decode is absent). Throws DecodeError
  /// when the file cannot be read.
  virtual std::vector<int64_t> decodable_frames() = 0;
  /// "cpu" or "nvdec".
  virtual std::string backend() const = 0;
  /// Work done so far (see DecodeCounters).
  virtual DecodeCounters counters() const = 0;
  /// The file.
  virtual const std::string& path() const = 0;
};

/// Opens `path` with the backend chosen by `options.device`. Throws DecodeError for a file
/// that is not a usable video; throws holo::Error when "nvdec" is asked for and unavailable.
std::unique_ptr<VideoDecoder> open_decoder(const std::string& path, const DecoderOptions& options);

/// Registers the decoders under decode.device (core/registry.h); train/registry.h calls it.
void register_decoders();
/// Whether `name` is a registered decode.device.
bool is_decode_device(const std::string& name);

/// Whether NVDEC can be used in this process, and if not, why (for logs and test skips).
struct NvdecAvailability {
  bool available = false;
  std::string reason;
};
NvdecAvailability nvdec_availability(int gpu = 0);

/// Output size for a short side (see VideoDecoder::decode).
void scaled_size(int width, int height, int short_side, int* out_width, int* out_height);

/// A bounded cache of open decoders, least recently used evicted first. One per worker thread;
/// reading several clips of the same file re-uses the open demuxer and codec.
class DecoderCache {
 public:
  DecoderCache(size_t capacity, DecoderOptions options);
  /// The open decoder for `path`, opening it (and evicting the oldest) when needed.
  VideoDecoder& get(const std::string& path);
  /// Drops `path` (after an error, so a broken file is not kept open).
  void drop(const std::string& path);
  size_t size() const { return entries_.size(); }
  size_t capacity() const { return capacity_; }
  int64_t opens() const { return opens_; }  ///< files opened so far (for tests and stats)

 private:
  struct Entry {
    std::string path;
    std::unique_ptr<VideoDecoder> decoder;
  };
  size_t capacity_;
  DecoderOptions options_;
  std::vector<Entry> entries_;  ///< most recently used last; small, so a vector is enough
  int64_t opens_ = 0;
};

}  // namespace holo::pipeline
