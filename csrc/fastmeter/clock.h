// One clock everywhere: CLOCK_MONOTONIC nanoseconds, the clock of Python's time.monotonic_ns().
#pragma once
#include <cstdint>
#include <ctime>

namespace fastmeter {

inline int64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

inline int64_t realtime_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// A (monotonic, realtime) pair read back to back, so wall time can be shown for monotonic stamps.
// The realtime read is bracketed by two monotonic reads and paired with their midpoint.
struct ClockAnchor {
  int64_t monotonic_ns = 0;
  int64_t realtime_ns = 0;
};

inline ClockAnchor take_anchor() noexcept {
  const int64_t a = monotonic_ns();
  const int64_t r = realtime_ns();
  const int64_t b = monotonic_ns();
  return {a + (b - a) / 2, r};
}

}  // namespace fastmeter
