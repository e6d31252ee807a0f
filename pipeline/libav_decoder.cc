#include "pipeline/libav_decoder.h"

extern "C" {
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <utility>

#include "pipeline/conversion_pool.h"

namespace holo::pipeline {
namespace {
void keep_buffer(void*, uint8_t*) {}  // scaled_ owns the memory sws_scale_frame writes to

/// What an MPEG-1/2 video packet holds: the coding type of its picture (1 I, 2 P, 3 B, 4 D; 0
/// when it has no picture header: 00 00 01 00, 10 bits of temporal reference, 3 bits of type),
/// the closed_gop flag of a group-of-pictures header before the picture (00 00 01 B8, 25 bits
/// of time code, then the flag; -1 when there is none), and the picture size and aspect ratio
/// code of a sequence header before it (00 00 01 B3: 12 bits of width, 12 of height, 4 of
/// aspect; -1 when there is none), packed as width << 16 | height << 4 | aspect.
struct MpegPicture {
  int type = 0;
  int closed_gop = -1;
  int64_t sequence = -1;
};
MpegPicture mpeg_picture(const AVPacket* packet) {
  MpegPicture out;
  const uint8_t* d = packet->data;
  for (int i = 0; d != nullptr && i + 5 < packet->size; ++i) {
    if (d[i] != 0 || d[i + 1] != 0 || d[i + 2] != 1) continue;
    if (d[i + 3] == 0xB8 && i + 7 < packet->size) out.closed_gop = (d[i + 7] >> 6) & 1;
    if (d[i + 3] == 0xB3 && i + 7 < packet->size) {
      const int64_t width = d[i + 4] << 4 | d[i + 5] >> 4, height = (d[i + 5] & 15) << 8 | d[i + 6];
      out.sequence = width << 16 | height << 4 | d[i + 7] >> 4;
    }
    if (d[i + 3] == 0) {
      out.type = (d[i + 5] >> 3) & 7;
      break;
    }
  }
  return out;
}

/// Whether an MPEG program stream ends inside a pack header, a packet or a start code: from
/// `from`, the position of a packet the demuxer read (the last one), the pack headers (start
/// code 00 00 01 BA: 12 bytes in MPEG-1, 14 and up to 7 stuffing bytes in MPEG-2), the packets
/// after them (each a start code and a 16-bit length) and program end codes (00 00 01 B9) must
/// end exactly at the end of the file, and a pack header must have a packet after it. When
/// `from` is unknown or holds no start code, the walk starts at the last pack header in the
/// file's last 128 KiB. Returns the reason, or "" for a whole end and for bytes that do not
/// parse as packs (nothing is judged on them). A cut exactly between two packs cannot be told
/// from an end.
std::string program_stream_cut(const std::string& path, int64_t from) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const int64_t size = static_cast<int64_t>(in.tellg());
  const bool known = from >= 0 && from < size && size - from <= (int64_t{64} << 20);
  const int64_t start = known ? from : std::max<int64_t>(0, size - (int64_t{1} << 17));
  std::vector<uint8_t> tail(static_cast<size_t>(size - start));
  in.seekg(start);
  if (!in.read(reinterpret_cast<char*>(tail.data()), static_cast<std::streamsize>(tail.size())))
    return "";
  const auto n = static_cast<int64_t>(tail.size());
  const auto start_code = [&](int64_t p) {
    return p + 4 <= n && tail[p] == 0 && tail[p + 1] == 0 && tail[p + 2] == 1 ? int{tail[p + 3]}
                                                                              : -1;
  };
  if (known && start_code(0) < 0xB9) return program_stream_cut(path, -1);
  int64_t p = known ? 0 : -1;
  for (int64_t q = n - 4; q >= 0 && p < 0; --q) {
    if (start_code(q) == 0xBA) p = q;
  }
  if (p < 0) return "";
  const auto cut = [&](int64_t at, int64_t needed) {
    return "the file ends inside an MPEG program-stream packet (the one at byte " +
           std::to_string(start + at) + " needs " + std::to_string(needed) + " bytes, " +
           std::to_string(n - at) + " are left)";
  };
  while (p < n) {
    if (n - p < 4) {
      // The start of a start code (00, 00 00, 00 00 01) cut short; other stray bytes after the
      // last pack are not judged.
      const bool prefix = tail[p] == 0 && (n - p < 2 || tail[p + 1] == 0) &&
                          (n - p < 3 || tail[p + 2] == 1);
      return prefix ? cut(p, 4) : "";
    }
    const int code = start_code(p);
    if (code == 0xBA) {
      int64_t header = 0;
      if (p + 5 > n) return cut(p, 12);
      if ((tail[p + 4] & 0xC0) == 0x40) {  // MPEG-2
        if (p + 14 > n) return cut(p, 14);
        header = 14 + (tail[p + 13] & 7);
      } else if ((tail[p + 4] & 0xF0) == 0x20) {  // MPEG-1
        header = 12;
      } else {
        return "";
      }
      if (p + header > n) return cut(p, header);
      if (p + header == n) {
        return "the file ends after the MPEG program-stream pack header at byte " +
               std::to_string(start + p) + ", before its packets";
      }
      p += header;
      continue;
    }
    if (code == 0xB9) {  // program end
      p += 4;
      continue;
    }
    if (code < 0xBB) return "";  // not a packet (not a pack after all): no judgement
    if (p + 6 > n) return cut(p, 6);
    const int64_t length = 6 + (int64_t{tail[p + 4]} << 8 | tail[p + 5]);
    if (p + length > n) return cut(p, length);
    p += length;
  }
  return "";
}

/// Whether an Ogg file ends inside a page: from the first page in its last 128 KiB (a page is
/// at most 65307 bytes: "OggS", version 0, 22 bytes of header, a count of segments, their
/// lengths and their bytes), each page must be followed by the next or end exactly at the end
/// of the file. A chain that breaks (bytes that are not a page) starts again at the next "OggS".
/// Returns the reason, or "" for a whole end.
std::string ogg_cut(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const int64_t size = static_cast<int64_t>(in.tellg());
  const int64_t start = std::max<int64_t>(0, size - (int64_t{1} << 17));
  std::vector<uint8_t> tail(static_cast<size_t>(size - start));
  in.seekg(start);
  if (!in.read(reinterpret_cast<char*>(tail.data()), static_cast<std::streamsize>(tail.size()))) {
    return "";
  }
  const auto n = static_cast<int64_t>(tail.size());
  const auto page_at = [&](int64_t p) {
    return p + 5 <= n && std::memcmp(&tail[p], "OggS", 4) == 0 && tail[p + 4] == 0;
  };
  const auto cut = [&](int64_t at, int64_t needed) {
    return "the file ends inside an Ogg page (the one at byte " + std::to_string(start + at) +
           " needs " + std::to_string(needed) + " bytes, " + std::to_string(n - at) + " are left)";
  };
  int64_t p = 0;
  while (p < n && !page_at(p)) ++p;
  while (p < n) {
    if (p + 27 > n) return cut(p, 27);
    const int segments = tail[p + 26];
    if (p + 27 + segments > n) return cut(p, 27 + segments);
    int64_t length = 27 + segments;
    for (int k = 0; k < segments; ++k) length += tail[p + 27 + k];
    if (p + length == n) return "";
    if (p + length > n) return cut(p, length);
    if (page_at(p + length)) {
      p += length;
      continue;
    }
    for (++p; p < n && !page_at(p); ++p) {
    }
  }
  return "";
}

}  // namespace

int find_video_stream(AVFormatContext* format, bool* cover) {
  const auto is_cover = [&](int i) {
    return (format->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC) != 0;
  };
  if (cover != nullptr) *cover = false;
  for (unsigned i = 0; i < format->nb_streams; ++i) {
    const bool video = format->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO;
    if (cover != nullptr && video && is_cover(static_cast<int>(i))) *cover = true;
  }
  const int best = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (best >= 0 && !is_cover(best)) return best;
  for (unsigned i = 0; i < format->nb_streams; ++i) {
    if (format->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
        !is_cover(static_cast<int>(i))) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::string no_video_reason(const AVFormatContext* format, bool cover) {
  bool audio = false;
  for (unsigned i = 0; i < format->nb_streams; ++i) {
    audio |= format->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO;
  }
  if (audio && cover) return "audio only (no video stream; its picture is a cover)";
  return audio ? "audio only (no video stream)" : "no video stream";
}

/// Scaling and conversion of decoded frames to packed RGB rows of a FrameBuffer, with the
/// swscale contexts and buffers of one thread: swscale contexts are not thread-safe, so every
/// thread that converts has its own.
class FrameConverter {
 public:
  FrameConverter(const std::string& path, int max_sws_threads)
      : path_(path), max_sws_threads_(max_sws_threads) {}
  /// Writes `sw` (in system memory) into `out` at every frame position in `slots`.
  void convert(const AVFrame* sw, const std::vector<int64_t>& slots, FrameBuffer& out);

 private:
  const std::string& path_;
  const int max_sws_threads_;
  av::SwsPtr sws_;      ///< made for one source and output size and format
  av::SwsPtr sws_rgb_;  ///< the second pass (4:4:4 to RGB) of two, else null
  av::FramePtr mid_;    ///< the first pass's output when there are two
  /// Source width, height, pixel format; output width, height; source matrix and range.
  int sws_key_[7] = {0, 0, -1, 0, 0, -1, -1};
  av::FramePtr scaled_frame_;    ///< wraps scaled_ for sws_scale_frame
  std::vector<uint8_t> scaled_;  ///< swscale's output, rows padded (see convert)
};

LibavDecoder::LibavDecoder(std::string path, int threads, int conversion_threads)
    : path_(std::move(path)), threads_(threads), conversion_override_(conversion_threads) {}
LibavDecoder::~LibavDecoder() = default;

void LibavDecoder::open() {
  av::configure_libav();
  const int conversion_threads =
      conversion_override_ >= 0 ? conversion_override_ : this->conversion_threads();
  if (conversion_threads > 0 && conversion_threads >= threads_) {
    throw Error(path_ + ": " + std::to_string(conversion_threads) +
                " conversion threads need more decoder threads than that, not " +
                std::to_string(threads_));
  }
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) throw DecodeError(path_, "missing file");
  const auto size = std::filesystem::file_size(path_, ec);
  if (ec) throw DecodeError(path_, "cannot read file size: " + ec.message());
  if (size == 0) throw DecodeError(path_, "zero-byte file");

  AVFormatContext* raw = nullptr;
  int rc = avformat_open_input(&raw, path_.c_str(), nullptr, nullptr);
  if (rc < 0) throw DecodeError(path_, "not a readable container (" + av::error_string(rc) + ")");
  format_.reset(raw);
  program_stream_ = std::strcmp(format_->iformat->name, "mpeg") == 0;

  bool cover = false;
  stream_ = find_video_stream(format_.get(), &cover);
  if (stream_ < 0 || format_->streams[stream_]->codecpar->width <= 0) {
    // Some containers only know the stream parameters after reading a little.
    rc = avformat_find_stream_info(format_.get(), nullptr);
    if (rc < 0) throw DecodeError(path_, "cannot read stream info (" + av::error_string(rc) + ")");
    stream_ = find_video_stream(format_.get(), &cover);
  }
  if (stream_ < 0) throw DecodeError(path_, no_video_reason(format_.get(), cover));
  for (unsigned i = 0; i < format_->nb_streams; ++i) {
    if (static_cast<int>(i) != stream_) format_->streams[i]->discard = AVDISCARD_ALL;
  }
  const AVStream* st = format_->streams[stream_];
  const AVCodecParameters& par = *st->codecpar;
  if (par.width <= 0 || par.height <= 0) throw DecodeError(path_, "video stream without a frame size");

  const AVCodec* codec = find_codec(par);
  if (codec == nullptr) {
    throw DecodeError(path_, std::string("no decoder for codec ") + avcodec_get_name(par.codec_id));
  }
  codec_ = av::make_codec_context(codec);
  HOLO_AV_CHECK(avcodec_parameters_to_context(codec_.get(), &par));
  // More than one thread: a third of them (at least one) convert frames to RGB while the rest
  // decode (docs/pipeline.md, "Threads"). With 2 threads, 1 + 1 decoded 1.3x the frames/s of 2
  // frame threads converting in between, and 1.5x the random clips. 0 leaves the thread count
  // to FFmpeg and converts in between. A backend sets its own split (conversion_threads());
  // DecoderOptions::conversion_threads overrides it.
  codec_->thread_count = threads_ - conversion_threads;
  codec_->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
  codec_->pkt_timebase = st->time_base;
  configure(codec_.get());
#if LIBAVCODEC_VERSION_MAJOR >= 60
  codec_->flags |= AV_CODEC_FLAG_COPY_OPAQUE;  // a packet's opaque (its generation) reaches its frame
#endif
  rc = avcodec_open2(codec_.get(), codec, nullptr);
  if (rc < 0) throw DecodeError(path_, "cannot open the " + std::string(codec->name) + " decoder (" + av::error_string(rc) + ")");
  // FFmpeg's H.264 decoder frees its tables on a reset and sets them up again on the next
  // packet, renegotiating the output format: with the NVDEC hwaccel that tears down and
  // creates the GPU decoder and its frame pool at every seek. A seek that lands on an IDR
  // needs no reset: an IDR starts a new coded sequence that refers to nothing before it, and
  // the decoder treats it as it does every IDR of a stream read from start to end; the frames
  // still in the decoder from before the seek come out first and are dropped by generation.
  soft_seeks_ = par.codec_id == AV_CODEC_ID_H264 && std::strcmp(codec->name, "h264") == 0;
  if (soft_seeks_ && par.extradata != nullptr && par.extradata_size >= 7 && par.extradata[0] == 1) {
    nal_length_size_ = (par.extradata[4] & 3) + 1;  // avcC: length-prefixed NAL units
  }

  packet_ = av::make_packet();
  frame_ = av::make_frame();
  // Large frames are also scaled by swscale's slice threads: T / K per conversion thread, so
  // on such frames up to 2T - K threads can be runnable, as ffmpeg's decoder and scale filter
  // threads can be.
  if (conversion_threads > 0) {
    const int sws_threads = threads_ / conversion_threads;
    // The converters name path_ in their errors: it is declared before pool_, so it outlives
    // the pool's threads.
    pool_ = std::make_unique<ConversionPool>(conversion_threads, [this, sws_threads] {
      auto converter = std::make_shared<FrameConverter>(path_, sws_threads);
      return [converter](const AVFrame* frame, const std::vector<int64_t>& slots,
                         FrameBuffer& out) { converter->convert(frame, slots, out); };
    });
  } else {
    converter_ = std::make_unique<FrameConverter>(path_, std::max(1, threads_));
  }
  info_.codec = avcodec_get_name(par.codec_id);
  info_.width = par.width;
  info_.height = par.height;
  info_.time_base_num = st->time_base.num;
  info_.time_base_den = st->time_base.den;
  info_.container_frames = st->nb_frames;
  build_index();
}

const AVCodec* LibavDecoder::find_codec(const AVCodecParameters& par) {
  return avcodec_find_decoder(par.codec_id);
}

void LibavDecoder::build_index() {
  struct Entry {
    int64_t pts;
    int64_t dts;
    int64_t duration;
    bool key;
    int64_t gop = -1;  ///< keyframe packets read before this one, less one
  };
  std::vector<Entry> entries;
  // Packets the container marks to be dropped (AV_PKT_FLAG_DISCARD: samples outside an MP4
  // edit list) are decoded as references but give no frame: they get no index. A group of
  // pictures whose keyframe is such a packet (a file cut by stream copy starts at the keyframe
  // before its first frame) is sought at that keyframe: its dts, by group.
  std::map<int64_t, int64_t> dropped_key_dts;
  int64_t gop = -1;
  int64_t missing_pts = 0;
  int64_t decode_time_only = 0;  // packets with a dts and no pts
  // A program stream stamps PES packets, not frames: a frame that starts inside a PES packet
  // after another one has no pts, and the demuxer's parser hands some frames the pts, or even
  // the dts, of another one. MPEG-1/2 video is shown in an order the standard fixes: a B-frame
  // at once, an I- or P-frame when the next I- or P-frame arrives; each for the duration the
  // parser gives its packet (the sequence header's frame period, longer by half for a picture
  // that repeats a field: soft telecine). Such files are numbered from their packets' order and
  // picture types.
  const AVStream* video = format_->streams[stream_];
  const int codec_id = video->codecpar->codec_id;
  const bool picture_order =
      program_stream_ && (codec_id == AV_CODEC_ID_MPEG1VIDEO || codec_id == AV_CODEC_ID_MPEG2VIDEO);
  struct Picture {
    MpegPicture picture;
    int size;
    int64_t duration;
    bool key;
  };
  std::vector<Picture> pictures;  // picture_order: every video packet, in decode order
  int64_t first_dts = AV_NOPTS_VALUE;
  // A video packet that the end of the file cuts short (the demuxer read less than the
  // container gives it and flags it AV_PKT_FLAG_CORRUPT) gives no frame, or one whose missing
  // part the codec invents: it gets no index, and is not decoded.
  int64_t tail_pts = AV_NOPTS_VALUE, tail_pos = -1;
  int rc = 0;
  while ((rc = av_read_frame(format_.get(), packet_.get())) >= 0) {
    av::PacketUnref unref(packet_.get());
    last_packet_pos_ = std::max(last_packet_pos_, packet_->pos);
    if (packet_->stream_index != stream_) continue;
    if (picture_order) {
      if (first_dts == AV_NOPTS_VALUE)
        first_dts = packet_->dts != AV_NOPTS_VALUE ? packet_->dts : 0;
      pictures.push_back({mpeg_picture(packet_.get()), packet_->size, packet_->duration,
                          (packet_->flags & AV_PKT_FLAG_KEY) != 0});
      continue;
    }
    const bool key = (packet_->flags & AV_PKT_FLAG_KEY) != 0;
    gop += key ? 1 : 0;
    if (packet_->flags & AV_PKT_FLAG_DISCARD) {
      ++dropped_packets_;
      if (key && packet_->dts != AV_NOPTS_VALUE) dropped_key_dts[gop] = packet_->dts;
      continue;
    }
    if (packet_->pts == AV_NOPTS_VALUE && packet_->dts != AV_NOPTS_VALUE) ++decode_time_only;
    int64_t pts = packet_->pts != AV_NOPTS_VALUE ? packet_->pts : packet_->dts;
    if (pts == AV_NOPTS_VALUE) {
      ++missing_pts;
      continue;
    }
    entries.push_back({pts, packet_->dts, packet_->duration, key, gop});
    // Only the last video packet counts, and only at the end of the file.
    tail_pts = (packet_->flags & AV_PKT_FLAG_CORRUPT) != 0 ? pts : AV_NOPTS_VALUE;
    tail_pos = packet_->pos;
  }
  if (tail_pts != AV_NOPTS_VALUE && rc == AVERROR_EOF) {
    tail_cut_ = true;
    cut_packet_pos_ = tail_pos;
    entries.erase(std::remove_if(entries.begin(), entries.end(),
                                 [&](const Entry& e) { return e.pts == tail_pts; }),
                  entries.end());
  }
  if (picture_order && !pictures.empty()) {
    // Read from the start of the file, FFmpeg's MPEG-1/2 decoder gives no frame for a packet
    // without a picture header or with a D-picture (it refuses them), a P-frame before the
    // first I-frame, and a B-frame while it holds fewer than two reference pictures, unless the
    // group of pictures is closed (an open one's leading B-frames refer to a picture before the
    // file's first). A sequence header with another picture size or aspect ratio (a recording
    // that switches between 4:3 and 16:9, files joined end to end) makes it start over: the
    // reference picture it held back for display is never shown, and it holds none. Those
    // packets get no frame index; the others are shown in display order, each for its
    // packet's duration (where the parser gives none: the shortest duration it gave others,
    // else the stream's frame rate, which for soft telecine is the field rate).
    int64_t tick = 0;
    for (const Picture& p : pictures) {
      if (p.duration > 0 && (tick == 0 || p.duration < tick)) tick = p.duration;
    }
    if (tick == 0) {
      const AVRational rate =
          video->r_frame_rate.num > 0 ? video->r_frame_rate : video->avg_frame_rate;
      if (rate.num > 0 && rate.den > 0) tick = av_rescale_q(1, av_inv_q(rate), video->time_base);
    }
    if (tick <= 0) {
      throw DecodeError(path_, "broken timestamps: an MPEG program stream without a frame rate");
    }
    for (Picture& p : pictures) p.duration = p.duration > 0 ? p.duration : tick;
    // In decode order: which packets give frames, and when each frame is shown.
    std::vector<bool> frame(pictures.size());
    std::vector<int64_t> pts(pictures.size(), AV_NOPTS_VALUE);
    int64_t shown = first_dts, held = -1;  // held: the reference frame waiting for the next one
    const auto show = [&](size_t j) {
      pts[j] = shown;
      shown += pictures[j].duration;
    };
    int references = 0;
    bool closed = false, intra = false;
    int64_t sequence = -1;
    for (size_t j = 0; j < pictures.size(); ++j) {
      const MpegPicture& p = pictures[j].picture;
      if (p.sequence >= 0) {
        if (sequence >= 0 && p.sequence != sequence) {
          if (held >= 0) frame[static_cast<size_t>(held)] = false;  // never shown
          held = -1;
          references = 0;
        }
        sequence = p.sequence;
      }
      if (p.closed_gop >= 0) closed = p.closed_gop == 1;
      if (p.type == 1) {
        intra = true;
        ++references;
        frame[j] = true;
      } else if (p.type == 2) {
        frame[j] = intra;
        references += intra ? 1 : 0;
      } else if (p.type == 3) {
        frame[j] = references >= 2 || (references == 1 && closed);
      }
      if (!frame[j]) continue;
      if (p.type == 3) {
        show(j);
        continue;
      }
      if (held >= 0) show(static_cast<size_t>(held));
      held = static_cast<int64_t>(j);
    }
    if (held >= 0) show(static_cast<size_t>(held));
    for (size_t j = 0; j < pictures.size(); ++j) {
      picture_order_.emplace_back(pictures[j].size, frame[j] ? pts[j] : AV_NOPTS_VALUE);
      if (frame[j]) {
        // The dts only names keyframes for seeks, which in a program stream go to the start.
        entries.push_back({pts[j], pts[j], pictures[j].duration, pictures[j].key});
      }
    }
  }
  // Reading stops at the end of the file or at the first unreadable packet (a truncated file):
  // either way the table holds what can be read.
  if (entries.empty()) {
    if (missing_pts == 0 && info_.container_frames > 0 && ends_early()) {
      throw DecodeError(path_, "truncated: the container lists " +
                                   std::to_string(info_.container_frames) +
                                   " frames, none can be read");
    }
    throw DecodeError(path_, missing_pts > 0 ? "broken timestamps: no video packet has a timestamp"
                                             : "no video frames");
  }
  if (missing_pts > 0) {
    throw DecodeError(path_,
                      "broken timestamps: " + std::to_string(missing_pts) + " of " +
                          std::to_string(missing_pts + static_cast<int64_t>(entries.size())) +
                          " video packets have no timestamp");
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.pts < b.pts; });
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].pts == entries[i - 1].pts) {
      throw DecodeError(path_, "broken timestamps: two frames share the timestamp " +
                                   std::to_string(entries[i].pts));
    }
  }
  for (Entry& e : entries) {
    // The first frame shown of a group whose keyframe gives none: seeks to it start at that
    // keyframe.
    auto it = dropped_key_dts.find(e.gop);
    if (it == dropped_key_dts.end()) continue;
    e.key = true;
    e.dts = it->second;
    dropped_key_dts.erase(it);
  }
  if (!entries.front().key) {
    // A stream that does not start on a keyframe still decodes from its first packet on (the
    // first frames may be lost); treat the start as the first place to seek to.
    entries.front().key = true;
  }
  info_.frames = static_cast<int64_t>(entries.size());
  info_.pts.resize(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    info_.pts[i] = entries[i].pts;
    if (entries[i].key) {
      info_.keyframes.push_back(static_cast<int64_t>(i));
      key_dts_.push_back(entries[i].dts != AV_NOPTS_VALUE ? entries[i].dts : entries[i].pts);
    }
  }
  sorted_pts_ = info_.pts;
  // Packets without a pts (AVI, which stores frames in decode order only) numbered by their
  // dts: with B-frames, the dts order is not the display order, and the decoder stamps each
  // frame with the timestamp of the packet that made it come out (the display position plus
  // the reordering delay). Such files are decoded from their start, where the first frame out
  // is frame 0 and gives the delay; see decode_until.
  from_start_ = decode_time_only > 0;
  info_.decode_order_timestamps = from_start_;

  const double tb = static_cast<double>(info_.time_base_num) / info_.time_base_den;
  int64_t last_duration = entries.back().duration;
  std::vector<int64_t> deltas;
  for (size_t i = 1; i < entries.size(); ++i) deltas.push_back(entries[i].pts - entries[i - 1].pts);
  if (!deltas.empty()) {
    std::vector<int64_t> sorted = deltas;
    std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
    const int64_t median = sorted[sorted.size() / 2];
    if (last_duration <= 0) last_duration = median;
    // AVI's header gives a stream's length in ticks of its time base, which is a frame unless
    // the muxer chose a finer one (H.264 with B-frames stream-copied into AVI ticks at half
    // frames): count it in frames.
    if (median > 1 && std::strcmp(format_->iformat->name, "avi") == 0) {
      info_.container_frames /= median;  // down: leading empty chunks must not add a frame
    }
    const double tolerance = std::max(1.0, 0.01 * static_cast<double>(median));
    for (int64_t d : deltas) {
      if (std::abs(static_cast<double>(d - median)) > tolerance) {
        info_.variable_rate = true;
        break;
      }
    }
  }
  if (last_duration <= 0) {
    const AVRational rate = format_->streams[stream_]->avg_frame_rate;
    last_duration = rate.num > 0 ? static_cast<int64_t>(std::llround(rate.den / (tb * rate.num))) : 1;
  }
  info_.duration = static_cast<double>(entries.back().pts - entries.front().pts + last_duration) * tb;
  info_.fps = info_.duration > 0 ? static_cast<double>(info_.frames) / info_.duration : 0.0;
  check_tail(rc);
  next_index_ = -1;  // the read position is at the end: the first request seeks
}

