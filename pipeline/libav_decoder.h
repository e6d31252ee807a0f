#pragma once
/// The part of the CPU and NVDEC decoders that is the same: demuxing, the frame table, seeking,
/// the decode loop, and swscale to packed RGB. A backend configures the codec context (NVDEC
/// attaches a CUDA device) and turns a decoded frame into one in system memory.

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/av_handles.h"
#include "pipeline/decoder.h"

namespace holo::pipeline {

class FrameConverter;
class ConversionPool;

/// The video stream of `format` that Holo decodes: av_find_best_stream's choice, passing over
/// cover pictures (AV_DISPOSITION_ATTACHED_PIC: the artwork of an audio file); -1 when there is
/// none. `*cover` is set when the file holds a cover picture.
int find_video_stream(AVFormatContext* format, bool* cover = nullptr);
/// Why a file without a video stream (find_video_stream) is not a video: "audio only (no video
/// stream)", the same with "; its picture is a cover", or "no video stream".
std::string no_video_reason(const AVFormatContext* format, bool cover);

class LibavDecoder : public VideoDecoder {
 public:
  ~LibavDecoder() override;
  const VideoInfo& info() const override { return info_; }
  FrameBuffer decode(const std::vector<int64_t>& indices, int short_side) override;
  std::vector<int64_t> decodable_frames() override;
  const std::string& path() const override { return path_; }
  DecodeCounters counters() const override { return counters_; }

 protected:
  LibavDecoder(std::string path, int threads, int conversion_threads = -1);
  /// Opens the file, builds the frame table and opens the codec; called by the backends'
  /// factories right after construction (it calls the virtual hooks below).
  void open();
  /// The decoder implementation to use for the stream (NVDEC may pick a `_cuvid` one; the
  /// default is the native decoder).
  virtual const AVCodec* find_codec(const AVCodecParameters& par);
  /// Sets backend options on the codec context before avcodec_open2.
  virtual void configure(AVCodecContext* ctx) {}
  /// A frame in system memory for swscale: `frame` itself on the CPU, a transferred copy from
  /// NVDEC.
  virtual const AVFrame* to_system_memory(AVFrame* frame) { return frame; }
  /// Of the decoder's threads, those that convert frames to RGB while the others decode (0:
  /// the decoding thread converts). The CPU decoder keeps two thirds for libavcodec.
  virtual int conversion_threads() const { return threads_ >= 2 ? std::max(1, threads_ / 3) : 0; }
  /// Whether packets of unrequested frames are sent with non-reference frames discarded.
  virtual bool discards_unrequested() const { return true; }

  const std::string path_;
  const int threads_;
  const int conversion_override_;  ///< DecoderOptions::conversion_threads

 private:
  void build_index();
  /// VideoInfo::declared_frames, shortfall and truncation, once the frame table is read;
  /// `read_rc` is what ended the reading.
  void check_tail(int read_rc);
  /// Whether the file ends before its container says it does: its last video packet is cut
  /// short by the end of the file, an index entry lies past the end, or a RIFF or Matroska
  /// segment size is larger than the file.
  bool ends_early() const;
  void seek_to(int64_t keyframe_index);
  /// Decodes forward until `target` (and every later target reachable in the same pass) is
  /// written; returns false when the stream ended or went past `target` without producing it.
  bool decode_until(const std::vector<int64_t>& targets, size_t& k,
                    const std::vector<std::vector<int64_t>>& slots, FrameBuffer& out);
  int64_t index_of_pts(int64_t pts) const;
  /// The seek generation of a decoded frame (the value of generation_ when its packet was sent).
  int64_t generation_of(const AVFrame* frame) const;
  /// Whether the packet read right after a seek starts a new coded sequence (an H.264 IDR), so
  /// that the codec need not be reset before it.
  bool starts_sequence(const AVPacket* packet) const;
  /// avcodec_flush_buffers, counted.
  void reset_codec();
  /// Index of a decoded frame in the frame table, or -1.
  int64_t index_of_frame(const AVFrame* frame);
  /// The position in info_.keyframes to seek to for frame `index` (always 0 for decode-order
  /// timestamps).
  int64_t keyframe_at_or_before(int64_t index) const;

  av::InputFormatPtr format_;
  av::CodecContextPtr codec_;
  av::PacketPtr packet_;
  av::FramePtr frame_;
  /// Converts requested frames to RGB: in the decoding thread (converter_), or in conversion
  /// threads while it decodes on (pool_, with more than one decoder thread).
  std::unique_ptr<FrameConverter> converter_;
  std::unique_ptr<ConversionPool> pool_;
  int stream_ = -1;
  VideoInfo info_;
  std::vector<int64_t> key_dts_;   ///< dts of each keyframe's packet, parallel to info_.keyframes
  std::vector<int64_t> sorted_pts_;  ///< == info_.pts (ascending), kept for lookup
  int64_t next_index_ = -1;          ///< index of the next frame the decoder will produce; -1: unknown
  bool drained_ = false;             ///< the decoder was flushed at the end of the stream
  /// Counts seeks; every packet sent carries it and frames of an older one are dropped
  /// (docs/pipeline.md, "Seeks without a reset").
  int64_t generation_ = 0;
  /// H.264 only: a seek leaves the codec as it is until the first packet read after it shows
  /// whether it must be reset (avcodec_flush_buffers) or starts a new sequence.
  bool soft_seeks_ = false;
  bool flush_pending_ = false;
  bool eof_sent_ = false;  ///< the codec was sent the end of the stream and not reset since
  /// Bytes of an H.264 NAL unit's length prefix (avcC: mp4, mkv), or 0 for start codes (Annex B).
  int nal_length_size_ = 0;
  DecodeCounters counters_;
  /// After a seek: the dts of the keyframe sought; packets before it are dropped unread by the
  /// codec. AV_NOPTS_VALUE once it is reached.
  int64_t seek_key_dts_ = AV_NOPTS_VALUE;
  /// Timestamps come from decode order (see build_index): every seek goes to the start, and
  /// frames are named by their timestamp minus `delay_`, measured on the first frame out.
  bool from_start_ = false;
  int64_t delay_ = AV_NOPTS_VALUE;
  /// An MPEG program stream: after a seek into the middle, the demuxer's parser starts on the
  /// tail of the frame before the one sought and hands each frame the next frame's timestamps,
  /// so every seek goes to the start of the file (by byte), which reads as the index pass did.
  bool program_stream_ = false;
  /// MPEG-1/2 video in a program stream: the timestamps the demuxer gives are missing or wrong
  /// on some frames, so each packet gets the pts of its place in display order (from the
  /// picture types; see build_index) before it is decoded, AV_NOPTS_VALUE for one that gives
  /// no frame. Per packet in decode order from the start of the file: (size, pts); and the
  /// position of the next packet read.
  std::vector<std::pair<int, int64_t>> picture_order_;
  size_t next_packet_ = 0;
  /// The largest byte position of a packet (of any stream) the index pass read: where a walk
  /// over a program stream's last packs starts (check_tail).
  int64_t last_packet_pos_ = -1;
  /// Video packets the container marks to be dropped (outside an MP4 edit list): counted in
  /// its frame count, given no index (build_index).
  int64_t dropped_packets_ = 0;
  /// The last video packet read was cut short by the end of the file (build_index): it is
  /// not decoded. Its byte position.
  bool tail_cut_ = false;
  int64_t cut_packet_pos_ = -1;
  /// decodable_frames(): frames that come out are counted, not converted.
  bool count_only_ = false;
};

}  // namespace holo::pipeline
