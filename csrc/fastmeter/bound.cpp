#include "fastmeter/bound.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace fastmeter {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kUnknownNs = std::numeric_limits<int64_t>::min();

// Energy power_w can deliver in (from_ns, to_ns]: 0 for an empty interval (so inf x 0 never makes NaN), inf from an
// unknown instant.
double reach_j(double power_w, int64_t from_ns, int64_t to_ns) {
  if (to_ns <= from_ns) return 0.0;
  if (from_ns == kUnknownNs) return kInf;
  return power_w * static_cast<double>(to_ns - from_ns) * 1e-9;
}

}  // namespace

void BoundBuilder::push(int64_t t_ns, double energy_j, double power_w, bool counter, bool changed) {
  if (std::isfinite(power_w)) seen_max_w_ = std::max(seen_max_w_, power_w);
  if (!counter) return;
  if (points_.empty()) {
    points_.push({kUnknownNs, t_ns, energy_j});
  } else if (changed) {
    const ChangePoint& prev = points_.back();
    // The energy between two changes was spent within (prev.lo, t]: its mean over that stretch is at most the peak.
    if (prev.lo_ns != kUnknownNs && t_ns > prev.lo_ns)
      seen_max_w_ = std::max(seen_max_w_, (energy_j - prev.energy_j) / (static_cast<double>(t_ns - prev.lo_ns) * 1e-9));
    points_.push({last_counter_ns_, t_ns, energy_j});
  }
  last_counter_ns_ = t_ns;
}

double BoundBuilder::max_power_w() const noexcept { return seen_max_w_ > 0.0 ? kPowerBoundMargin * seen_max_w_ : kInf; }

EnergyRange BoundBuilder::range_at(int64_t t_ns) const noexcept {
  if (points_.empty()) return {-kInf, kInf};
  const double p = max_power_w();
  // Points are in time order and their (lo, hi] never overlap. c: the first point not certainly before t.
  const ChangePointStore::Around near = points_.around(t_ns);
  const ChangePoint* c = near.at;
  double lo = -kInf, hi = kInf;
  if (near.before) {  // a: the newest point certainly at or before t
    const ChangePoint& a = *near.before;
    lo = a.energy_j;
    hi = a.energy_j + reach_j(p, a.lo_ns, t_ns);
  }
  const ChangePoint* b = c;
  if (c && c->lo_ns < t_ns) {  // c may lie on either side of t
    lo = std::max(lo, c->energy_j - reach_j(p, t_ns, c->hi_ns));
    hi = std::min(hi, c->energy_j + reach_j(p, c->lo_ns, t_ns));
    b = near.after;
  }
  if (b) {  // b: the oldest point certainly after t
    hi = std::min(hi, b->energy_j);
    lo = std::max(lo, b->energy_j - reach_j(p, t_ns, b->hi_ns));
  }
  // Counter values are floored to whole ticks (the first reading too): a difference is off by less than one tick.
  // Summing ticks in doubles adds rounding far below 1e-9 relative.
  const double tol = unit_j_ + 1e-9 * std::max(std::isfinite(lo) ? std::fabs(lo) : 0.0,
                                               std::isfinite(hi) ? std::fabs(hi) : 0.0);
  return {lo - tol, hi + tol};
}

bool BoundBuilder::settled_at(int64_t t_ns) const noexcept { return !points_.empty() && points_.back().lo_ns >= t_ns; }

bool BoundBuilder::updated_since(int64_t t_ns) const noexcept {
  return points_.size() >= 2 && points_.back().hi_ns > t_ns;
}

double bound_of(double value, EnergyRange r) noexcept {
  if (!std::isfinite(r.lo_j) || !std::isfinite(r.hi_j) || !std::isfinite(value))
    return std::numeric_limits<double>::quiet_NaN();
  return std::max(value - r.lo_j, r.hi_j - value);
}

EnergyRange span_range(EnergyRange at_t0, EnergyRange at_t1, double pmax_w, int64_t t0_ns, int64_t t1_ns) noexcept {
  const double lo = std::max(at_t1.lo_j - at_t0.hi_j, 0.0);
  const double hi = std::min(at_t1.hi_j - at_t0.lo_j, reach_j(pmax_w, t0_ns, t1_ns));
  return {lo, hi};
}

}  // namespace fastmeter
