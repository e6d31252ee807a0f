#include "pipeline/ffmpeg_info.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/hwcontext.h>
#include <libswscale/swscale.h>
}

namespace holo::pipeline {
namespace {

std::string dotted(unsigned v) {
  return std::to_string(AV_VERSION_MAJOR(v)) + "." + std::to_string(AV_VERSION_MINOR(v)) + "." +
         std::to_string(AV_VERSION_MICRO(v));
}

bool has_cuda_hwaccel(const AVCodec* codec) {
  for (int i = 0;; ++i) {
    const AVCodecHWConfig* config = avcodec_get_hw_config(codec, i);
    if (config == nullptr) return false;
    if (config->device_type == AV_HWDEVICE_TYPE_CUDA &&
        (config->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX)) {
      return true;
    }
  }
}

}  // namespace

FfmpegInfo ffmpeg_info() {
  FfmpegInfo info;
  info.version = av_version_info();
  info.libraries = {{"libavcodec", dotted(avcodec_version())},
                    {"libavformat", dotted(avformat_version())},
                    {"libavutil", dotted(avutil_version())},
                    {"libswscale", dotted(swscale_version())}};
  for (AVHWDeviceType t = av_hwdevice_iterate_types(AV_HWDEVICE_TYPE_NONE);
       t != AV_HWDEVICE_TYPE_NONE; t = av_hwdevice_iterate_types(t)) {
    if (t == AV_HWDEVICE_TYPE_CUDA) info.cuda_hwcontext = true;
  }
  // The codecs NVDEC decodes, in the order a user would look for them.
  for (const AVCodecID id : {AV_CODEC_ID_H264, AV_CODEC_ID_HEVC, AV_CODEC_ID_VP9, AV_CODEC_ID_AV1,
                             AV_CODEC_ID_VP8, AV_CODEC_ID_MPEG4, AV_CODEC_ID_MPEG2VIDEO}) {
    const AVCodec* codec = avcodec_find_decoder(id);
    if (codec != nullptr && has_cuda_hwaccel(codec))
      info.nvdec_codecs.push_back(avcodec_get_name(id));
  }
  for (const AVCodecID id : {AV_CODEC_ID_H264, AV_CODEC_ID_MPEG4}) {
    if (avcodec_find_decoder(id) == nullptr) info.missing_decoders.push_back(avcodec_get_name(id));
  }
  return info;
}

}  // namespace holo::pipeline
