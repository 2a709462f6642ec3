#include "fastmeter/attribute_stream.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>

namespace fastmeter {

using sweep::Event;
using sweep::kNaN;
using sweep::kSPerNs;

namespace {
// Curve points already swept are dropped in blocks of at least this many (amortised erase from the front).
constexpr size_t kTrimBlock = 1 << 16;
}  // namespace

AttributionStream::AttributionStream(AttributionMethod method, double update_period_s)
    : method_(method),
      period_known_(!std::isnan(update_period_s)),
      period_s_(std::isfinite(update_period_s) ? std::max(0.0, update_period_s) : 0.0),
      window_ns_(static_cast<int64_t>(std::llround(period_s_ * 1e9))),
      watermark_ns_(std::numeric_limits<int64_t>::min()) {}

void AttributionStream::add_curve(const int64_t* t_ns, const double* energy_j, const double* bound_j, size_t n) {
  if (curve_ended_) throw std::invalid_argument("attribution stream: curve points after the curve ended");
  for (size_t j = 0; j < n; ++j) {
    if (n_points_ > 0 && t_ns[j] <= t_last_)
      throw std::invalid_argument("attribution stream: curve times must be strictly increasing across chunks");
    if (n_points_ == 0) {
      t_first_ = t_ns[j];
      e_first_ = energy_j[j];
    }
    t_last_ = t_ns[j];
    e_last_ = energy_j[j];
    pt_t_.push_back(t_ns[j]);
    pt_e_.push_back(energy_j[j]);
    pt_b_.push_back(bound_j ? bound_j[j] : kNaN);
    ++n_points_;
  }
}

void AttributionStream::end_curve() { curve_ended_ = true; }

void AttributionStream::add_requests(const int64_t* start_ns, const int64_t* end_ns, const int64_t* first_token_ns,
                                     const uint8_t* has_first_token, size_t n, const int64_t* chunk_offsets,
                                     const int64_t* chunk_t_ns, const int64_t* chunk_tokens) {
  if (requests_ended_) throw std::invalid_argument("attribution stream: requests after the requests ended");
  const bool tokens = method_ == AttributionMethod::kTokenWeighted;
  for (size_t r = 0; r < n; ++r) {
    if (start_ns[r] < watermark_ns_)
      throw std::invalid_argument("attribution stream: requests must come in order of start_ns");
    if (n_read_ >= sweep::kRequestMask) throw std::invalid_argument("attribution stream: too many requests");
    const size_t g = n_read_++;
    Request& q = pending_[g];
    q.start_ns = start_ns[r];
    q.end_ns = end_ns[r];
    q.has_first_token = has_first_token[r] != 0;
    const auto push = [&](int64_t t, sweep::Kind kind) {
      events_.push_back(sweep::make_event(t, g, kind));
      std::push_heap(events_.begin(), events_.end(), std::greater<>());
    };
    push(start_ns[r], sweep::kStart);
    if (tokens) {
      scratch_t_.clear();
      const int64_t from = chunk_offsets[r];
      sweep::token_weights(start_ns[r], chunk_t_ns + from, chunk_tokens + from,
                           static_cast<size_t>(chunk_offsets[r + 1] - from), q.at_start, q.after, scratch_t_,
                           scratch_tokens_);
      for (const int64_t t : scratch_t_) push(t, sweep::kChunk);
    }
    if (q.has_first_token) push(first_token_ns[r], sweep::kFirstToken);
    push(end_ns[r], sweep::kEnd);
    watermark_ns_ = start_ns[r];
  }
}

void AttributionStream::end_requests() { requests_ended_ = true; }

int64_t AttributionStream::curve_needed_until_ns() const {
  if (requests_ended_) return std::numeric_limits<int64_t>::max();
  // A cut before the watermark may need E one update period later (the edge power), and the next point after it.
  const int64_t w = watermark_ns_;
  return w > std::numeric_limits<int64_t>::max() - window_ns_ ? w : w + window_ns_;
}

double AttributionStream::total_j() const { return curve_ended_ && n_points_ ? e_last_ - e_first_ : kNaN; }
double AttributionStream::span_s() const {
  return curve_ended_ && n_points_ ? static_cast<double>(t_last_ - t_first_) * kSPerNs : kNaN;
}

bool AttributionStream::curve_known_past(int64_t x) const { return curve_ended_ || (n_points_ && t_last_ > x); }

double AttributionStream::curve_at(size_t& j, int64_t x) const {
  if (x <= t_first_) return e_first_;
  if (curve_ended_ && x >= t_last_) return e_last_;
  const auto at = [&](size_t g) { return g - base_; };
  while (pt_t_[at(j + 1)] <= x) ++j;  // t[j] <= x < t[j + 1]
  return sweep::interpolate_j(pt_t_[at(j)], pt_e_[at(j)], pt_t_[at(j + 1)], pt_e_[at(j + 1)], x);
}

void AttributionStream::trim_curve() {
  // The behind cursor serves instants >= (previous cut - window): move it there now, as its next query would, so
  // a long stretch without events does not pin the points behind it.
  if (!period_known_ || window_ns_ <= 0) {
    behind_ = i_ == 0 ? 0 : i_ - 1;  // the edge power is never read: nothing behind the sweep is needed
  } else if (have_prev_) {
    const int64_t x = prev_c_ - window_ns_;
    while (behind_ + 1 < i_ && pt_t_[behind_ + 1 - base_] <= x) ++behind_;
  }
  ahead_ = std::max(ahead_, behind_);
  const size_t keep_from = std::min(i_ == 0 ? 0 : i_ - 1, behind_);
  const size_t drop = keep_from - base_;
  if (drop < kTrimBlock || drop < pt_t_.size() / 2) return;
  pt_t_.erase(pt_t_.begin(), pt_t_.begin() + static_cast<std::ptrdiff_t>(drop));
  pt_e_.erase(pt_e_.begin(), pt_e_.begin() + static_cast<std::ptrdiff_t>(drop));
  pt_b_.erase(pt_b_.begin(), pt_b_.begin() + static_cast<std::ptrdiff_t>(drop));
  base_ = keep_from;
}

void AttributionStream::emit(StreamResults& out) {
  for (auto it = pending_.find(next_emit_); it != pending_.end() && it->second.done; it = pending_.find(next_emit_)) {
    const Request& q = it->second;
    out.energy_j.push_back(q.state.energy_j);
    out.prefill_energy_j.push_back(q.has_first_token ? q.state.prefill_j : q.state.energy_j);
    out.attributed_s.push_back(q.state.attributed_s);
    out.uncertainty_j.push_back(q.state.uncertainty_or_nan());
    out.outside_span.push_back(q.start_ns < t_first_ || (curve_ended_ && q.end_ns > t_last_));
    pending_.erase(it);
    ++next_emit_;
  }
}

void AttributionStream::advance(StreamResults& out) {
  if (curve_ended_ && n_points_ == 0)
    throw std::invalid_argument("attribution stream: the energy curve needs at least one point");
  if (out.energy_j.empty()) out.first_index = next_emit_;
  const auto T = [&](size_t g) { return pt_t_[g - base_]; };
  const auto E = [&](size_t g) { return pt_e_[g - base_]; };
  const auto B = [&](size_t g) { return pt_b_[g - base_]; };
  const auto clip = [&](int64_t c) {
    const int64_t lo = std::max(c, t_first_);
    return curve_ended_ ? std::min(lo, t_last_) : lo;  // before the end, every cut lies before a known point
  };
  const bool needs_lookahead = period_known_ && window_ns_ > 0;
  while (n_points_ > 0) {
    const bool have_pt = i_ < n_points_;
    const bool have_ev = !events_.empty();
    if ((!have_pt && !curve_ended_) || (!have_pt && !have_ev)) break;
    const int64_t c = !have_ev ? T(i_) : (!have_pt ? events_.front().t_ns : std::min(T(i_), events_.front().t_ns));
    if (!requests_ended_ && c >= watermark_ns_) break;  // events at c may still arrive
    const bool event_cut = have_ev && events_.front().t_ns == c;
    if (event_cut && needs_lookahead && !curve_known_past(c + window_ns_)) break;

    double e_c, b_c;  // E(c) and the bound of its error (NaN: unknown)
    if (have_pt && T(i_) == c) {
      e_c = E(i_);
      b_c = B(i_);
      ++i_;
    } else if (i_ == 0 || i_ == n_points_) {  // flat outside the curve's span
      const size_t edge = i_ == 0 ? 0 : n_points_ - 1;
      e_c = E(edge);
      b_c = B(edge);
    } else {
      e_c = sweep::interpolate_j(T(i_ - 1), E(i_ - 1), T(i_), E(i_), c);
      b_c = sweep::between_points_bound_j(E(i_ - 1), B(i_ - 1), e_c, E(i_), B(i_));
    }
    if (have_prev_) sweep_.interval(e_c - prev_e_, static_cast<double>(clip(c) - clip(prev_c_)) * kSPerNs);
    have_prev_ = true;
    prev_c_ = c;
    prev_e_ = e_c;
    if (!event_cut) continue;

    sweep_.begin_cut();
    bool ended = false;
    while (!events_.empty() && events_.front().t_ns == c) {
      const Event ev = events_.front();
      std::pop_heap(events_.begin(), events_.end(), std::greater<>());
      events_.pop_back();
      Request& q = pending_.at(ev.request());
      const sweep::Kind kind = ev.kind();
      const double w = kind == sweep::kStart ? q.at_start : (kind == sweep::kChunk ? q.after[q.next++] : 0.0);
      sweep_.event(q.state, kind, w);
      if (kind == sweep::kEnd) ended = q.done = true;
    }
    double heuristic_j = kNaN;  // the power near c x half the update period, where the bound is unknown
    if (period_known_) {
      double power_w = 0.0;
      if (window_ns_ > 0) {
        const double rise_j = std::max(curve_at(ahead_, c + window_ns_) - e_c, e_c - curve_at(behind_, c - window_ns_));
        power_w = rise_j / (static_cast<double>(window_ns_) * kSPerNs);
      }
      heuristic_j = power_w * period_s_ / 2.0;
    }
    sweep_.end_cut(std::isnan(b_c) ? heuristic_j : b_c);
    if (ended) emit(out);
  }
  trim_curve();
}

}  // namespace fastmeter
