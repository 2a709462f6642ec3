// The arithmetic of the attribution sweep, shared by the in-memory kernel (attribute.cpp) and the streaming one
// (attribute_stream.cpp): both drive one Sweep through the same cuts in the same order, so their results are the
// same to the last bit. docs/attribution.md defines every rule; internal header, not part of the API.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace fastmeter::sweep {

constexpr double kSPerNs = 1e-9;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Total share change at cuts with unknown u(c) above which a request's uncertainty is unknown; below it, the change
// is float rounding of the shares (w x 1/w need not be exactly 1). Twin: SHARE_ROUNDING.
constexpr double kShareRounding = 1e-9;

// Events at the same time are applied in this order, so a request that starts, emits and ends at one instant
// ends up inactive with weight 0. Within a kind, by request index: (t_ns, code) orders events completely.
enum Kind : uint64_t { kStart = 0, kChunk = 1, kFirstToken = 2, kEnd = 3 };
constexpr int kKindShift = 62;
constexpr uint64_t kRequestMask = (uint64_t{1} << kKindShift) - 1;

// 16 bytes so the one sort that dominates the in-memory run moves little memory.
struct Event {
  int64_t t_ns;
  uint64_t code;  // Kind << kKindShift | request index
  Kind kind() const { return static_cast<Kind>(code >> kKindShift); }
  size_t request() const { return static_cast<size_t>(code & kRequestMask); }
};
inline Event make_event(int64_t t_ns, size_t r, Kind kind) { return {t_ns, (kind << kKindShift) | r}; }
inline bool operator>(const Event& a, const Event& b) {
  return a.t_ns != b.t_ns ? a.t_ns > b.t_ns : a.code > b.code;
}

// The sweep's view of one request. Runs of constant weight are accumulated as differences of the global
// prefix sums (closed when the request is touched by an event, reopened after), so a cut where nothing
// happens to a request costs it nothing.
struct RequestState {
  double weight = 0.0;
  double energy_j = 0.0;
  double attributed_s = 0.0;
  double uncertainty_j = 0.0;
  double unknown = 0.0;    // share change seen at cuts whose u is unknown: above kShareRounding, uncertainty NaN
  double prefill_j = 0.0;  // energy_j when its first token came
  size_t last_cut = std::numeric_limits<size_t>::max();
  bool active = false;
  // What the request reports once its last event is swept.
  double uncertainty_or_nan() const { return unknown > kShareRounding ? kNaN : uncertainty_j; }
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

// Error bound of E(c) at a cut strictly between curve points (e0 +- b0) and (e1 +- b1), with e_c interpolated between
// them: the true curve is non-decreasing, so true E(c) lies in [e0 - b0, e1 + b1] (docs/attribution.md). NaN where
// either bound is unknown.
inline double between_points_bound_j(double e0, double b0, double e_c, double e1, double b1) {
  if (std::isnan(b0) || std::isnan(b1)) return kNaN;
  return std::max(e_c - (e0 - b0), (e1 + b1) - e_c);
}

// E(c) strictly between the points (t0, e0) and (t1, e1).
inline double interpolate_j(int64_t t0, double e0, int64_t t1, double e1, int64_t c) {
  return e0 + (e1 - e0) * (static_cast<double>(c - t0) / static_cast<double>(t1 - t0));
}

// Token weights of one request: its token-carrying chunks grouped by time; each group's tokens are spread evenly
// over the time since the previous group (or since the start, for the first). Sets `at_start` (the weight from the
// start), appends the weight after each group to `after` and each group's time to `times` (a chunk event each).
inline void token_weights(int64_t start_ns, const int64_t* chunk_t_ns, const int64_t* chunk_tokens, size_t n_chunks,
                          double& at_start, std::vector<double>& after, std::vector<int64_t>& times,
                          std::vector<double>& scratch_tokens) {
  const size_t first = times.size();
  scratch_tokens.clear();
  for (size_t j = 0; j < n_chunks; ++j) {
    if (chunk_tokens[j] <= 0) continue;
    const double tokens = static_cast<double>(chunk_tokens[j]);
    if (times.size() > first && times.back() == chunk_t_ns[j]) {
      scratch_tokens.back() += tokens;
    } else {
      times.push_back(chunk_t_ns[j]);
      scratch_tokens.push_back(tokens);
    }
  }
  at_start = 0.0;
  const size_t n = scratch_tokens.size();
  if (n == 0) return;
  const auto rate = [](double tokens, int64_t from_ns, int64_t to_ns) {
    return to_ns > from_ns ? tokens / (static_cast<double>(to_ns - from_ns) * kSPerNs) : 0.0;
  };
  at_start = rate(scratch_tokens[0], start_ns, times[first]);
  for (size_t k = 0; k < n; ++k)
    after.push_back(k + 1 < n ? rate(scratch_tokens[k + 1], times[first + k], times[first + k + 1]) : 0.0);
}

// Global state of the sweep: prefix sums over the intervals swept so far of energy and time per unit weight
// (weighted intervals) and per zero-weight active request (fallback intervals); uncertainty per unit weight / per
// zero-weight request; the same for unknown u(c), counting share change instead of joules.
// Per cut: interval() for the interval ending there, then (if requests have events there) begin_cut(), event() for
// each in (kind, request) order, end_cut().
class Sweep {
 public:
  double idle_j = 0.0;  // energy while no request was active
  double idle_s = 0.0;

