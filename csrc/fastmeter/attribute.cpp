#include "fastmeter/attribute.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastmeter {
namespace {

constexpr double kSPerNs = 1e-9;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Total share change at cuts with unknown u(c) above which a request's uncertainty is unknown; below it, the change
// is float rounding of the shares (w x 1/w need not be exactly 1). Twin: SHARE_ROUNDING.
constexpr double kShareRounding = 1e-9;

// Events at the same time are applied in this order, so a request that starts, emits and ends at one instant
// ends up inactive with weight 0. build_events emits them kind by kind and the sort by time is stable.
enum Kind : uint64_t { kStart = 0, kChunk = 1, kFirstToken = 2, kEnd = 3 };
constexpr int kKindShift = 62;
constexpr uint64_t kRequestMask = (uint64_t{1} << kKindShift) - 1;

// 16 bytes so the one sort that dominates the run moves little memory.
struct Event {
  int64_t t_ns;
  uint64_t code;  // Kind << kKindShift | request index
};
Event make_event(int64_t t_ns, size_t r, Kind kind) { return {t_ns, (kind << kKindShift) | r}; }

// Weight of each request over time (a request's share of an interval is weight / total weight). Time-share:
// 1 while active. Token-weighted: tokens per second of the segment the request is in (docs/attribution.md).
struct Weights {
  std::vector<double> at_start;  // weight from the request's start
  std::vector<double> after;     // weight after each of its token-carrying chunk times, in time order
  std::vector<size_t> next;      // per request: index into `after` of its next chunk time
};

// The sweep's view of one request. Runs of constant weight are accumulated as differences of the global
// prefix sums (closed when the request is touched by an event, reopened after), so a cut where nothing
// happens to a request costs it nothing.
struct RequestState {
  double weight = 0.0;
  double energy_j = 0.0;
  double attributed_s = 0.0;
  double uncertainty_j = 0.0;
  double unknown = 0.0;  // share change seen at cuts whose u is unknown: above kShareRounding, uncertainty NaN
  size_t last_cut = std::numeric_limits<size_t>::max();
  bool active = false;
};

// Neumaier summation: the token-weighted total weight is a long chain of additions and removals of unequal
// densities; without compensation its drift breaks sum(shares) == 1.
class CompensatedSum {
 public:
  void add(double x) noexcept {
    const double t = hi_ + x;
    lo_ += std::fabs(hi_) >= std::fabs(x) ? (hi_ - t) + x : (x - t) + hi_;
    hi_ = t;
  }
  double value() const noexcept { return hi_ + lo_; }
  void reset() noexcept { hi_ = lo_ = 0.0; }

 private:
  double hi_ = 0.0, lo_ = 0.0;
};

// E(x) on the curve for a non-decreasing sequence of x: linear between points, flat outside them.
class CurveCursor {
 public:
  CurveCursor(const int64_t* t_ns, const double* energy_j, size_t n_points)
      : t_(t_ns), e_(energy_j), n_(n_points) {}

  double at(int64_t x) {
    if (x <= t_[0]) return e_[0];
    if (x >= t_[n_ - 1]) return e_[n_ - 1];
    while (t_[i_ + 1] <= x) ++i_;  // t[i] <= x < t[i + 1]
    const double frac = static_cast<double>(x - t_[i_]) / static_cast<double>(t_[i_ + 1] - t_[i_]);
    return e_[i_] + (e_[i_ + 1] - e_[i_]) * frac;
  }

 private:
  const int64_t* t_;
  const double* e_;
  size_t n_, i_ = 0;
};

// Power near a cut c: the larger of the average powers over the update period before and after it. Averages over
// a whole period stay true on a staircase of counter polls (where point-to-point slopes would be 100x too steep)
// and still see a power step at c in full.
class EdgePower {
 public:
  EdgePower(const int64_t* t_ns, const double* energy_j, size_t n_points, int64_t window_ns)
      : behind_(t_ns, energy_j, n_points), ahead_(t_ns, energy_j, n_points), window_ns_(window_ns) {}

  double power_w(int64_t c, double e_c) {
    if (window_ns_ <= 0) return 0.0;
    const double rise_j = std::max(ahead_.at(c + window_ns_) - e_c, e_c - behind_.at(c - window_ns_));
    return rise_j / (static_cast<double>(window_ns_) * kSPerNs);
  }