void LibavDecoder::check_tail(int read_rc) {
  VideoInfo& i = info_;
  // Packets outside an edit list are in the container's count but are not frames.
  const int64_t listed = std::max<int64_t>(0, i.container_frames - dropped_packets_);
  i.declared_frames = listed;
  char text[200];
  const AVStream* st = format_->streams[stream_];
  const double frame = i.frames > 0 ? i.duration / static_cast<double>(i.frames) : 0.0;
  std::string shortfall;
  if (listed > i.frames) {
    shortfall = "the container lists " + std::to_string(listed) + " frames, " +
                std::to_string(i.frames) + " can be read";
  } else if (i.container_frames == 0) {
    // Containers without a frame count: a declared duration against the readable video. The
    // video track's own (a tag that ffmpeg and mkvmerge write into Matroska and WebM, or a
    // stream header) must be reached to two frames or 0.25 s (a held last frame of a variable
    // rate file may last longer than the others); the file's covers every stream (audio may
    // run longer), so it gets 0.5 s or 5%. ffmpeg writes the tag as the track's end time (from
    // 0, a late first frame included), mkvmerge as its length: the readable video reaches the
    // declared duration if either its end time or its length does. A duration the demuxer
    // estimated from the packets it read (MPEG-TS, MPEG-PS) or from the bit rate declares
    // nothing.
    double declared = 0, tolerance = 0;
    const char* what = "";
    int h = 0, m = 0;
    double sec = 0;
    const AVDictionaryEntry* tag = av_dict_get(st->metadata, "DURATION", nullptr, 0);
    const bool estimated = format_->duration_estimation_method != AVFMT_DURATION_FROM_STREAM;
    if (tag != nullptr && std::sscanf(tag->value, "%d:%d:%lf", &h, &m, &sec) == 3) {
      declared = h * 3600.0 + m * 60.0 + sec;
      tolerance = std::max(2 * frame, 0.25);
      what = "the video track's DURATION tag";
    } else if (!estimated && st->duration != AV_NOPTS_VALUE && st->duration > 0) {
      declared = static_cast<double>(st->duration) * av_q2d(st->time_base);
      tolerance = std::max(2 * frame, 0.25);
      what = "the video stream's header";
    } else if (!estimated && format_->duration > 0) {
      declared = static_cast<double>(format_->duration) / AV_TIME_BASE;
      tolerance = std::max(0.5, 0.05 * declared);
      what = "the container's header";
    }
    const double end_time = i.duration + static_cast<double>(i.pts.front()) * av_q2d(st->time_base);
    if (declared > 0 && std::max(i.duration, end_time) < declared - tolerance) {
      std::snprintf(text, sizeof(text), "%s gives %.2f s, %.2f s of video can be read", what,
                    declared, i.duration);
      shortfall = text;
      // The declared duration in frames at the readable rate; more than `frames`, since the
      // readable video falls short of it by more than two frames.
      i.declared_frames = std::max<int64_t>(i.frames + 1, std::llround(declared * i.fps));
    }
  }
  if (!shortfall.empty()) {
    // How much is missing is known: the readable frames may be used (sampling_frames).
    i.shortfall = (ends_early() ? "truncated: " : "") + shortfall;
    return;
  }
  if (std::strcmp(format_->iformat->name, "mpegts") == 0) {
    // A transport stream is whole packets of 188 bytes (192 in M2TS, 204 with error correction).
    const int64_t size = avio_size(format_->pb);
    if (size > 0 && size % 188 != 0 && size % 192 != 0 && size % 204 != 0) {
      i.truncation =
          "the file ends inside a transport-stream packet (" + std::to_string(size) + " bytes)";
      return;
    }
  }
  if (program_stream_) {
    i.truncation = program_stream_cut(path_, last_packet_pos_);
    if (i.truncated()) return;
  }
  if (std::strcmp(format_->iformat->name, "ogg") == 0) {
    // Ogg declares no length either: a page must end at the end of the file.
    i.truncation = ogg_cut(path_);
    if (i.truncated()) return;
  }
  if (read_rc != AVERROR_EOF) {
    // An error at the end of the file (a damaged tail, padding) is not a missing part; one
    // well before it is.
    const int64_t size = avio_size(format_->pb), pos = avio_tell(format_->pb);
    if (size > 0 && pos >= 0 && pos + 4096 < size) {
      i.truncation = "reading stops at byte " + std::to_string(pos) + " of " +
                     std::to_string(size) + ", after " + std::to_string(i.frames) + " frames (" +
                     av::error_string(read_rc) + ")";
      return;
    }
  }
  if (ends_early()) {
    // Cut within what its declared count or duration allows (FLV's 0.5 s, Matroska's two
    // frames): said all the same. The frame of a packet cut short is at least one missing.
    i.shortfall = tail_cut_ ? "truncated: the file ends inside its last video packet"
                            : "truncated: the file ends before its container says it does";
    i.declared_frames = std::max(i.declared_frames, i.frames + (tail_cut_ ? 1 : 0));
  }
}

