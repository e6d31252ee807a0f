#include "pipeline/video_writer.h"

extern "C" {
#include <libavutil/opt.h>
}

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <vector>

#include "pipeline/av_handles.h"

namespace holo::pipeline {

namespace {
constexpr size_t kRgbPadding = 64;  ///< zero bytes after each frame handed to swscale
}  // namespace

struct VideoWriter::State {
  std::string path;
  std::string tmp_path;
  VideoWriterOptions options;
  av::OutputFormatPtr format;
  av::CodecContextPtr codec;
  av::FramePtr frame;
  av::PacketPtr packet;
  av::SwsPtr sws;
  /// The caller's RGB frame copied here, followed by zeroed padding: swscale's SIMD reads up to
  /// 16 bytes past the end of the last row, which made the bytes written depend on whatever
  /// the heap held after the caller's buffer.
  std::vector<uint8_t> rgb;
  AVStream* stream = nullptr;
  std::string codec_name;
  int64_t frames = 0;
  int64_t next_pts = 0;
  std::map<int64_t, int64_t> durations;  ///< frame pts -> duration, both in the codec time base
  bool closed = false;

  void drain(bool flush) {
    while (true) {
      const int rc = avcodec_receive_packet(codec.get(), packet.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
      HOLO_AV_CHECK(rc);
      auto it = durations.find(packet->pts);
      if (it != durations.end()) {
        packet->duration = it->second;
        durations.erase(it);
      }
      av_packet_rescale_ts(packet.get(), codec->time_base, stream->time_base);
      packet->stream_index = stream->index;
      HOLO_AV_CHECK(av_interleaved_write_frame(format.get(), packet.get()));
    }
    (void)flush;
  }
};

namespace {
/// Opening encoders and scalers is serialised: their one-time global set-up in libav* is not
/// safe to race.
std::mutex& open_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

VideoWriter::VideoWriter(const std::string& path, VideoWriterOptions options) : state_(std::make_unique<State>()) {
  std::lock_guard<std::mutex> lock(open_mutex());
  State& s = *state_;
  s.path = path;
  s.options = options;
  HOLO_CHECK(options.width > 0 && options.height > 0 && options.width % 2 == 0 && options.height % 2 == 0,
             "video size must be positive and even, got " + std::to_string(options.width) + "x" +
                 std::to_string(options.height));
  HOLO_CHECK(options.fps > 0, "fps must be positive");
  av::configure_libav();
  const std::filesystem::path final_path(path);
  s.tmp_path = (final_path.parent_path() / ("." + final_path.filename().string() + ".part")).string();

  const AVOutputFormat* oformat = av_guess_format(nullptr, path.c_str(), nullptr);
  if (oformat == nullptr) throw IoError(path + ": no container format for this file extension");
  AVFormatContext* raw = nullptr;
  HOLO_AV_CHECK(avformat_alloc_output_context2(&raw, oformat, nullptr, s.tmp_path.c_str()));
  s.format.reset(raw);

  const AVCodec* codec = nullptr;
  if (options.codec == "auto" || options.codec == "libx264") codec = avcodec_find_encoder_by_name("libx264");
  if (codec == nullptr && options.codec == "libx264") throw Error("this FFmpeg has no libx264 encoder");
  if (codec == nullptr) codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
  if (codec == nullptr) throw Error("this FFmpeg has neither libx264 nor an MPEG-4 encoder");
  s.codec_name = codec->name;

  s.stream = avformat_new_stream(s.format.get(), nullptr);
  HOLO_CHECK(s.stream != nullptr, "avformat_new_stream failed");
  s.codec = av::make_codec_context(codec);
  AVCodecContext* c = s.codec.get();
  c->width = options.width;
  c->height = options.height;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  const AVRational rate = av_d2q(options.fps, 100000);
  // Variable rate: a millisecond clock; constant: one tick per frame.
  c->time_base = options.variable_rate ? AVRational{1, 1000} : av_inv_q(rate);
  c->framerate = rate;
  c->gop_size = options.gop;
  c->max_b_frames = options.bframes;
  c->thread_count = 1;  // synthetic videos are written many at a time, one per thread
  if (s.format->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if (s.codec_name == "libx264") {
    av_opt_set(c->priv_data, "preset", "veryfast", 0);
    av_opt_set(c->priv_data, "crf", std::to_string(options.quality).c_str(), 0);
    // asm=0: x264's SIMD code (AVX-512 here) made the bytes depend on memory outside the
    // frames (the same seed gave other files with a longer output path, so a synthetic
    // dataset changed from one directory to another); its C code gives the same bytes on every
    // machine. Small synthetic videos encode about 1.5 times slower.
    const std::string params = "asm=0:threads=1:lookahead-threads=1:sync-lookahead=0:scenecut=0:keyint=" + std::to_string(options.gop) +
                               ":min-keyint=" + std::to_string(options.gop) +
                               ":bframes=" + std::to_string(options.bframes) +
                               (options.adaptive_bframes ? "" : ":b-adapt=0");
    av_opt_set(c->priv_data, "x264-params", params.c_str(), 0);
  } else {
    c->flags |= AV_CODEC_FLAG_QSCALE;
    c->global_quality = FF_QP2LAMBDA * std::max(2, std::min(31, options.quality / 6));
  }
  HOLO_AV_CHECK(avcodec_open2(c, codec, nullptr));
  HOLO_AV_CHECK(avcodec_parameters_from_context(s.stream->codecpar, c));
  s.stream->time_base = c->time_base;
  s.stream->avg_frame_rate = rate;

  HOLO_AV_CHECK(avio_open(&s.format->pb, s.tmp_path.c_str(), AVIO_FLAG_WRITE));
  AVDictionary* mux_options = nullptr;
  if (options.faststart && std::string(oformat->name).find("mp4") != std::string::npos) {
    av_dict_set(&mux_options, "movflags", "+faststart", 0);
  }
  const int rc = avformat_write_header(s.format.get(), &mux_options);
  av_dict_free(&mux_options);
  HOLO_AV_CHECK(rc);

  s.frame = av::make_frame();
  s.frame->format = c->pix_fmt;
  s.frame->width = c->width;
  s.frame->height = c->height;
  HOLO_AV_CHECK(av_frame_get_buffer(s.frame.get(), 0));
  s.packet = av::make_packet();
  // Bit-exact and accurately rounded: the same pixels on every CPU, whatever SIMD it has.
  s.sws.reset(sws_getContext(c->width, c->height, AV_PIX_FMT_RGB24, c->width, c->height, AV_PIX_FMT_YUV420P,
                             SWS_BILINEAR | SWS_BITEXACT | SWS_ACCURATE_RND, nullptr, nullptr, nullptr));
  s.rgb.assign(static_cast<size_t>(c->width) * c->height * 3 + kRgbPadding, 0);
  HOLO_CHECK(s.sws != nullptr, "sws_getContext failed for RGB to YUV420P");
}

VideoWriter::~VideoWriter() {
  if (state_ && !state_->closed) {
    // Abandoned (an exception while writing): drop the partial file.
    state_->format.reset();
    std::error_code ec;
    std::filesystem::remove(state_->tmp_path, ec);
  }
}

void VideoWriter::write(const uint8_t* rgb) {
  State& s = *state_;
  HOLO_CHECK(!s.closed, "VideoWriter::write after close");
  HOLO_AV_CHECK(av_frame_make_writable(s.frame.get()));
  // Whole planes, padding included, so that no byte the encoder may read is left undefined.
  for (int p = 0; p < 3; ++p) {
    const int rows = p == 0 ? s.options.height : (s.options.height + 1) / 2;
    std::memset(s.frame->data[p], 0, static_cast<size_t>(s.frame->linesize[p]) * rows);
  }
  std::memcpy(s.rgb.data(), rgb, s.rgb.size() - kRgbPadding);
  const uint8_t* src[4] = {s.rgb.data(), nullptr, nullptr, nullptr};
  const int src_stride[4] = {s.options.width * 3, 0, 0, 0};
  sws_scale(s.sws.get(), src, src_stride, 0, s.options.height, s.frame->data, s.frame->linesize);
  if (s.options.variable_rate) {
    s.frame->pts = s.next_pts;
    s.next_pts += std::llround(1000.0 * (1 + s.frames % 3) / s.options.fps);
    s.durations[s.frame->pts] = s.next_pts - s.frame->pts;
  } else {
    s.frame->pts = s.frames;
    s.durations[s.frame->pts] = 1;
  }
  HOLO_AV_CHECK(avcodec_send_frame(s.codec.get(), s.frame.get()));
  s.drain(false);
  ++s.frames;
}

void VideoWriter::close() {
  State& s = *state_;
  if (s.closed) return;
  HOLO_AV_CHECK(avcodec_send_frame(s.codec.get(), nullptr));
  s.drain(true);
  HOLO_AV_CHECK(av_write_trailer(s.format.get()));
  s.format.reset();  // closes the file
  std::error_code ec;
  std::filesystem::rename(s.tmp_path, s.path, ec);
  if (ec) throw IoError("cannot move " + s.tmp_path + " to " + s.path + ": " + ec.message());
  s.closed = true;
}

const std::string& VideoWriter::codec_name() const { return state_->codec_name; }
int64_t VideoWriter::frames_written() const { return state_->frames; }

std::string resolve_encoder(const std::string& codec) {
  if ((codec == "auto" || codec == "libx264") && avcodec_find_encoder_by_name("libx264") != nullptr) return "libx264";
  if (codec == "libx264") throw Error("this FFmpeg has no libx264 encoder");
  return "mpeg4";
}

int frame_code_band(int height) { return std::max(6, height / 8); }

void draw_frame_code(uint8_t* rgb, int width, int height, int64_t index) {
  const int band = frame_code_band(height);
  for (int b = 0; b < kFrameCodeBits; ++b) {
    const uint8_t v = ((index >> b) & 1) ? 240 : 16;
    const int x0 = b * width / kFrameCodeBits;
    const int x1 = (b + 1) * width / kFrameCodeBits;
    for (int y = 0; y < band; ++y) {
      for (int x = x0; x < x1; ++x) {
        uint8_t* p = rgb + (static_cast<size_t>(y) * width + x) * 3;
        p[0] = p[1] = p[2] = v;
      }
    }
  }
}

int64_t read_frame_code(const uint8_t* rgb, int width, int height) {
  const int band = frame_code_band(height);
  int64_t index = 0;
  for (int b = 0; b < kFrameCodeBits; ++b) {
    const int x0 = b * width / kFrameCodeBits;
    const int x1 = (b + 1) * width / kFrameCodeBits;
    const int cx0 = x0 + (x1 - x0) / 4, cx1 = std::max(cx0 + 1, x1 - (x1 - x0) / 4);
    const int cy0 = band / 4, cy1 = std::max(cy0 + 1, band - band / 4);
    double sum = 0;
    int n = 0;
    for (int y = cy0; y < cy1; ++y) {
      for (int x = cx0; x < cx1; ++x) {
        const uint8_t* p = rgb + (static_cast<size_t>(y) * width + x) * 3;
        sum += (p[0] + p[1] + p[2]) / 3.0;
        ++n;
      }
    }
    const double mean = sum / std::max(1, n);
    if (mean > 170) {
      index |= int64_t{1} << b;
    } else if (mean >= 85) {
      return -1;
    }
  }
  return index;
}

}  // namespace holo::pipeline
