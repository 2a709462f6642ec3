#include "fastmeter/attribute.h"

#include "fastmeter/attribute_sweep.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastmeter {
namespace {

using sweep::Event;
using sweep::kChunk;
using sweep::kEnd;
using sweep::kFirstToken;
using sweep::kNaN;
using sweep::kRequestMask;
using sweep::kSPerNs;
using sweep::kStart;
using sweep::make_event;

// Weight of each request over time (a request's share of an interval is weight / total weight). Time-share:
// 1 while active. Token-weighted: tokens per second of the segment the request is in (docs/attribution.md).
struct Weights {
  std::vector<double> at_start;  // weight from the request's start
  std::vector<double> after;     // weight after each of its token-carrying chunk times, in time order
  std::vector<size_t> next;      // per request: index into `after` of its next chunk time
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
    return sweep::interpolate_j(t_[i_], e_[i_], t_[i_ + 1], e_[i_ + 1], x);
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

// Token weights and chunk events of request r (sweep::token_weights).
void add_token_weights(const AttributionInput& in, size_t r, Weights& w, std::vector<Event>& ev,
                       std::vector<int64_t>& group_t, std::vector<double>& group_tokens) {
  group_t.clear();
  w.next[r] = w.after.size();
  const int64_t from = in.chunk_offsets[r];
  sweep::token_weights(in.start_ns[r], in.chunk_t_ns + from, in.chunk_tokens + from,
                       static_cast<size_t>(in.chunk_offsets[r + 1] - from), w.at_start[r], w.after, group_t,
                       group_tokens);
  for (const int64_t t : group_t) ev.push_back(make_event(t, r, kChunk));
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

  std::vector<sweep::RequestState> req(in.n_requests);
  sweep::Sweep sw;
  double prev_e = 0.0;
  int64_t prev_c = 0;
  bool have_prev = false;
  size_t i = 0, k = 0;
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
      e_c = sweep::interpolate_j(t[i - 1], e[i - 1], t[i], e[i], c);
      if (bound) b_c = sweep::between_points_bound_j(e[i - 1], bound[i - 1], e_c, e[i], bound[i]);
    }
    if (have_prev) sw.interval(e_c - prev_e, static_cast<double>(clip(c) - clip(prev_c)) * kSPerNs);
    have_prev = true;
    prev_c = c;
    prev_e = e_c;
    if (k == ev.size() || ev[k].t_ns != c) continue;  // a curve point only: no share changes here

    sw.begin_cut();
    for (; k < ev.size() && ev[k].t_ns == c; ++k) {
      const size_t r = ev[k].request();
      const sweep::Kind kind = ev[k].kind();
      const double w = kind == kStart ? wt.at_start[r] : (kind == kChunk ? wt.after[wt.next[r]++] : 0.0);
      sw.event(req[r], kind, w);
    }
    // u(c): the given bound of E(c), or where that is unknown the heuristic power near c x half the update period.
    const double heuristic_j = period_known ? edge_power.power_w(c, e_c) * period_s / 2.0 : kNaN;
    sw.end_cut(std::isnan(b_c) ? heuristic_j : b_c);
  }

  for (size_t r = 0; r < in.n_requests; ++r) {
    out.energy_j[r] = req[r].energy_j;
    out.attributed_s[r] = req[r].attributed_s;
    out.uncertainty_j[r] = req[r].uncertainty_or_nan();
    out.prefill_energy_j[r] = in.has_first_token[r] ? req[r].prefill_j : req[r].energy_j;
  }
  out.idle_j = sw.idle_j;
  out.idle_s = sw.idle_s;
  out.total_j = e[n_pts - 1] - e[0];
  out.span_s = static_cast<double>(t_last - t_first) * kSPerNs;
}

}  // namespace fastmeter