bool LibavDecoder::ends_early() const {
  if (tail_cut_) return true;
  const int64_t size = avio_size(format_->pb);
  if (size <= 0) return false;
  // The demuxer's index (MP4's sample table; an AVI's idx1) places a frame past the end.
  AVStream* st = format_->streams[stream_];  // avformat_index_get_entry takes it non-const
  for (int e = avformat_index_get_entries_count(st) - 1; e >= 0; --e) {
    const AVIndexEntry* entry = avformat_index_get_entry(st, e);
    if (entry != nullptr && entry->pos + entry->size > size) return true;
  }
  // RIFF (AVI) and Matroska (WebM) give the size of their whole in the first bytes. A RIFF
  // chunk's size counts what follows its 8-byte header; an EBML element's size is a variable
  // length integer whose first byte's leading zeros give its length (all ones: unknown).
  std::ifstream in(path_, std::ios::binary);
  uint8_t head[64] = {0};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  const auto got = static_cast<int64_t>(in.gcount());
  if (got >= 12 && std::memcmp(head, "RIFF", 4) == 0) {
    const int64_t riff =
        int64_t{head[4]} | int64_t{head[5]} << 8 | int64_t{head[6]} << 16 | int64_t{head[7]} << 24;
    return riff + 8 > size;
  }
  const auto vint = [&](int64_t& p, bool* unknown) -> int64_t {
    if (p >= got) return -1;
    int length = 1;
    while (length <= 8 && !(head[p] & (0x80 >> (length - 1)))) ++length;
    if (length > 8 || p + length > got) return -1;
    int64_t v = head[p] & (0xFF >> length);
    bool ones = v == (0xFF >> length);
    for (int b = 1; b < length; ++b) {
      v = v << 8 | head[p + b];
      ones = ones && head[p + b] == 0xFF;
    }
    p += length;
    if (unknown != nullptr) *unknown = ones;
    return v;
  };
  static const uint8_t kEbml[4] = {0x1A, 0x45, 0xDF, 0xA3}, kSegment[4] = {0x18, 0x53, 0x80, 0x67};
  if (got < 8 || std::memcmp(head, kEbml, 4) != 0) return false;
  int64_t p = 4;
  const int64_t header = vint(p, nullptr);
  if (header < 0) return false;
  p += header;
  if (p + 4 > got || std::memcmp(head + p, kSegment, 4) != 0) return false;
  p += 4;
  bool unknown = false;
  const int64_t segment = vint(p, &unknown);
  return segment >= 0 && !unknown && p + segment > size;
}

