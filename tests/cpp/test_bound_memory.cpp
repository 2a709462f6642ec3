// The error bound's change points thinned for long runs: memory bounded, and every range still holds what the
// unthinned range held (it only widens), by at most the power limit times the resolution.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "check.h"
#include "fastmeter/bound.h"

using namespace fastmeter;

constexpr int64_t kMs = 1'000'000;

// A RAPL-like counter: 1 mJ ticks, refreshed at every 1 ms poll, power between 50 and 250 W.
static void feed(BoundBuilder& b, int64_t from_ms, int64_t to_ms, double& energy_j) {
  for (int64_t i = from_ms; i < to_ms; ++i) {
    const double p_w = 150.0 + 100.0 * std::sin(static_cast<double>(i) * 0.013);
    energy_j += std::floor(p_w) * 1e-3;
    b.push(i * kMs, energy_j, p_w, true, i > 0);
  }
}

int main() {
  const int64_t duration_ms = 120'000, resolution = 10 * kMs;
  BoundBuilder full(1e-3), thin(1e-3);
  double e_full = 0.0, e_thin = 0.0;
  for (int64_t t = 0; t < duration_ms; t += 1000) {  // one drain per simulated second, as the Meter does
    feed(full, t, t + 1000, e_full);
    feed(thin, t, t + 1000, e_thin);
    thin.thin_before((t + 1000 - 10'000) * kMs, resolution);  // a 10 s raw window
  }
  CHECK(full.points() == static_cast<size_t>(duration_ms));
  CHECK(thin.points() < 10'000 * 5 / 4 + 1024 + (duration_ms * kMs / resolution) + 2);  // window + a quarter, + one per 10 ms
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int64_t> d(-5 * kMs, duration_ms * kMs);
  const double widen_j = full.max_power_w() * static_cast<double>(2 * (resolution + 2 * kMs)) * 1e-9 + 1e-9;
  bool wider = false;
  for (int i = 0; i < 20000; ++i) {
    const int64_t t = d(rng);
    const EnergyRange a = full.range_at(t), b = thin.range_at(t);
    CHECK(b.lo_j <= a.lo_j && a.hi_j <= b.hi_j);  // still holds everything the full range held
    if (std::isfinite(a.lo_j) && std::isfinite(a.hi_j)) CHECK(b.hi_j - b.lo_j <= a.hi_j - a.lo_j + 2 * widen_j);
    wider = wider || b.hi_j - b.lo_j > a.hi_j - a.lo_j;
    if (t > (duration_ms - 9'000) * kMs) CHECK(a.lo_j == b.lo_j && a.hi_j == b.hi_j);  // the recent window as is
  }
  CHECK(wider);
  CHECK(full.settled_at(0) == thin.settled_at(0) && full.updated_since(5 * kMs) == thin.updated_since(5 * kMs));
  return 0;
}
