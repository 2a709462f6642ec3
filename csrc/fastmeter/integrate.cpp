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
    : unit_j_(info.counter_unit_j), range_(info.counter_range), has_counter_(info.has_counter) {}

ChannelAccumulator::Step ChannelAccumulator::push(int64_t t_ns, const Reading& r) noexcept {
  const bool failed = (r.flags & kReadFailed) != 0;
  const bool counter_ok = (r.flags & kReadCounter) != 0 && !failed;
  const bool power_ok = (r.flags & kReadPower) != 0 && std::isfinite(r.power_w) && !failed;
  if (has_counter_) {
    bool changed = false;
    if (counter_ok) {
      if (have_counter_) {
        const uint64_t d = counter_delta(last_counter_, r.counter_raw, range_);
        changed = d != 0;
        energy_j_ += static_cast<double>(d) * unit_j_;
      }
      last_counter_ = r.counter_raw;
      have_counter_ = true;
    }
    return {energy_j_, counter_ok, changed};
  }
  if (power_ok) {
    if (have_power_) {
      const double dt_s = static_cast<double>(t_ns - last_power_t_ns_) * 1e-9;
      energy_j_ += 0.5 * (last_power_w_ + r.power_w) * dt_s;  // trapezoid
    }
    last_power_w_ = r.power_w;
    last_power_t_ns_ = t_ns;
    have_power_ = true;
  }
  return {energy_j_, false, false};
}

namespace {

struct Piece {
  int64_t lo_ns, hi_ns;
  double power_w;
  bool measured;  // the window of a power reading (else time no reading saw)
};

// Power at the knot between two pieces: a measured neighbour wins over the unseen rest.
double knot_slope(const Piece& left, const Piece& right) {
  if (left.measured == right.measured) return 0.5 * (left.power_w + right.power_w);
  return left.measured ? left.power_w : right.power_w;
}

double ns_to_s(int64_t ns) { return static_cast<double>(ns) * 1e-9; }

// When a value first read at t_ns changed. If the previous poll saw a change too, the source refreshes at least as
// fast as we poll and the value is current at t_ns; otherwise it changed somewhere since last_ns: take the middle.
int64_t change_instant(int64_t last_ns, int64_t t_ns, bool last_changed) {
  return last_changed ? t_ns : last_ns + (t_ns - last_ns) / 2;
}

// Constant-power pieces covering [a_ns, b_ns] that hold exactly de_j. `windows` are power readings, each the
// average over its [lo_ns, hi_ns]; overlaps go to the earlier window, parts outside [a_ns, b_ns] are dropped.
std::vector<Piece> fuse_interval(int64_t a_ns, int64_t b_ns, double de_j, const std::vector<PowerWindow>& windows) {
  const int64_t span_ns = b_ns - a_ns;
  if (de_j <= 0.0) return {{a_ns, b_ns, 0.0, false}};
  std::vector<Piece> segs;
  int64_t prev_end = a_ns;
  for (const PowerWindow& w : windows) {
    const int64_t lo = std::max(w.lo_ns, prev_end), hi = std::min(w.hi_ns, b_ns);
    if (hi > lo) {
      segs.push_back({lo, hi, w.power_w, true});
      prev_end = hi;
    }
  }
  int64_t win_ns = 0;
  double win_j = 0.0;
  for (const Piece& s : segs) {
    win_ns += s.hi_ns - s.lo_ns;
    win_j += s.power_w * ns_to_s(s.hi_ns - s.lo_ns);
  }
  const int64_t free_ns = span_ns - win_ns;
  const double span_s = ns_to_s(span_ns);
  if (win_ns == 0) return {{a_ns, b_ns, de_j / span_s, false}};
  const double free_s = ns_to_s(free_ns);
  double p_free, scale;
  if (free_ns * 10 < span_ns) {
    // Almost no unseen time: spreading the residual there would make a spike; scale every reading instead.
    p_free = win_j / ns_to_s(win_ns);
    const double total_j = win_j + p_free * free_s;
    scale = de_j / total_j;
    // Readings of ~0 W against real energy: they carry no shape worth scaling (and 0 x inf would be NaN).
    if (!(total_j > 0.0) || !std::isfinite(scale)) return {{a_ns, b_ns, de_j / span_s, false}};
  } else if (de_j - win_j >= 0.0) {
    p_free = (de_j - win_j) / free_s;
    scale = 1.0;
  } else {
    // The readings alone exceed the counter's energy: trust the counter, keep the readings' proportions.
    p_free = 0.0;
    scale = de_j / win_j;
  }
  std::vector<Piece> out;
  out.reserve(2 * segs.size() + 1);
  int64_t cur = a_ns;
  for (const Piece& s : segs) {
    if (s.lo_ns > cur) out.push_back({cur, s.lo_ns, p_free * scale, false});
    out.push_back({s.lo_ns, s.hi_ns, s.power_w * scale, true});
    cur = s.hi_ns;
  }
  if (cur < b_ns) out.push_back({cur, b_ns, p_free * scale, false});
  return out;
}

// One window for neighbours a and b (b starts where a ends or later): over both spans, with their mean power, so a gap
// between them is taken to have that mean power too.
PowerWindow merged(const PowerWindow& a, const PowerWindow& b) {
  const int64_t a_ns = a.hi_ns - a.lo_ns, b_ns = b.hi_ns - b.lo_ns;
  const double p_w = (a.power_w * ns_to_s(a_ns) + b.power_w * ns_to_s(b_ns)) / ns_to_s(a_ns + b_ns);
  return {a.lo_ns, b.hi_ns, p_w};
}

}  // namespace