double VideoInfo::frame_time(int64_t i) const {
  if (pts.empty()) return 0.0;
  i = std::clamp<int64_t>(i, 0, frames - 1);
  return static_cast<double>(pts[i] - pts[0]) * time_base_num / time_base_den;
}

int64_t VideoInfo::frame_at(double seconds) const {
  if (pts.empty()) return 0;
  const double ticks = seconds * time_base_den / time_base_num;
  const int64_t target = pts[0] + static_cast<int64_t>(std::floor(ticks + 1e-6));
  auto it = std::upper_bound(pts.begin(), pts.end(), target);
  const int64_t i = static_cast<int64_t>(it - pts.begin()) - 1;
  return std::clamp<int64_t>(i, 0, frames - 1);
}

int64_t LibavDecoder::index_of_pts(int64_t pts) const {
  auto it = std::lower_bound(sorted_pts_.begin(), sorted_pts_.end(), pts);
  if (it == sorted_pts_.end() || *it != pts) return -1;
  return static_cast<int64_t>(it - sorted_pts_.begin());
}

int64_t LibavDecoder::index_of_frame(const AVFrame* frame) {
  if (!from_start_) {
    return index_of_pts(frame->pts != AV_NOPTS_VALUE ? frame->pts : frame->best_effort_timestamp);
  }
  // Decode-order timestamps (build_index): the first frame after the seek to the start is
  // frame 0, and its timestamp minus frame 0's is the delay, the same for every later frame
  // (skipped frames included). Frames drained at the end of the file have no timestamp: they
  // are the next ones.
  const int64_t ts = frame->best_effort_timestamp;
  if (ts == AV_NOPTS_VALUE) return next_index_ >= 0 && next_index_ < info_.frames ? next_index_ : -1;
  if (delay_ == AV_NOPTS_VALUE) delay_ = ts - info_.pts[0];
  return index_of_pts(ts - delay_);
}

