#pragma once
/// RAII owners for every libav* handle Holo uses. No `*_free` call appears outside this header:
/// each handle is a std::unique_ptr with a deleter that calls the library's own release
/// function, so a throw anywhere in the decoder or encoder releases what was acquired.

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/buffer.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>
#include <libswscale/swscale.h>
}

#include <memory>

#include "core/check.h"

namespace holo::pipeline::av {

/// Demuxer opened for reading (avformat_open_input): released with avformat_close_input.
struct InputFormatDeleter {
  void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
using InputFormatPtr = std::unique_ptr<AVFormatContext, InputFormatDeleter>;

/// Muxer for writing: closes its AVIOContext (when the format has a file) and frees it.
struct OutputFormatDeleter {
  void operator()(AVFormatContext* p) const {
    if (p->pb != nullptr && !(p->oformat->flags & AVFMT_NOFILE)) avio_closep(&p->pb);
    avformat_free_context(p);
  }
};
using OutputFormatPtr = std::unique_ptr<AVFormatContext, OutputFormatDeleter>;

struct CodecContextDeleter {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
using CodecContextPtr = std::unique_ptr<AVCodecContext, CodecContextDeleter>;

struct FrameDeleter {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;

struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;

struct SwsDeleter {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;

/// Reference to an AVBufferRef (hardware device or frames context).
struct BufferRefDeleter {
  void operator()(AVBufferRef* p) const { av_buffer_unref(&p); }
};
using BufferRefPtr = std::unique_ptr<AVBufferRef, BufferRefDeleter>;

/// Allocation helpers that throw instead of returning null.
inline FramePtr make_frame() {
  FramePtr f(av_frame_alloc());
  HOLO_CHECK(f != nullptr, "av_frame_alloc: out of memory");
  return f;
}
inline PacketPtr make_packet() {
  PacketPtr p(av_packet_alloc());
  HOLO_CHECK(p != nullptr, "av_packet_alloc: out of memory");
  return p;
}
inline CodecContextPtr make_codec_context(const AVCodec* codec) {
  CodecContextPtr c(avcodec_alloc_context3(codec));
  HOLO_CHECK(c != nullptr, "avcodec_alloc_context3: out of memory");
  return c;
}

/// Clears a packet's payload on scope exit (av_packet_unref), for read loops.
class PacketUnref {
 public:
  explicit PacketUnref(AVPacket* p) : p_(p) {}
  ~PacketUnref() { av_packet_unref(p_); }
  PacketUnref(const PacketUnref&) = delete;
  PacketUnref& operator=(const PacketUnref&) = delete;

 private:
  AVPacket* p_;
};

/// The largest block libav may allocate at once (av_max_alloc), 256 MiB. Decoding needs far less
/// (an 8K RGB frame is 100 MB, an hour's frame index a few MB), but a damaged file can claim
/// billions of index entries or a huge frame and make a demuxer grow its tables to gigabytes;
/// with the cap the allocation fails, the open or read returns an error and the video is
/// quarantined as unreadable instead of taking the node's memory (docs/pipeline.md).
inline constexpr size_t kMaxLibavAllocation = size_t{256} << 20;

/// Process-wide libav settings, applied once on first use of the decoder, the probe or the
/// writer: av_log limited to fatal messages (Holo reports decode and encode problems itself)
/// and the allocation cap above.
inline void configure_libav() {
  static const bool done = [] {
    av_log_set_level(AV_LOG_FATAL);
    av_max_alloc(kMaxLibavAllocation);
    return true;
  }();
  (void)done;
}

/// libav's error text for a return code.
inline std::string error_string(int rc) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(rc, buf, sizeof buf);
  return buf;
}

}  // namespace holo::pipeline::av
