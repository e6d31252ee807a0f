#include "pipeline/cpu_decoder.h"

namespace holo::pipeline {

std::unique_ptr<CpuDecoder> CpuDecoder::open(const std::string& path, int threads,
                                             int conversion_threads) {
  std::unique_ptr<CpuDecoder> d(new CpuDecoder(path, threads, conversion_threads));
  d->LibavDecoder::open();
  return d;
}

}  // namespace holo::pipeline