int64_t LibavDecoder::generation_of(const AVFrame* frame) const {
#if LIBAVCODEC_VERSION_MAJOR >= 60
  return static_cast<int64_t>(reinterpret_cast<intptr_t>(frame->opaque));
#else
  return frame->reordered_opaque;
#endif
}

bool LibavDecoder::starts_sequence(const AVPacket* packet) const {
  // An H.264 access unit holds several NAL units (parameter sets, SEI, slices); every slice of
  // a picture has the picture's type, so the first slice decides: an IDR slice (type 5)
  // starts a new sequence. Key packets of open groups of pictures start with a non-IDR slice
  // (type 1, a recovery point): those get the reset.
  const auto decides = [](uint8_t header, bool* idr) {
    const int type = header & 0x1f;
    *idr = type == 5;
    return type >= 1 && type <= 5;  // a slice
  };
  const uint8_t* p = packet->data;
  const int size = packet->size;
  bool idr = false;
  if (p == nullptr || size <= 0) return false;
  if (nal_length_size_ > 0) {
    for (int i = 0; i + nal_length_size_ < size;) {
      uint32_t length = 0;
      for (int b = 0; b < nal_length_size_; ++b) length = (length << 8) | p[i + b];
      i += nal_length_size_;
      if (length == 0 || length > static_cast<uint32_t>(size - i)) return false;
      if (decides(p[i], &idr)) return idr;
      i += static_cast<int>(length);
    }
    return false;
  }
  for (int i = 0; i + 3 < size; ++i) {
    if (p[i] == 0 && p[i + 1] == 0 && p[i + 2] == 1) {
      if (decides(p[i + 3], &idr)) return idr;
      i += 2;
    }
  }
  return false;
}