  // The elementary interval (previous cut, this cut]: shares are constant inside it.
  void interval(double de_j, double ds_s) {
    if (n_active_ == 0) {
      idle_j += de_j;
      idle_s += ds_s;
    } else if (n_weighted_ > 0) {
      const double w = total_weight_.value();
      h_j_ += de_j / w;
      h_s_ += ds_s / w;
    } else {
      f_j_ += de_j / static_cast<double>(n_active_);
      f_s_ += ds_s / static_cast<double>(n_active_);
    }
  }

  void begin_cut() {
    before_ = Side{n_active_, n_weighted_, total_weight_.value()};
    touched_.clear();
  }

  // One event of request `s` at this cut; `weight` is its weight after a start or chunk event (ignored otherwise).
  void event(RequestState& s, Kind kind, double weight) {
    if (s.last_cut != cut_) {  // close its current run at the prefix values up to this cut
      s.last_cut = cut_;
      touched_.push_back({&s, s.weight, s.active});
      const bool fallback = s.active && s.weight == 0.0;
      s.energy_j += s.weight * h_j_ + (fallback ? f_j_ : 0.0);
      s.attributed_s += s.weight * h_s_ + (fallback ? f_s_ : 0.0);
      s.uncertainty_j += s.weight * uh_j_ + (fallback ? uf_j_ : 0.0);
      s.unknown += s.weight * nh_ + (fallback ? nf_ : 0.0);
    }
    switch (kind) {
      case kStart:
        s.active = true;
        ++n_active_;
        set_weight(s, weight);
        break;
      case kEnd:
        s.active = false;
        --n_active_;
        set_weight(s, 0.0);
        break;
      case kChunk:
        set_weight(s, weight);
        break;
      case kFirstToken:  // its energy so far, the run having just been closed
        s.prefill_j = s.energy_j;
    }
  }

  // u_j: the bound of E at this cut, or NaN where unknown. The error of E(c) moves energy between the intervals
  // either side of c; a request's share of it is the change of its share across c (summation by parts), see
  // docs/attribution.md.
  void end_cut(double u) {
    const Side after{n_active_, n_weighted_, total_weight_.value()};
    const double u_j = std::isnan(u) ? 0.0 : u, unknown = std::isnan(u) ? 1.0 : 0.0;
    const double d_weight = std::fabs(before_.per_weight() - after.per_weight());
    const double d_fallback = std::fabs(before_.per_fallback() - after.per_fallback());
    uh_j_ += u_j * d_weight;
    uf_j_ += u_j * d_fallback;
    nh_ += unknown * d_weight;
    nf_ += unknown * d_fallback;
    for (const Touched& m : touched_) {  // its own share change, then reopen its run
      RequestState& s = *m.state;
      const double d_share = std::fabs(before_.share(m.weight, m.active) - after.share(s.weight, s.active));
      s.uncertainty_j += u_j * d_share;
      s.unknown += unknown * d_share;
      const bool fallback = s.active && s.weight == 0.0;
      s.energy_j -= s.weight * h_j_ + (fallback ? f_j_ : 0.0);
      s.attributed_s -= s.weight * h_s_ + (fallback ? f_s_ : 0.0);
      s.uncertainty_j -= s.weight * uh_j_ + (fallback ? uf_j_ : 0.0);
      s.unknown -= s.weight * nh_ + (fallback ? nf_ : 0.0);
    }
    ++cut_;
  }

 private:
  // Global state on one side of a cut, and the share of a request under it: weight / total weight while some
  // active request carries weight, else 1 / n_active for every active request (the zero-token fallback).
  struct Side {
    int64_t n_active = 0;
    int64_t n_weighted = 0;
    double total_weight = 0.0;
    double per_weight() const { return n_weighted > 0 ? 1.0 / total_weight : 0.0; }
    double per_fallback() const {
      return n_active > 0 && n_weighted == 0 ? 1.0 / static_cast<double>(n_active) : 0.0;
    }
    double share(double weight, bool active) const {
      return weight * per_weight() + (active && weight == 0.0 ? per_fallback() : 0.0);
    }
  };
  struct Touched {
    RequestState* state;  // stable: the owner never moves a state while it is in a cut
    double weight;        // before the cut
    bool active;
  };

  void set_weight(RequestState& s, double w) {
    if (s.weight > 0.0) --n_weighted_;
    if (w > 0.0) ++n_weighted_;
    total_weight_.add(-s.weight);
    total_weight_.add(w);
    if (n_weighted_ == 0) total_weight_.reset();
    s.weight = w;
  }

  double h_j_ = 0.0, h_s_ = 0.0, f_j_ = 0.0, f_s_ = 0.0, uh_j_ = 0.0, uf_j_ = 0.0, nh_ = 0.0, nf_ = 0.0;
  int64_t n_active_ = 0, n_weighted_ = 0;
  CompensatedSum total_weight_;
  Side before_;
  std::vector<Touched> touched_;
  size_t cut_ = 0;
};

}  // namespace fastmeter::sweep
