#include "fastmeter/integrate.h"

#include <algorithm>
#include <cmath>

namespace fastmeter {

uint64_t counter_delta(uint64_t prev, uint64_t cur, uint64_t range) noexcept {
  if (cur >= prev) return cur - prev;
  if (range == 0) return 0;
  return (range - prev) + cur;
}

ChannelAccumulator::ChannelAccumulator(const ChannelInfo& info) noexcept
    : unit_j_(info.counter_unit_j), range_(info.counter_range) {}

ChannelAccumulator::Step ChannelAccumulator::push(int64_t t_ns, const Reading& r) noexcept {
  bool changed = false;
  const bool counter = (r.flags & kReadCounter) != 0;
  const bool power = (r.flags & kReadPower) != 0 && std::isfinite(r.power_w);
  if (counter) {
    if (have_counter_) {
      const uint64_t d = counter_delta(last_counter_, r.counter_raw, range_);
      changed = d != 0;
      energy_j_ += static_cast<double>(d) * unit_j_;
    }
    last_counter_ = r.counter_raw;
    have_counter_ = true;
  } else {
    // The counter gap (if any) is covered by power below; do not difference across it later.
    have_counter_ = false;
    if (power && have_power_) {
      const double dt_s = static_cast<double>(t_ns - last_power_t_ns_) * 1e-9;
      energy_j_ += 0.5 * (last_power_w_ + r.power_w) * dt_s;  // trapezoid
    }
  }
  if (power) {
    last_power_w_ = r.power_w;
    last_power_t_ns_ = t_ns;
    have_power_ = true;
  }
  return {energy_j_, counter, changed};
}

void KnotBuilder::push(int64_t t_ns, double energy_j, double power_w, bool counter, bool changed) {
  if (!any_) {
    first_poll_ns_ = t_ns;
    knots_.push_back({t_ns, energy_j, power_w});
  } else if (!counter || changed) {
    const int64_t t_knot = counter ? last_poll_ns_ + (t_ns - last_poll_ns_) / 2 : t_ns;
    knots_.push_back({t_knot, energy_j, power_w});
  }
  last_poll_ns_ = t_ns;
  any_ = true;
}

double KnotBuilder::observed_update_period_s() const {
  if (knots_.size() < 3) return std::nan("");
  std::vector<int64_t> d;
  d.reserve(knots_.size() - 1);
  for (size_t i = 1; i < knots_.size(); ++i) d.push_back(knots_[i].t_ns - knots_[i - 1].t_ns);
  std::nth_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(d.size() / 2), d.end());
  return static_cast<double>(d[d.size() / 2]) * 1e-9;
}

double energy_at(const Knot* k, size_t n, int64_t t_ns) noexcept {
  if (n == 1) return k[0].energy_j;
  const Knot* hi = std::upper_bound(k, k + n, t_ns, [](int64_t t, const Knot& x) { return t < x.t_ns; });
  size_t i = hi == k ? 0 : static_cast<size_t>(hi - k) - 1;
  if (i >= n - 1) i = n - 2;
  const Knot& a = k[i];
  const Knot& b = k[i + 1];
  const double span = static_cast<double>(b.t_ns - a.t_ns);
  if (span <= 0) return b.energy_j;
  const double u = static_cast<double>(t_ns - a.t_ns) / span;
  return a.energy_j + u * (b.energy_j - a.energy_j);
}

}  // namespace fastmeter
