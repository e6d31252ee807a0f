#include "pipeline/nvdec_decoder.h"

extern "C" {
#include <libavutil/hwcontext.h>
#include <libavutil/log.h>
}

#include <map>
#include <mutex>

namespace holo::pipeline {
namespace {

struct Device {
  av::BufferRefPtr ref;
  std::string error;
};

/// One CUDA device context per GPU for the whole process: creating one costs a CUDA context.
Device& device(int gpu) {
  static std::mutex mutex;
  static std::map<int, Device> devices;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = devices.find(gpu);
  if (it != devices.end()) return it->second;
  Device& d = devices[gpu];
  AVBufferRef* ref = nullptr;
  // Without a driver libavutil prints "Could not dynamically load CUDA" (or "Cannot load
  // libcuda.so.1") in red on every CPU run; the reason is returned and logged by Holo instead.
  const int level = av_log_get_level();
  av_log_set_level(AV_LOG_QUIET);
  const int rc = av_hwdevice_ctx_create(&ref, AV_HWDEVICE_TYPE_CUDA, std::to_string(gpu).c_str(),
                                        nullptr, 0);
  av_log_set_level(level);
  if (rc < 0) {
    d.error = "cannot create a CUDA device for GPU " + std::to_string(gpu) + " (" +
              av::error_string(rc) + "; no NVIDIA driver or GPU?)";
  } else {
    d.ref.reset(ref);
  }
  return d;
}

AVPixelFormat pick_cuda(AVCodecContext*, const AVPixelFormat* formats) {
  for (const AVPixelFormat* f = formats; *f != AV_PIX_FMT_NONE; ++f) {
    if (*f == AV_PIX_FMT_CUDA) return *f;
  }
  // The hwaccel refused this stream (e.g. an unsupported profile): libavcodec decodes it in
  // software, and to_system_memory() passes such frames through.
  return formats[0];
}

}  // namespace

std::string NvdecDecoder::probe_device(int gpu) { return device(gpu).error; }

std::unique_ptr<NvdecDecoder> NvdecDecoder::open(const std::string& path, int gpu, int threads,
                                                 int conversion_threads) {
  const std::string error = probe_device(gpu);
  if (!error.empty()) throw Error("NVDEC unavailable: " + error);
  std::unique_ptr<NvdecDecoder> d(new NvdecDecoder(path, gpu, threads, conversion_threads));
  d->LibavDecoder::open();
  return d;
}

const AVCodec* NvdecDecoder::find_codec(const AVCodecParameters& par) {
  const AVCodec* codec = avcodec_find_decoder(par.codec_id);
  if (codec == nullptr) return nullptr;
  for (int i = 0;; ++i) {
    const AVCodecHWConfig* config = avcodec_get_hw_config(codec, i);
    if (config == nullptr) break;
    if (config->device_type == AV_HWDEVICE_TYPE_CUDA &&
        (config->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX)) {
      return codec;
    }
  }
  throw NvdecUnsupported(path_ + ": codec " + avcodec_get_name(par.codec_id) +
                         " has no CUDA hwaccel in this FFmpeg");
}

void NvdecDecoder::configure(AVCodecContext* ctx) {
  ctx->hw_device_ctx = av_buffer_ref(device(gpu_).ref.get());
  HOLO_CHECK(ctx->hw_device_ctx != nullptr, "av_buffer_ref: out of memory");
  ctx->get_format = pick_cuda;
  // The GPU decodes; frame threads would only add latency (the other threads convert).
  ctx->thread_count = 1;
}

const AVFrame* NvdecDecoder::to_system_memory(AVFrame* frame) {
  if (frame->format != AV_PIX_FMT_CUDA) return frame;
  av_frame_unref(system_frame_.get());
  HOLO_AV_CHECK(av_hwframe_transfer_data(system_frame_.get(), frame, 0));
  // The transfer copies pixels only; the conversion reads the YUV matrix and range from the
  // frame's properties.
  HOLO_AV_CHECK(av_frame_copy_props(system_frame_.get(), frame));
  return system_frame_.get();
}

}  // namespace holo::pipeline