void LibavDecoder::reset_codec() {
  avcodec_flush_buffers(codec_.get());
  ++counters_.flushes;
  eof_sent_ = false;
}

int64_t LibavDecoder::keyframe_at_or_before(int64_t index) const {
  // The only place where decode-order timestamps can be placed, and where a program stream's
  // frames get their own timestamps.
  if (from_start_ || program_stream_) return 0;
  auto it = std::upper_bound(info_.keyframes.begin(), info_.keyframes.end(), index);
  return it == info_.keyframes.begin() ? 0 : static_cast<int64_t>(it - info_.keyframes.begin()) - 1;
}

void LibavDecoder::seek_to(int64_t k) {
  // k indexes info_.keyframes. A seek to the keyframe packet's dts lands on that packet or
  // before it: mp4's index is in decode time shifted by its edit list when frames are
  // reordered, so it lands one group of pictures early. The decode loop drops the packets
  // before the keyframe's (by their dts, read by the same demuxer as key_dts_) instead of
  // decoding them, checks the frames it gets, and steps one keyframe further back if the seek
  // landed late.
  int rc = program_stream_
               ? av_seek_frame(format_.get(), -1, 0, AVSEEK_FLAG_BYTE)
               : av_seek_frame(format_.get(), stream_, key_dts_[k], AVSEEK_FLAG_BACKWARD);
  if (rc < 0 && k == 0 && format_->pb != nullptr) {
    // Streams without a seek index (raw elementary streams) can still start over.
    rc = static_cast<int>(std::min<int64_t>(0, avio_seek(format_->pb, 0, SEEK_SET)));
    avformat_flush(format_.get());
  }
  if (rc < 0) throw DecodeError(path_, "seek failed (" + av::error_string(rc) + ")");
  ++generation_;
  // A codec told the stream ended accepts packets again only after a reset.
  flush_pending_ = soft_seeks_ && !eof_sent_;
  if (!flush_pending_) reset_codec();
  ++counters_.seeks;
  drained_ = false;
  next_index_ = info_.keyframes[k];
  // A program stream's decode timestamps are not all its own (build_index): nothing is
  // dropped by them, and its packets are counted from the start.
  seek_key_dts_ = program_stream_ ? AV_NOPTS_VALUE : key_dts_[k];
  next_packet_ = 0;
  delay_ = AV_NOPTS_VALUE;
}