void KnotBuilder::add_window(PowerWindow w) {
  if (!pending_.empty()) {
    // fuse_interval gives time two windows share to the earlier one: keep only what w adds (nothing, if it ends
    // first). This changes no interval's pieces, and makes every window start where the previous one ends or later.
    w.lo_ns = std::max(w.lo_ns, pending_.back().hi_ns);
    if (w.hi_ns <= w.lo_ns) return;
    if (merge_ns_ > 0 && w.hi_ns - pending_.back().lo_ns <= merge_ns_) {
      pending_.back() = merged(pending_.back(), w);
      return;
    }
  }
  pending_.push_back(w);
  if (pending_.size() <= kMaxPendingWindows) return;
  // Merged windows span at most merge_ns_, and a new one starts only past the previous one's start + merge_ns_, so
  // every two advance by more than merge_ns_: at this resolution at most half the limit remain.
  const int64_t span_ns = pending_.back().hi_ns - pending_.front().lo_ns;
  merge_ns_ = std::max({2 * merge_ns_, span_ns / static_cast<int64_t>(kMaxPendingWindows / 4), int64_t{1}});
  size_t out = 0;
  for (size_t i = 1; i < pending_.size(); ++i) {
    if (pending_[i].hi_ns - pending_[out].lo_ns <= merge_ns_)
      pending_[out] = merged(pending_[out], pending_[i]);
    else
      pending_[++out] = pending_[i];
  }
  pending_.resize(out + 1);
}

void KnotBuilder::push(int64_t t_ns, double energy_j, double power_w, bool counter, bool changed) {
  if (!any_) first_poll_ns_ = t_ns;
  const bool power_ok = std::isfinite(power_w);
  // A new power value became visible between the previous power poll and this one: its window ends there.
  const bool power_changed = power_ok && have_power_ && power_w != last_power_w_;
  const int64_t s_ns = power_changed ? change_instant(last_power_ns_, t_ns, power_prev_changed_) : 0;
  if (counter && !counter_mode_) {
    // Knots made before the counter's first reading carry no energy information.
    counter_mode_ = true;
    knots_.clear();
    have_update_ = false;
    update_intervals_ns_.clear();
  }
  if (counter_mode_) {
    // A window of no length never holds any of an interval's time (fuse_interval drops it): not worth keeping.
    if (power_changed && power_window_ns_ > 0) add_window({s_ns - power_window_ns_, s_ns, power_w});
    if (counter) {
      if (changed && have_valid_) {
        // The first change point went mid-way between polls, as for a counter that moved at an unknown instant.
        // A change again at the very next poll shows the counter moves at every poll, so that first value
        // belongs to the poll that read it: without this, every run's first millisecond is off by half a poll.
        if (valid_prev_changed_ && knots_.single()) knots_.back().t_ns = last_valid_ns_;
        close_interval(change_instant(last_valid_ns_, t_ns, valid_prev_changed_), energy_j,
                       power_ok ? power_w : std::nan(""));
      }
      last_valid_ns_ = t_ns;
      have_valid_ = true;
      valid_prev_changed_ = changed;
    }
  } else {
    if (power_changed) note_update(s_ns);
    // Integrated power that is a trailing average over power_window_ns describes the middle of that window.
    knots_.push({t_ns - power_window_ns_ / 2, energy_j, power_w}, true);
  }
  if (power_ok) {
    power_prev_changed_ = power_changed;
    have_power_ = true;
    last_power_w_ = power_w;
    last_power_ns_ = t_ns;
  }
  last_poll_ns_ = t_ns;
  any_ = true;
}

