#pragma once
/// What the FFmpeg libraries this process runs with offer, for `holo version` and `holo doctor`:
/// their versions, and whether they can decode on NVIDIA GPUs (libavutil's CUDA hardware context
/// and libavcodec decoders with a CUDA hwaccel, i.e. NVDEC). Reads the libraries only: no device
/// is opened (nvdec_availability() in decoder.h tries one).

#include <string>
#include <utility>
#include <vector>

namespace holo::pipeline {

struct FfmpegInfo {
  std::string version;  ///< av_version_info(), e.g. "5.1.6-0+deb12u1"
  /// Each library's run-time version, e.g. {"libavcodec", "59.37.100"}.
  std::vector<std::pair<std::string, std::string>> libraries;
  /// libavutil has the CUDA device type (FFmpeg configured with the ffnvcodec headers).
  bool cuda_hwcontext = false;
  /// Decoders of common video codecs that have a CUDA hwaccel (NVDEC), e.g. "h264", "hevc".
  std::vector<std::string> nvdec_codecs;
  /// Decoders Holo's synthetic data and most datasets need (h264, mpeg4) that are missing.
  std::vector<std::string> missing_decoders;
};

FfmpegInfo ffmpeg_info();

}  // namespace holo::pipeline