 private:
  CurveCursor behind_, ahead_;
  int64_t window_ns_;
};

// Error bound of E(c) at a cut strictly between curve points (e0 +- b0) and (e1 +- b1), with e_c interpolated between
// them: the true curve is non-decreasing, so true E(c) lies in [e0 - b0, e1 + b1] (docs/attribution.md). NaN where
// either bound is unknown.
double between_points_bound_j(double e0, double b0, double e_c, double e1, double b1) {
  if (std::isnan(b0) || std::isnan(b1)) return kNaN;
  return std::max(e_c - (e0 - b0), (e1 + b1) - e_c);
}

// Stable LSD radix sort by time, 11 bits a pass over (t - t_min); passes where every key shares the digit are
// skipped. Several times faster than std::sort on millions of events, and stability keeps the kind order.
void sort_by_time(std::vector<Event>& ev) {
  if (ev.size() < 2) return;
  constexpr int kBits = 11;
  constexpr size_t kBuckets = size_t{1} << kBits;
  int64_t lo = ev[0].t_ns, hi = ev[0].t_ns;
  for (const Event& x : ev) {
    lo = std::min(lo, x.t_ns);
    hi = std::max(hi, x.t_ns);
  }
  const uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  std::vector<Event> tmp(ev.size());
  std::vector<size_t> count(kBuckets);
  for (int shift = 0; shift < 64 && (range >> shift) != 0; shift += kBits) {
    const auto digit = [&](const Event& x) {
      const uint64_t key = static_cast<uint64_t>(x.t_ns) - static_cast<uint64_t>(lo);
      return static_cast<size_t>((key >> shift) & (kBuckets - 1));
    };
    std::fill(count.begin(), count.end(), 0);
    for (const Event& x : ev) ++count[digit(x)];
    if (*std::max_element(count.begin(), count.end()) == ev.size()) continue;
    size_t sum = 0;
    for (size_t& c : count) {
      const size_t n = c;
      c = sum;
      sum += n;
    }
    for (const Event& x : ev) tmp[count[digit(x)]++] = x;
    ev.swap(tmp);
  }
}

void check_structure(const AttributionInput& in) {
  if (in.n_points == 0) throw std::invalid_argument("attribute: the energy curve needs at least one point");
  if (in.n_requests > kRequestMask)
    throw std::invalid_argument("attribute: too many requests");
  if (in.method != AttributionMethod::kTokenWeighted) return;
  if (in.chunk_offsets == nullptr) throw std::invalid_argument("attribute: token-weighted needs chunk offsets");
  if (in.chunk_offsets[0] != 0 || in.chunk_offsets[in.n_requests] != static_cast<int64_t>(in.n_chunks))
    throw std::invalid_argument("attribute: chunk offsets must start at 0 and end at the number of chunks");
  for (size_t r = 0; r < in.n_requests; ++r)
    if (in.chunk_offsets[r + 1] < in.chunk_offsets[r])
      throw std::invalid_argument("attribute: chunk offsets must not decrease");
}

// Segments of request r: its token-carrying chunks grouped by time; each group's tokens are spread evenly over
// the time since the previous group (or since the start, for the first).
void add_token_weights(const AttributionInput& in, size_t r, Weights& w, std::vector<Event>& ev,
                       std::vector<int64_t>& group_t, std::vector<double>& group_tokens) {
  group_t.clear();
  group_tokens.clear();
  for (int64_t j = in.chunk_offsets[r]; j < in.chunk_offsets[r + 1]; ++j) {
    if (in.chunk_tokens[j] <= 0) continue;
    const double tokens = static_cast<double>(in.chunk_tokens[j]);
    if (!group_t.empty() && group_t.back() == in.chunk_t_ns[j]) {
      group_tokens.back() += tokens;
    } else {
      group_t.push_back(in.chunk_t_ns[j]);
      group_tokens.push_back(tokens);
    }
  }
  w.next[r] = w.after.size();
  if (group_t.empty()) return;
  const auto rate = [](double tokens, int64_t from_ns, int64_t to_ns) {
    return to_ns > from_ns ? tokens / (static_cast<double>(to_ns - from_ns) * kSPerNs) : 0.0;
  };
  w.at_start[r] = rate(group_tokens[0], in.start_ns[r], group_t[0]);
  for (size_t k = 0; k < group_t.size(); ++k) {
    w.after.push_back(k + 1 < group_t.size() ? rate(group_tokens[k + 1], group_t[k], group_t[k + 1]) : 0.0);
    ev.push_back(make_event(group_t[k], r, kChunk));
  }
}

void build_events(const AttributionInput& in, std::vector<Event>& ev, Weights& w) {
  const size_t n = in.n_requests;
  const bool tokens = in.method == AttributionMethod::kTokenWeighted;
  ev.reserve(3 * n + (tokens ? in.n_chunks : 0));
  for (size_t r = 0; r < n; ++r) ev.push_back(make_event(in.start_ns[r], r, kStart));
  w.at_start.assign(n, tokens ? 0.0 : 1.0);
  if (tokens) {
    w.next.assign(n, 0);
    w.after.reserve(in.n_chunks);
    std::vector<int64_t> group_t;
    std::vector<double> group_tokens;
    for (size_t r = 0; r < n; ++r) add_token_weights(in, r, w, ev, group_t, group_tokens);
  }
  for (size_t r = 0; r < n; ++r)
    if (in.has_first_token[r]) ev.push_back(make_event(in.first_token_ns[r], r, kFirstToken));
  for (size_t r = 0; r < n; ++r) ev.push_back(make_event(in.end_ns[r], r, kEnd));
}

// Global state on one side of a cut, and the share of a request under it: weight / total weight while some
// active request carries weight, else 1 / n_active for every active request (the zero-token fallback).
struct Side {
  int64_t n_active;
  int64_t n_weighted;
  double total_weight;
  double per_weight() const { return n_weighted > 0 ? 1.0 / total_weight : 0.0; }
  double per_fallback() const {
    return n_active > 0 && n_weighted == 0 ? 1.0 / static_cast<double>(n_active) : 0.0;
  }
  double share(double weight, bool active) const {
    return weight * per_weight() + (active && weight == 0.0 ? per_fallback() : 0.0);
  }
};

}  // namespace

