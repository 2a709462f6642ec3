// Turning raw readings into joules, and the cumulative-energy curve between them.
// Every function here has a pure-Python twin in python/fastmeter/reference/ used by the property tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastmeter/sources/source.h"

namespace fastmeter {

// Raw ticks between two counter readings. range > 0: the counter wraps to 0 at range, so cur < prev is one wrap.
// range == 0: a 64-bit counter that never wraps; cur < prev means it was reset, which contributes nothing.
uint64_t counter_delta(uint64_t prev, uint64_t cur, uint64_t range) noexcept;

// Cumulative joules of one channel, fed one Reading per poll by the sampler thread.
class ChannelAccumulator {
 public:
  explicit ChannelAccumulator(const ChannelInfo& info) noexcept;

  struct Step {
    double energy_j;  // cumulative since the first reading
    bool counter;     // energy came from the hardware counter at this poll
    bool changed;     // the counter moved since the previous poll (a change point)
  };
  Step push(int64_t t_ns, const Reading& r) noexcept;
  double energy_j() const noexcept { return energy_j_; }

 private:
  double unit_j_;
  uint64_t range_;
  bool have_counter_ = false, have_power_ = false;
  uint64_t last_counter_ = 0;
  int64_t last_power_t_ns_ = 0;
  double last_power_w_ = 0.0;
  double energy_j_ = 0.0;
};

// A point of a channel's cumulative-energy curve known from the hardware, with the power read at that instant
// (NaN when unknown) as the curve's slope there.
struct Knot {
  int64_t t_ns;
  double energy_j;
  double power_w;
};

// Collects knots from a channel's samples in time order. Counter channels refresh far slower than we poll
// (~100 ms on A100/H100), so only polls where the value changed are knots, placed at the midpoint between the
// last poll that saw the old value and the poll that saw the new one. Power-integrated channels: every sample.
class KnotBuilder {
 public:
  void push(int64_t t_ns, double energy_j, double power_w, bool counter, bool changed);
  const std::vector<Knot>& knots() const noexcept { return knots_; }
  int64_t first_poll_ns() const noexcept { return first_poll_ns_; }
  int64_t last_poll_ns() const noexcept { return last_poll_ns_; }
  // Median interval between consecutive knots in seconds; NaN with fewer than two intervals.
  double observed_update_period_s() const;

 private:
  std::vector<Knot> knots_;
  int64_t first_poll_ns_ = 0, last_poll_ns_ = 0;
  bool any_ = false;
};

// Cumulative energy at t_ns on the curve through knots[0..n) (sorted by t_ns, n >= 1). Between knots the curve is a
// cubic Hermite fused from the energies (values) and powers (slopes); outside [first, last] it extends linearly.
double energy_at(const Knot* knots, size_t n, int64_t t_ns) noexcept;

}  // namespace fastmeter
