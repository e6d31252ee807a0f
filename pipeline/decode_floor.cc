#include "pipeline/decode_floor.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/time.h"
#include "pipeline/av_handles.h"
#include "pipeline/decoder.h"

namespace holo::pipeline {

DecodeFloor time_decode_floor(const std::vector<std::string>& files,
                              const std::vector<std::vector<int64_t>>& starts, int frames,
                              int stride) {
  HOLO_CHECK(files.size() == starts.size(), "time_decode_floor: one list of starts per file");
  HOLO_CHECK(frames > 0 && stride > 0, "time_decode_floor: frames and stride must be positive");
  av::configure_libav();
  DecodeFloor out;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& path = files[i];
    AVFormatContext* raw = nullptr;
    int rc = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
    if (rc < 0) throw DecodeError(path, "not a readable container (" + av::error_string(rc) + ")");
    av::InputFormatPtr format(raw);
    if ((rc = avformat_find_stream_info(format.get(), nullptr)) < 0) {
      throw DecodeError(path, "no stream information (" + av::error_string(rc) + ")");
    }
    const int stream = av_find_best_stream(format.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    if (stream < 0) throw DecodeError(path, "no video stream");
    const AVCodecParameters* par = format->streams[stream]->codecpar;
    const AVCodec* codec = avcodec_find_decoder(par->codec_id);
    if (codec == nullptr) throw DecodeError(path, "no decoder");
    av::CodecContextPtr ctx = av::make_codec_context(codec);
    HOLO_AV_CHECK(avcodec_parameters_to_context(ctx.get(), par));
    ctx->thread_count = 1;
    ctx->pkt_timebase = format->streams[stream]->time_base;
    if ((rc = avcodec_open2(ctx.get(), codec, nullptr)) < 0) {
      throw DecodeError(path, "cannot open the decoder (" + av::error_string(rc) + ")");
    }
    // The frame table: presentation timestamps of all packets, sorted (as the loaders build it).
    // It names frames by their packets' own timestamps, as PyAV's loaders do: a file whose
    // packets do not all carry one (AVI, MPEG program streams, whose PES timestamps are not
    // the frames'; docs/pipeline.md) has no floor of this kind.
    if (std::strcmp(format->iformat->name, "mpeg") == 0) {
      throw DecodeError(path, "no decode floor for an MPEG program stream (timestamps per PES packet)");
    }
    av::PacketPtr packet = av::make_packet();
    std::vector<int64_t> pts;
    int64_t unstamped = 0;
    while (av_read_frame(format.get(), packet.get()) >= 0) {
      av::PacketUnref unref(packet.get());
      if (packet->stream_index != stream) continue;
      if (packet->pts == AV_NOPTS_VALUE) {
        ++unstamped;
      } else {
        pts.push_back(packet->pts);
      }
    }
    if (unstamped > 0) {
      throw DecodeError(path, "no decode floor: " + std::to_string(unstamped) +
                                  " video packets have no presentation timestamp");
    }
    std::sort(pts.begin(), pts.end());
    if (pts.empty()) throw DecodeError(path, "no video packets with a timestamp");
    const auto n = static_cast<int64_t>(pts.size());

    av::FramePtr frame = av::make_frame();
    for (const int64_t start : starts[i]) {
      const int64_t first = std::clamp<int64_t>(start, 0, n - 1);
      const int64_t last = std::min<int64_t>(first + int64_t{frames - 1} * stride, n - 1);
      const auto t0 = std::chrono::steady_clock::now();
      rc = av_seek_frame(format.get(), stream, pts[first], AVSEEK_FLAG_BACKWARD);
      if (rc < 0) throw DecodeError(path, "seek to frame " + std::to_string(first) + " failed");
      avcodec_flush_buffers(ctx.get());
      bool done = false, eof = false;
      while (!done) {
        if (!eof) {
          rc = av_read_frame(format.get(), packet.get());
          if (rc < 0) {
            eof = true;
            HOLO_AV_CHECK(avcodec_send_packet(ctx.get(), nullptr));
          } else {
            av::PacketUnref unref(packet.get());
            if (packet->stream_index != stream) continue;
            rc = avcodec_send_packet(ctx.get(), packet.get());
            if (rc < 0) {  // every frame is received after each packet: never EAGAIN
              throw DecodeError(path, "decode error (" + av::error_string(rc) + ")");
            }
          }
        }
        while ((rc = avcodec_receive_frame(ctx.get(), frame.get())) >= 0) {
          ++out.frames_decoded;
          const int64_t t =
              frame->pts != AV_NOPTS_VALUE ? frame->pts : frame->best_effort_timestamp;
          av_frame_unref(frame.get());
          if (t != AV_NOPTS_VALUE && t >= pts[last]) {
            done = true;
            break;
          }
        }
        if (!done && rc == AVERROR_EOF) {
          throw DecodeError(path,
                            "frame " + std::to_string(last) + " never came out of the decoder");
        }
      }
      out.seconds += seconds_since(t0);
      ++out.clips;
    }
  }
  return out;
}

}  // namespace holo::pipeline