void attribute(const AttributionInput& in, AttributionOutput& out) {
  check_structure(in);
  std::vector<Event> ev;
  Weights wt;
  build_events(in, ev, wt);
  sort_by_time(ev);

  const int64_t* t = in.t_ns;
  const double* e = in.energy_j;
  const double* bound = in.bound_j;
  const size_t n_pts = in.n_points;
  const int64_t t_first = t[0], t_last = t[n_pts - 1];
  const auto clip = [&](int64_t c) { return std::min(std::max(c, t_first), t_last); };
  const bool period_known = !std::isnan(in.update_period_s);
  const double period_s = std::isfinite(in.update_period_s) ? std::max(0.0, in.update_period_s) : 0.0;
  EdgePower edge_power(t, e, n_pts, static_cast<int64_t>(std::llround(period_s * 1e9)));

  std::vector<RequestState> req(in.n_requests);
  std::vector<size_t> touched;
  std::vector<double> touched_weight;
  std::vector<char> touched_active;

  // Prefix sums over the intervals swept so far: energy and time per unit weight (weighted intervals) and per
  // zero-weight active request (fallback intervals); uncertainty per unit weight / per zero-weight request.
  // The same for unknown u(c), counting share change instead of joules.
  double h_j = 0.0, h_s = 0.0, f_j = 0.0, f_s = 0.0, uh_j = 0.0, uf_j = 0.0, nh = 0.0, nf = 0.0;
  int64_t n_active = 0, n_weighted = 0;
  CompensatedSum total_weight;
  const auto set_weight = [&](RequestState& s, double w) {
    if (s.weight > 0.0) --n_weighted;
    if (w > 0.0) ++n_weighted;
    total_weight.add(-s.weight);
    total_weight.add(w);
    if (n_weighted == 0) total_weight.reset();
    s.weight = w;
  };

  double idle_j = 0.0, idle_s = 0.0, prev_e = 0.0;
  int64_t prev_c = 0;
  bool have_prev = false;
  size_t i = 0, k = 0, cut = 0;
  while (i < n_pts || k < ev.size()) {
    const int64_t c = k == ev.size() ? t[i] : (i == n_pts ? ev[k].t_ns : std::min(t[i], ev[k].t_ns));
    double e_c, b_c = kNaN;  // E(c) and the bound of its error (NaN: unknown)
    if (i < n_pts && t[i] == c) {
      if (bound) b_c = bound[i];
      e_c = e[i++];
    } else if (i == 0 || i == n_pts) {
      const size_t edge = i == 0 ? 0 : n_pts - 1;  // flat outside the curve's span
      e_c = e[edge];
      if (bound) b_c = bound[edge];
    } else {
      e_c = e[i - 1] + (e[i] - e[i - 1]) * (static_cast<double>(c - t[i - 1]) / static_cast<double>(t[i] - t[i - 1]));
      if (bound) b_c = between_points_bound_j(e[i - 1], bound[i - 1], e_c, e[i], bound[i]);
    }
    if (have_prev) {  // the elementary interval (prev_c, c]: shares are constant inside it
      const double de = e_c - prev_e;
      const double ds = static_cast<double>(clip(c) - clip(prev_c)) * kSPerNs;
      if (n_active == 0) {
        idle_j += de;
        idle_s += ds;
      } else if (n_weighted > 0) {
        const double w = total_weight.value();
        h_j += de / w;
        h_s += ds / w;
      } else {
        f_j += de / static_cast<double>(n_active);
        f_s += ds / static_cast<double>(n_active);
      }
    }
    have_prev = true;
    prev_c = c;
    prev_e = e_c;
    if (k == ev.size() || ev[k].t_ns != c) continue;  // a curve point only: no share changes here

    const Side before{n_active, n_weighted, total_weight.value()};
    touched.clear();
    touched_weight.clear();
    touched_active.clear();
    for (; k < ev.size() && ev[k].t_ns == c; ++k) {
      const size_t r = static_cast<size_t>(ev[k].code & kRequestMask);
      RequestState& s = req[r];
      if (s.last_cut != cut) {  // close its current run at the prefix values up to c
        s.last_cut = cut;
        touched.push_back(r);
        touched_weight.push_back(s.weight);
        touched_active.push_back(s.active);
        const bool fallback = s.active && s.weight == 0.0;
        s.energy_j += s.weight * h_j + (fallback ? f_j : 0.0);
        s.attributed_s += s.weight * h_s + (fallback ? f_s : 0.0);
        s.uncertainty_j += s.weight * uh_j + (fallback ? uf_j : 0.0);
        s.unknown += s.weight * nh + (fallback ? nf : 0.0);
      }
      switch (ev[k].code >> kKindShift) {
        case kStart:
          s.active = true;
          ++n_active;
          set_weight(s, wt.at_start[r]);
          break;
        case kEnd:
          s.active = false;
          --n_active;
          set_weight(s, 0.0);
          break;
        case kChunk:
          set_weight(s, wt.after[wt.next[r]++]);
          break;
        default:  // kFirstToken: its energy so far, the run having just been closed
          out.prefill_energy_j[r] = s.energy_j;
      }
    }
    const Side after{n_active, n_weighted, total_weight.value()};
    // The error of E(c) moves energy between the intervals either side of c; a request's share of it is the
    // change of its share across c (summation by parts), see docs/attribution.md. u(c) is the given bound of
    // E(c), or where that is unknown the heuristic power near c x half the update period.
    const double heuristic_j = period_known ? edge_power.power_w(c, e_c) * period_s / 2.0 : kNaN;
    const double u = std::isnan(b_c) ? heuristic_j : b_c;
    const double u_j = std::isnan(u) ? 0.0 : u, unknown = std::isnan(u) ? 1.0 : 0.0;
    const double d_weight = std::fabs(before.per_weight() - after.per_weight());
    const double d_fallback = std::fabs(before.per_fallback() - after.per_fallback());
    uh_j += u_j * d_weight;
    uf_j += u_j * d_fallback;
    nh += unknown * d_weight;
    nf += unknown * d_fallback;
    for (size_t m = 0; m < touched.size(); ++m) {  // its own share change, then reopen its run
      RequestState& s = req[touched[m]];
      const double share_before = before.share(touched_weight[m], touched_active[m] != 0);
      const double d_share = std::fabs(share_before - after.share(s.weight, s.active));
      s.uncertainty_j += u_j * d_share;
      s.unknown += unknown * d_share;
      const bool fallback = s.active && s.weight == 0.0;
      s.energy_j -= s.weight * h_j + (fallback ? f_j : 0.0);
      s.attributed_s -= s.weight * h_s + (fallback ? f_s : 0.0);
      s.uncertainty_j -= s.weight * uh_j + (fallback ? uf_j : 0.0);
      s.unknown -= s.weight * nh + (fallback ? nf : 0.0);
    }
    ++cut;
  }

  for (size_t r = 0; r < in.n_requests; ++r) {
    out.energy_j[r] = req[r].energy_j;
    out.attributed_s[r] = req[r].attributed_s;
    out.uncertainty_j[r] = req[r].unknown > kShareRounding ? kNaN : req[r].uncertainty_j;
    if (!in.has_first_token[r]) out.prefill_energy_j[r] = req[r].energy_j;
  }
  out.idle_j = idle_j;
  out.idle_s = idle_s;
  out.total_j = e[n_pts - 1] - e[0];
  out.span_s = static_cast<double>(t_last - t_first) * kSPerNs;
}

}  // namespace fastmeter