void KnotBuilder::note_update(int64_t t_ns) {
  if (have_update_) update_intervals_ns_.record(t_ns - last_update_ns_);
  last_update_ns_ = t_ns;
  have_update_ = true;
}

void KnotBuilder::close_interval(int64_t b_ns, double e_b, double latest_power_w) {
  note_update(b_ns);
  std::vector<PowerWindow> pending;
  pending.swap(pending_);
  merge_ns_ = 0;
  if (knots_.empty()) {
    knots_.push({b_ns, e_b, latest_power_w}, true);
    return;
  }
  const int64_t a_ns = knots_.back().t_ns;
  const double e_a = knots_.back().energy_j;
  if (b_ns <= a_ns) {
    knots_.back().energy_j = e_b;
    return;
  }
  const std::vector<Piece> pieces = fuse_interval(a_ns, b_ns, e_b - e_a, pending);
  // Slopes are fixed here for good; a knot no reading touches keeps NaN, so energy_at uses the secant there.
  double e = e_a;
  for (size_t k = 0; k + 1 < pieces.size(); ++k) {
    e = std::min(e + pieces[k].power_w * ns_to_s(pieces[k].hi_ns - pieces[k].lo_ns), e_b);
    knots_.push({pieces[k].hi_ns, e, knot_slope(pieces[k], pieces[k + 1])}, false);  // inside the interval
  }
  knots_.push({b_ns, e_b, pieces.back().measured ? pieces.back().power_w : std::nan("")}, true);
}

double KnotBuilder::observed_update_period_s() const {
  if (update_intervals_ns_.count() < 2) return std::nan("");
  return static_cast<double>(update_intervals_ns_.upper_median_ns()) * 1e-9;
}

// Mean power between knots i and i + 1; 0 W when there is no such pair.
double secant_w(const Knot* k, size_t n, size_t i) {
  if (i + 1 >= n) return 0.0;
  return (k[i + 1].energy_j - k[i].energy_j) / ns_to_s(k[i + 1].t_ns - k[i].t_ns);
}

double energy_at(const Knot* k, size_t n, int64_t t_ns) noexcept {
  if (n == 0) return 0.0;
  if (t_ns <= k[0].t_ns) {
    const double p = std::isfinite(k[0].power_w) ? k[0].power_w : secant_w(k, n, 0);
    return k[0].energy_j - p * ns_to_s(k[0].t_ns - t_ns);
  }
  if (t_ns >= k[n - 1].t_ns) {
    const double p = std::isfinite(k[n - 1].power_w) ? k[n - 1].power_w : (n >= 2 ? secant_w(k, n, n - 2) : 0.0);
    return k[n - 1].energy_j + p * ns_to_s(t_ns - k[n - 1].t_ns);
  }
  const Knot* hi = std::upper_bound(k, k + n, t_ns, [](int64_t t, const Knot& x) { return t < x.t_ns; });
  const Knot& a = hi[-1];
  const Knot& b = hi[0];
  const double h_s = ns_to_s(b.t_ns - a.t_ns);
  const double de_j = b.energy_j - a.energy_j;
  const double u = ns_to_s(t_ns - a.t_ns) / h_s;
  const double delta_w = de_j / h_s;
  if (!(delta_w > 0.0)) return a.energy_j + u * de_j;
  double d_a = std::isfinite(a.power_w) ? std::max(a.power_w, 0.0) : delta_w;
  double d_b = std::isfinite(b.power_w) ? std::max(b.power_w, 0.0) : delta_w;
  const double alpha = d_a / delta_w, beta = d_b / delta_w;
  const double r2 = alpha * alpha + beta * beta;
  if (r2 > 9.0) {  // Fritsch-Carlson: slopes inside the radius-3 circle keep the cubic monotone
    const double tau = 3.0 / std::sqrt(r2);
    d_a = tau * d_a;
    d_b = tau * d_b;
  }
  const double u2 = u * u, u3 = u2 * u;
  return a.energy_j * (2.0 * u3 - 3.0 * u2 + 1.0) + h_s * d_a * (u3 - 2.0 * u2 + u) +
         b.energy_j * (3.0 * u2 - 2.0 * u3) + h_s * d_b * (u3 - u2);
}

}  // namespace fastmeter