void FrameConverter::convert(const AVFrame* sw, const std::vector<int64_t>& slots,
                             FrameBuffer& out) {
  const auto format = static_cast<AVPixelFormat>(sw->format);
  const auto cannot_convert = [&] {
    return DecodeError(path_, std::string("cannot convert pixel format ") + (av_get_pix_fmt_name(format) ?: "?"));
  };
  const size_t row_bytes = static_cast<size_t>(out.width) * 3;
  const size_t frame_bytes = row_bytes * out.height;
  // swscale's SIMD paths write whole vectors, past the end of a row whose width is not a
  // multiple of their width: into the next frame of the clip, or past the end of the buffer
  // for the last one. It writes into rows with at least 64 spare bytes each (a multiple of 64
  // in all), which are then packed into the clip. The spare bytes must hold the whole overrun:
  // with slice threads, a row's overrun that reached the next row could land after the thread
  // of the next band wrote it.
  const int stride = static_cast<int>((row_bytes + 64 + 63) / 64 * 64);
  scaled_.resize(static_cast<size_t>(stride) * out.height + 64);
  // Scaled 8-bit YUV with subsampled chroma goes through two swscale passes: scaling to YUV
  // 4:4:4 at the output size, then the unscaled conversion to RGB. swscale's one-pass
  // scaled packed-RGB output interpolates chroma horizontally only at some output widths; at
  // the others (most even widths) colours came out 28-38 dB PSNR from a full-chroma reference,
  // against 39-45 dB for the two passes, which take about as long at those widths and 1.6-2.5x
  // less at the others (docs/pipeline.md).
  // Other sources (RGB, 4:4:4, more than 8 bits) and unscaled frames take one pass; unscaled
  // 4:2:0 is swscale's special converter, as in `ffmpeg -pix_fmt rgb24`.
  const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(format);
  if (desc == nullptr) throw cannot_convert();
  const bool yuv = !(desc->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL)) && desc->nb_components >= 3;
  const bool scaled = sw->width != out.width || sw->height != out.height;
  const bool two_pass = scaled && yuv && desc->comp[0].depth == 8 && (desc->log2_chroma_w > 0 || desc->log2_chroma_h > 0);
  // The YUV matrix and range are the frame's, as ffmpeg's scale filter takes them: BT.601 when
  // the file names no matrix, full range for "yuvj" formats or frames flagged full range. The
  // first of two passes keeps the range (full-range sources scale to full-range 4:4:4).
  const bool full_range = format == AV_PIX_FMT_YUVJ420P || format == AV_PIX_FMT_YUVJ422P ||
                          format == AV_PIX_FMT_YUVJ440P || format == AV_PIX_FMT_YUVJ411P ||
                          format == AV_PIX_FMT_YUVJ444P || sw->color_range == AVCOL_RANGE_JPEG;
  const AVPixelFormat mid_format = full_range ? AV_PIX_FMT_YUVJ444P : AV_PIX_FMT_YUV444P;
  // One swscale context per pass, source size and format, with slice threads when this
  // converter's share of the decoder's threads is more than one (they exist only behind
  // sws_scale_frame) and the frame is large enough: one per 2^18 source and output pixels (a
  // 512x512 frame scaled to 128x128 gets one, 1280x720 to 455x256 three, unscaled 1080p all).
  // Waking them costs more than it saves on small frames while the other threads keep the
  // cores busy: 480x360 to 171x128 with 2 threads decoded 64-75 clips/s with one, 52-70 with
  // two (docs/pipeline.md). Each thread scales a band of output rows with the same filters:
  // the pixels equal the one-thread ones.
  const int64_t pixels = int64_t{sw->width} * sw->height + int64_t{out.width} * out.height;
  const int sws_threads =
      static_cast<int>(std::clamp<int64_t>(pixels >> 18, 1, std::max(1, max_sws_threads_)));
  const auto make_sws = [&](int sw_w, int sw_h, int sw_format, int dst_format) {
    av::SwsPtr sws(sws_alloc_context());
    if (!sws) throw cannot_convert();
    SwsContext* c = sws.get();
    av_opt_set_int(c, "srcw", sw_w, 0);
    av_opt_set_int(c, "srch", sw_h, 0);
    av_opt_set_int(c, "src_format", sw_format, 0);
    av_opt_set_int(c, "dstw", out.width, 0);
    av_opt_set_int(c, "dsth", out.height, 0);
    av_opt_set_int(c, "dst_format", dst_format, 0);
    av_opt_set_int(c, "sws_flags", SWS_BILINEAR, 0);
    av_opt_set_int(c, "threads", sws_threads, 0);
    if (sws_init_context(c, nullptr, nullptr) < 0) throw cannot_convert();
    if (yuv && dst_format == AV_PIX_FMT_RGB24) {
      // swscale passes these on to its slice threads' contexts (tested at 1280x720, 3 threads).
      if (sws_setColorspaceDetails(c, sws_getCoefficients(sw->colorspace), full_range ? 1 : 0,
                                   sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16) < 0) {
        throw cannot_convert();
      }
    }
    return sws;
  };
  if (!sws_ || sws_key_[0] != sw->width || sws_key_[1] != sw->height || sws_key_[2] != sw->format ||
      sws_key_[3] != out.width || sws_key_[4] != out.height || sws_key_[5] != sw->colorspace ||
      sws_key_[6] != sw->color_range) {
    sws_.reset();
    sws_rgb_.reset();
    if (two_pass) {
      // The 4:4:4 frame's rows get 64 spare bytes, like the RGB rows below.
      mid_ = av::make_frame();
      mid_->width = out.width + 64;
      mid_->height = out.height;
      mid_->format = mid_format;
      if (av_frame_get_buffer(mid_.get(), 64) < 0) throw std::bad_alloc();
      mid_->width = out.width;
      sws_rgb_ = make_sws(out.width, out.height, mid_format, AV_PIX_FMT_RGB24);
      sws_ = make_sws(sw->width, sw->height, sw->format, mid_format);
    } else {
      sws_ = make_sws(sw->width, sw->height, sw->format, AV_PIX_FMT_RGB24);
    }
    sws_key_[0] = sw->width;
    sws_key_[1] = sw->height;
    sws_key_[2] = sw->format;
    sws_key_[3] = out.width;
    sws_key_[4] = out.height;
    sws_key_[5] = sw->colorspace;
    sws_key_[6] = sw->color_range;
  }
  if (!scaled_frame_) scaled_frame_ = av::make_frame();
  AVFrame* dst = scaled_frame_.get();
  av_frame_unref(dst);
  dst->buf[0] = av_buffer_create(scaled_.data(), static_cast<int>(scaled_.size()), keep_buffer, nullptr, 0);
  if (dst->buf[0] == nullptr) throw std::bad_alloc();
  dst->data[0] = scaled_.data();
  dst->linesize[0] = stride;
  dst->width = out.width;
  dst->height = out.height;
  dst->format = AV_PIX_FMT_RGB24;
  int rc = 0;
  if (sws_rgb_) {
    rc = sws_scale_frame(sws_.get(), mid_.get(), sw);
    if (rc >= 0) rc = sws_scale_frame(sws_rgb_.get(), dst, mid_.get());
  } else {
    rc = sws_scale_frame(sws_.get(), dst, sw);
  }
  av_frame_unref(dst);
  if (rc < 0) throw DecodeError(path_, "scaling failed (" + av::error_string(rc) + ")");
  uint8_t* first = out.data.data() + slots[0] * frame_bytes;
  for (int y = 0; y < out.height; ++y) {
    std::memcpy(first + y * row_bytes, scaled_.data() + static_cast<size_t>(y) * stride, row_bytes);
  }
  for (size_t s = 1; s < slots.size(); ++s) {
    std::memcpy(out.data.data() + slots[s] * frame_bytes, first, frame_bytes);
  }
}

