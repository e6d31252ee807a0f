#pragma once
/// Deterministic random numbers for sampling, transforms and synthetic data. Everything here is
/// specified bit for bit (SplitMix64), unlike the standard library's distributions, so the same
/// seed gives the same clips on every platform and compiler. Draws of the loader are pure
/// functions of a key: `Rng(mix_seed(seed, epoch, record, view))`.

#include <cstdint>

namespace holo::pipeline {

/// SplitMix64's finaliser: a bijective mix of 64 bits.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Combines several values into one seed (order matters).
inline uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0) {
  uint64_t h = splitmix64(a ^ 0x6a09e667f3bcc909ULL);
  h = splitmix64(h ^ b);
  h = splitmix64(h ^ c);
  return splitmix64(h ^ d);
}

/// A small generator: SplitMix64 over a counter.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n) for n > 0 (multiply-shift; bias below 2^-64 * n).
  int64_t uniform_int(int64_t n) {
    return static_cast<int64_t>((static_cast<unsigned __int128>(next()) * static_cast<uint64_t>(n)) >> 64);
  }

 private:
  uint64_t state_;
};

}  // namespace holo::pipeline
