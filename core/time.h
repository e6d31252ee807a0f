#pragma once
/// Elapsed time on the steady clock, the one helper every timer in Holo uses.

#include <chrono>

namespace holo {

using SteadyClock = std::chrono::steady_clock;

/// Seconds from `start` to now on the steady clock.
inline double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

}  // namespace holo