bool LibavDecoder::decode_until(const std::vector<int64_t>& targets, size_t& k,
                                const std::vector<std::vector<int64_t>>& slots, FrameBuffer& out) {
  const int64_t target = targets[k];
  while (true) {
    // Drain every frame the decoder has ready.
    while (true) {
      int rc = avcodec_receive_frame(codec_.get(), frame_.get());
      if (rc == AVERROR(EAGAIN)) break;
      if (rc == AVERROR_EOF) {
        drained_ = true;
        next_index_ = -1;
        return false;
      }
      if (rc < 0) return false;  // a damaged frame: the caller reports the missing target
      if (generation_of(frame_.get()) != generation_) {
        ++counters_.stale;  // sent before the last seek
        av_frame_unref(frame_.get());
        continue;
      }
      ++counters_.decoded;
      const int64_t index = index_of_frame(frame_.get());
      if (index < 0) {
        av_frame_unref(frame_.get());
        continue;
      }
      next_index_ = index + 1;
      if (index > target) {
        av_frame_unref(frame_.get());
        return false;  // the seek landed after the target
      }
      if (index == target && count_only_) {
        av_frame_unref(frame_.get());
        ++k;
        return true;
      }
      if (index == target) {
        const AVFrame* sw = to_system_memory(frame_.get());
        if (pool_) {
          av::FramePtr job = av::make_frame();
          HOLO_AV_CHECK(av_frame_ref(job.get(), sw));
          pool_->submit(std::move(job), slots[k], out);
        } else {
          converter_->convert(sw, slots[k], out);
        }
        ++counters_.converted;
        av_frame_unref(frame_.get());
        ++k;
        return true;
      }
      av_frame_unref(frame_.get());
    }
    if (eof_sent_) return false;  // flushed and nothing more came out
    int rc = av_read_frame(format_.get(), packet_.get());
    if (rc < 0) {
      // End of file, or an unreadable (truncated) tail: flush what the decoder holds.
      avcodec_send_packet(codec_.get(), nullptr);
      eof_sent_ = true;
      continue;
    }
    av::PacketUnref unref(packet_.get());
    if (packet_->stream_index != stream_) continue;
    if (tail_cut_ && packet_->pos == cut_packet_pos_ && (packet_->flags & AV_PKT_FLAG_CORRUPT)) {
      // Cut short by the end of the file (build_index). Sent, it can keep frame threads from
      // handing out the frames they hold (H.264 with 3 threads lost the last two).
      continue;
    }
    if (seek_key_dts_ != AV_NOPTS_VALUE) {
      if (packet_->dts != AV_NOPTS_VALUE && packet_->dts < seek_key_dts_) {
        ++counters_.dropped;  // before the keyframe sought: the seek landed early
        continue;
      }
      seek_key_dts_ = AV_NOPTS_VALUE;
    }
    if (flush_pending_) {
      // The first packet after a seek: an IDR starts afresh, anything else needs the reset.
      flush_pending_ = false;
      if (!starts_sequence(packet_.get())) reset_codec();
    }
    // A frame before the last target that is not itself a target is needed only if other
    // frames refer to it: let the codec drop it if none does. The codec reads skip_frame when
    // the packet is submitted, which is during this send (every ready frame was received
    // above). Frames after the last target are decoded, so that the next request can go on
    // from here; a later request for a dropped frame lies behind next_index_ and seeks.
    // Only a packet's own pts names its frame (a dts differs from it when frames are reordered).
    if (!picture_order_.empty()) {
      // MPEG-1/2 in a program stream, read from its start: the pts of this packet's place in
      // display order. The packets are those the index pass read, in the same order; one
      // that is not is an error, not a frame named wrongly.
      const size_t j = next_packet_++;
      if (j >= picture_order_.size() || picture_order_[j].first != packet_->size) {
        throw DecodeError(
            path_, "video packet " + std::to_string(j) + " of the program stream (" +
                       std::to_string(packet_->size) +
                       " bytes) differs from the one read when the file was opened (" +
                       (j < picture_order_.size()
                            ? std::to_string(picture_order_[j].first) + " bytes)"
                            : "which had " + std::to_string(picture_order_.size()) + " packets)"));
      }
      packet_->pts = picture_order_[j].second;
    }
    const int64_t index = packet_->pts == AV_NOPTS_VALUE ? -1 : index_of_pts(packet_->pts);
    const bool discard = discards_unrequested() && !from_start_ && index >= 0 && index < targets.back() &&
                         !std::binary_search(targets.begin(), targets.end(), index);
    codec_->skip_frame = discard ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
    ++counters_.packets;
    counters_.discardable += discard ? 1 : 0;
#if LIBAVCODEC_VERSION_MAJOR >= 60
    packet_->opaque = reinterpret_cast<void*>(static_cast<intptr_t>(generation_));
#else
    codec_->reordered_opaque = generation_;
#endif
    rc = avcodec_send_packet(codec_.get(), packet_.get());
    if (rc < 0 && rc != AVERROR(EAGAIN) && rc != AVERROR_INVALIDDATA) {
      throw DecodeError(path_, "decoding failed (" + av::error_string(rc) + ")");
    }
    // AVERROR_INVALIDDATA: a damaged packet. Its frame will be missing; if it is a requested
    // one the caller reports it.
  }
}

std::vector<int64_t> LibavDecoder::decodable_frames() {
  std::vector<int64_t> targets(static_cast<size_t>(info_.frames));
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<int64_t>(i);
  const std::vector<std::vector<int64_t>> slots(targets.size());
  FrameBuffer none;
  struct CountOnly {
    bool& flag;
    ~CountOnly() { flag = false; }
  } count_only{count_only_};
  count_only_ = true;
  std::vector<int64_t> out;
  if (targets.empty()) return out;
  seek_to(0);
  size_t k = 0;
  int stuck = 0;
  while (k < targets.size()) {
    const size_t before = k;
    if (decode_until(targets, k, slots, none)) {
      out.push_back(targets[before]);
      stuck = 0;
      continue;
    }
    if (drained_) break;  // the stream ended: the frames from targets[k] on never came out
    if (next_index_ > targets[k]) {
      // A later frame came out first: the ones before it are missing, it is not.
      out.push_back(next_index_ - 1);
      k = static_cast<size_t>(next_index_);
      stuck = 0;
    } else if (++stuck > 64) {
      break;  // the codec keeps failing without moving on: nothing more comes out
    }
  }
  next_index_ = -1;  // the next request seeks
  return out;
}

FrameBuffer LibavDecoder::decode(const std::vector<int64_t>& indices, int short_side) {
  FrameBuffer out;
  out.count = static_cast<int64_t>(indices.size());
  scaled_size(info_.width, info_.height, short_side, &out.width, &out.height);
  out.data.resize(static_cast<size_t>(out.count) * out.height * out.width * 3);
  if (indices.empty()) return out;

  std::vector<int64_t> targets = indices;
  for (int64_t i : targets) {
    if (i < 0 || i >= info_.frames) {
      throw Error(path_ + ": frame " + std::to_string(i) + " requested, the video has " +
                  std::to_string(info_.frames) + " frames");
    }
  }
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  std::vector<std::vector<int64_t>> slots(targets.size());
  for (size_t s = 0; s < indices.size(); ++s) {
    const auto pos = std::lower_bound(targets.begin(), targets.end(), indices[s]) - targets.begin();
    slots[pos].push_back(static_cast<int64_t>(s));
  }

  // Frames queued for conversion write into `out`: it must not go before they are done.
  struct Drain {
    ConversionPool* pool;
    ~Drain() {
      if (pool != nullptr) pool->abandon();
    }
  } drain{pool_.get()};
  size_t k = 0;
  int retries = 0;
  while (k < targets.size()) {
    const int64_t target = targets[k];
    const int64_t key = keyframe_at_or_before(target);
    const int64_t key_frame = info_.keyframes[key];
    // Decode forward when the target is ahead in the current group of pictures, or its
    // keyframe is at most kForwardFrames frames ahead; otherwise seek. A seek costs a flush
    // (and refilling the frame threads), and in mp4 with reordered frames the demuxer lands one
    // group of pictures early and reads it again; decoding forward through a few frames costs
    // at most those frames (fewer: unrequested non-reference ones are discarded). Inside a
    // clip whose stride steps over a keyframe the gap is stride - 1: with stride 2 the
    // benchmark's clips went from 148 seeks to 45 (docs/pipeline.md).
    constexpr int64_t kForwardFrames = 4;
    if (next_index_ < 0 || drained_ || next_index_ > target || key_frame > next_index_ + kForwardFrames) {
      seek_to(std::max<int64_t>(0, key - retries));
    }
    if (decode_until(targets, k, slots, out)) {
      retries = 0;
      continue;
    }
    // The target did not come out: the seek landed late, or the frame is damaged. Step back
    // one keyframe at a time, then give up naming the frame.
    if (key - retries <= 0 || retries >= 2) {
      throw DecodeError(path_, "frame " + std::to_string(target) + " of " +
                                   std::to_string(info_.frames) + " cannot be decoded");
    }
    ++retries;
    next_index_ = -1;
  }
  if (pool_) {
    drain.pool = nullptr;
    pool_->wait();
  }
  return out;
}

}  // namespace holo::pipeline
