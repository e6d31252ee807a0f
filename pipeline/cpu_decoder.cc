#include "pipeline/cpu_decoder.h"

namespace holo::pipeline {

std::unique_ptr<CpuDecoder> CpuDecoder::open(const std::string& path, int threads) {
  std::unique_ptr<CpuDecoder> d(new CpuDecoder(path, threads));
  d->LibavDecoder::open();
  return d;
}

}  // namespace holo::pipeline
