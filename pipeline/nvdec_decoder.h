#pragma once
/// The NVDEC decoder: libavcodec's native decoders with the CUDA hwaccel (a CUDA device context
/// from av_hwdevice_ctx_create). Frames are decoded on the GPU, copied to system memory as NV12
/// and converted to RGB by swscale like the CPU path, so both return the same layout.
/// Compiled when FFmpeg has libavutil/hwcontext.h; usable when a CUDA driver and GPU exist.

#include <memory>
#include <string>

#include "pipeline/av_handles.h"
#include "pipeline/libav_decoder.h"

namespace holo::pipeline {

/// The stream's codec has no CUDA hwaccel in this FFmpeg build (the factory falls back to the
/// CPU for this file).
class NvdecUnsupported : public Error {
 public:
  using Error::Error;
};

class NvdecDecoder final : public LibavDecoder {
 public:
  /// Opens `path` on GPU `gpu`. The GPU decodes; with `threads` >= 2, conversion threads turn
  /// its frames into RGB while it decodes on (see LibavDecoder). Throws DecodeError for an
  /// unusable file, NvdecUnsupported for a codec NVDEC cannot decode, holo::Error when no CUDA
  /// device can be created.
  static std::unique_ptr<NvdecDecoder> open(const std::string& path, int gpu, int threads = 1,
                                            int conversion_threads = -1);
  std::string backend() const override { return "nvdec"; }

  /// Creates (once per process and GPU) the shared CUDA device context; empty reason on
  /// success, else why NVDEC cannot be used.
  static std::string probe_device(int gpu);

 private:
  NvdecDecoder(std::string path, int gpu, int threads, int conversion_threads)
      : LibavDecoder(std::move(path), threads, conversion_threads), gpu_(gpu) {}
  const AVCodec* find_codec(const AVCodecParameters& par) override;
  void configure(AVCodecContext* ctx) override;
  const AVFrame* to_system_memory(AVFrame* frame) override;
  /// The GPU decodes and the calling thread copies its frames to system memory: every other
  /// thread converts.
  int conversion_threads() const override { return threads_ >= 2 ? threads_ - 1 : 0; }
  /// Discarding unrequested frames is verified on the CPU decoders only; NVDEC decodes every
  /// frame until a GPU run has checked it (docs/gpu.md).
  bool discards_unrequested() const override { return false; }

  int gpu_;
  av::FramePtr system_frame_ = av::make_frame();
};

}  // namespace holo::pipeline
