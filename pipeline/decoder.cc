// The decoder factory: the one place that names the concrete decoders and holds the #ifs.

#include "pipeline/decoder.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <mutex>
#include <set>

#include "core/registry.h"
#include "holo/build_config.h"
#include "pipeline/cpu_decoder.h"
#if HOLO_WITH_NVDEC
#include "pipeline/nvdec_decoder.h"
#endif

namespace holo::pipeline {
namespace {

/// Logs `message` once per process for each distinct `key`.
void log_once(const std::string& key, const std::string& message) {
  static std::mutex mutex;
  static std::set<std::string> seen;
  std::lock_guard<std::mutex> lock(mutex);
  if (seen.insert(key).second) spdlog::info("{}", message);
}

}  // namespace

NvdecAvailability nvdec_availability(int gpu) {
#if HOLO_WITH_NVDEC
  const std::string error = NvdecDecoder::probe_device(gpu);
  return {error.empty(), error};
#else
  return {false, "this build's FFmpeg has no hardware-context support (libavutil/hwcontext.h)"};
#endif
}

namespace {

using DecoderFactory = std::function<std::unique_ptr<VideoDecoder>(const std::string& path, const DecoderOptions&)>;

std::unique_ptr<VideoDecoder> open_cpu(const std::string& path, const DecoderOptions& options) {
  return CpuDecoder::open(path, options.threads, options.conversion_threads);
}

/// NVDEC where it can be opened; otherwise the CPU (`fall_back`, logged once) or an error.
std::unique_ptr<VideoDecoder> open_gpu(const std::string& path, const DecoderOptions& options, bool fall_back) {
  const NvdecAvailability nvdec = nvdec_availability(options.gpu);
  if (!nvdec.available) {
    if (!fall_back) throw Error("decode.device = \"nvdec\" but NVDEC is unavailable: " + nvdec.reason);
    log_once("auto", "decode.device = auto: decoding on the CPU (" + nvdec.reason + ")");
    return open_cpu(path, options);
  }
#if HOLO_WITH_NVDEC
  try {
    auto d = NvdecDecoder::open(path, options.gpu, options.threads, options.conversion_threads);
    log_once("nvdec", "decoding with NVDEC on GPU " + std::to_string(options.gpu));
    return d;
  } catch (const NvdecUnsupported& e) {
    log_once(std::string("codec:") + e.what(), std::string(e.what()) + "; decoding such files on the CPU");
  }
#endif
  return open_cpu(path, options);
}

/// decode.device: every decoder, registered in every build (a recipe naming nvdec stays valid
/// where NVDEC is missing, and says why when it opens a video).
const Registry<DecoderFactory>& decoders() {
  static const Registry<DecoderFactory> registry = [] {
    Registry<DecoderFactory> r("decode.device", "decode device");
    r.add("auto", "NVDEC when a GPU and the hwaccel exist, else the CPU with a logged reason",
          [](const std::string& path, const DecoderOptions& o) { return open_gpu(path, o, true); });
    r.add("cpu", "FFmpeg's software decoders", open_cpu);
    r.add("nvdec", "NVDEC through libavcodec's CUDA hwaccel; an error where it is unavailable",
          [](const std::string& path, const DecoderOptions& o) { return open_gpu(path, o, false); });
    return r;
  }();
  return registry;
}

}  // namespace

void register_decoders() { decoders(); }

bool is_decode_device(const std::string& name) { return decoders().find(name) != nullptr; }

std::unique_ptr<VideoDecoder> open_decoder(const std::string& path, const DecoderOptions& options) {
  return decoders().at(options.device)(path, options);
}

void scaled_size(int width, int height, int short_side, int* out_width, int* out_height) {
  auto round = [](double x) { return std::max(1, static_cast<int>(std::lround(x))); };
  if (short_side <= 0) {
    *out_width = width;
    *out_height = height;
    return;
  }
  if (width <= height) {
    *out_width = short_side;
    *out_height = round(static_cast<double>(height) * short_side / width);
  } else {
    *out_height = short_side;
    *out_width = round(static_cast<double>(width) * short_side / height);
  }
}

DecoderCache::DecoderCache(size_t capacity, DecoderOptions options)
    : capacity_(std::max<size_t>(1, capacity)), options_(std::move(options)) {}

VideoDecoder& DecoderCache::get(const std::string& path) {
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.path == path; });
  if (it != entries_.end()) {
    std::rotate(it, it + 1, entries_.end());  // most recently used last
    return *entries_.back().decoder;
  }
  auto decoder = open_decoder(path, options_);
  ++opens_;
  if (entries_.size() >= capacity_) entries_.erase(entries_.begin());
  entries_.push_back({path, std::move(decoder)});
  return *entries_.back().decoder;
}

void DecoderCache::drop(const std::string& path) {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.path == path; }),
                 entries_.end());
}

}  // namespace holo::pipeline
