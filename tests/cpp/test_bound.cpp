// BoundBuilder on a hand-made stream with known truth: a 100 ms counter (mJ ticks) under a square load, polled at
// 1 ms. The true cumulative energy must lie inside range_at everywhere, and the range must be as narrow as the
// derivation says at the places where it can be worked out by hand.
#include <cmath>
#include <cstdint>

#include "check.h"
#include "fastmeter/bound.h"

using namespace fastmeter;

// 300 W for the first 40 ms of every 170 ms, 100 W otherwise; t in ns from 0.
static double truth_j(int64_t t_ns) {
  const double t = static_cast<double>(t_ns) * 1e-9, period = 0.17, on = 0.04;
  const double k = std::floor(t / period), r = t - k * period;
  return k * (300 * on + 100 * (period - on)) + (r < on ? 300 * r : 300 * on + 100 * (r - on));
}

int main() {
  const double unit = 1e-3;
  BoundBuilder b(unit);
  const int64_t poll = 1000000, refresh = 100000000, start = 3000000;
  double first = 0, prev = -1;
  bool have = false;
  for (int64_t t = start; t <= 2000000000; t += poll) {
    const double held = std::floor(truth_j(t / refresh * refresh) / unit) * unit;  // counter exact at refreshes
    if (!have) first = held;
    const bool changed = have && held != prev;
    b.push(t, held - first, std::nan(""), true, changed);
    prev = held;
    have = true;
  }
  CHECK(!b.settled_at(2000000000) && b.settled_at(1850000000));
  CHECK(b.updated_since(1950000000) && !b.updated_since(2000000000));
  // Peak seen = mean between changes, at most 300 W: the limit is twice that.
  CHECK(b.max_power_w() > 2 * 100.0 && b.max_power_w() <= 2 * 300.0 + 1);
  const double ref = truth_j(0);  // the first reading held the refresh at t = 0
  for (int64_t t = 100000000; t < 1999000000; t += 777777) {
    const EnergyRange r = b.range_at(t);
    const double e = truth_j(t) - ref;
    CHECK(r.lo_j <= e && e <= r.hi_j);
    CHECK(r.hi_j - r.lo_j <= b.max_power_w() * 0.101 + 2 * unit + 1e-6);  // never wider than one refresh at P_max
  }
  // Exactly at a refresh seen by the next poll, the range is one poll gap at P_max wide (plus a tick each side).
  const EnergyRange at = b.range_at(1000000000);
  CHECK(at.hi_j - at.lo_j <= b.max_power_w() * 0.001 + 2 * unit + 1e-6);
  // Spans: the difference of two ranges, cut to [0, P_max x length].
  const EnergyRange s = span_range(b.range_at(500000000), b.range_at(510000000), b.max_power_w(), 500000000, 510000000);
  CHECK(s.lo_j >= 0.0 && s.hi_j <= b.max_power_w() * 0.01 + 1e-12);
  CHECK(std::isnan(bound_of(1.0, {-INFINITY, 2.0})) && bound_of(1.0, {0.5, 3.0}) == 2.0);
  BoundBuilder none(unit);
  CHECK(!none.has_counter() && std::isinf(none.range_at(5).hi_j));
  std::printf("test_bound: ok\n");
  return 0;
}
