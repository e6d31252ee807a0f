#pragma once
/// The CPU decoder: libavcodec's software decoders, multi-threaded (frame and slice threads).

#include <memory>
#include <string>

#include "pipeline/libav_decoder.h"

namespace holo::pipeline {

class CpuDecoder final : public LibavDecoder {
 public:
  /// Opens `path`; throws DecodeError when it is not a usable video. `conversion_threads` as
  /// DecoderOptions says.
  static std::unique_ptr<CpuDecoder> open(const std::string& path, int threads,
                                          int conversion_threads = -1);
  std::string backend() const override { return "cpu"; }

 private:
  CpuDecoder(std::string path, int threads, int conversion_threads)
      : LibavDecoder(std::move(path), threads, conversion_threads) {}
};

}  // namespace holo::pipeline
