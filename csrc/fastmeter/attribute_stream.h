// Per-request energy attribution over streamed input: the curve and the requests arrive in chunks, results leave
// as soon as a request's last event is swept. Same cuts, same order, same arithmetic (attribute_sweep.h) as the
// in-memory attribute(), so the results are identical to it when requests are given in start order.
// Memory: the curve points within one update period of the sweep, the requests read but not yet reported (those in
// flight, plus finished ones waiting for an earlier-started one to finish: results leave in input order) and
// their pending events. Python: fastmeter.attribution_stream.
#pragma once
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "fastmeter/attribute.h"
#include "fastmeter/attribute_sweep.h"

namespace fastmeter {

// Results of the requests finished since the last drain, in input order from `first_index`.
struct StreamResults {
  size_t first_index = 0;
  std::vector<double> energy_j, prefill_energy_j, attributed_s, uncertainty_j;
  std::vector<uint8_t> outside_span;  // the request reaches beyond the curve's first or last point
  void clear() {
    energy_j.clear();
    prefill_energy_j.clear();
    attributed_s.clear();
    uncertainty_j.clear();
    outside_span.clear();
  }
};

class AttributionStream {
 public:
  AttributionStream(AttributionMethod method, double update_period_s);
  AttributionStream(const AttributionStream&) = delete;
  AttributionStream& operator=(const AttributionStream&) = delete;

  // Curve points continuing the previous ones (t strictly increasing, E non-decreasing: the caller validates);
  // bound_j may be null (unknown at these points).
  void add_curve(const int64_t* t_ns, const double* energy_j, const double* bound_j, size_t n);
  void end_curve();
  // Requests continuing the previous ones in order of start_ns; chunk_offsets (n + 1, from 0) index this batch's
  // chunks. Chunks are read only by kTokenWeighted.
  void add_requests(const int64_t* start_ns, const int64_t* end_ns, const int64_t* first_token_ns,
                    const uint8_t* has_first_token, size_t n, const int64_t* chunk_offsets, const int64_t* chunk_t_ns,
                    const int64_t* chunk_tokens);
  void end_requests();
  // Sweeps every cut the input so far decides; appends the results that can leave to `out`. When both inputs have
  // ended it sweeps to the end. Throws std::invalid_argument if both ended without a curve point.
  void advance(StreamResults& out);

  // The latest instant the sweep may need the curve at before the next requests arrive: feed the curve past it.
  int64_t curve_needed_until_ns() const;
  bool done() const { return curve_ended_ && requests_ended_ && events_.empty() && pending_.empty(); }
  size_t requests_read() const { return n_read_; }
  size_t requests_held() const { return pending_.size(); }
  size_t curve_points_held() const { return pt_t_.size(); }
  double idle_j() const { return sweep_.idle_j; }
  double idle_s() const { return sweep_.idle_s; }
  double total_j() const;  // E(last point) - E(first point), NaN before the curve has ended
  double span_s() const;

 private:
  struct Request {
    sweep::RequestState state;
    std::vector<double> after;  // token weight after each of its chunk times
    size_t next = 0;
    double at_start = 1.0;
    int64_t start_ns = 0, end_ns = 0;
    bool has_first_token = false;
    bool done = false;
  };

  double curve_at(size_t& cursor, int64_t x) const;  // E(x) with a monotone cursor (global point index)
  bool curve_known_past(int64_t x) const;             // a point after x is held, or the curve has ended
  void trim_curve();
  void emit(StreamResults& out);

  AttributionMethod method_;
  bool period_known_;
  double period_s_;
  int64_t window_ns_;

  // Curve points held, global indices [base_, base_ + size).
  std::vector<int64_t> pt_t_;
  std::vector<double> pt_e_, pt_b_;
  size_t base_ = 0, n_points_ = 0;
  bool curve_ended_ = false;
  int64_t t_first_ = 0, t_last_ = 0;
  double e_first_ = 0.0, e_last_ = 0.0;

  // Requests read and not yet reported, by input index; events pending, earliest first.
  std::unordered_map<size_t, Request> pending_;
  std::vector<sweep::Event> events_;  // a min-heap on (t_ns, kind, request)
  size_t n_read_ = 0, next_emit_ = 0;
  int64_t watermark_ns_ = 0;  // no request read later starts before this
  bool requests_ended_ = false;
  std::vector<int64_t> scratch_t_;
  std::vector<double> scratch_tokens_;

  // The sweep position: next curve point (global index), previous cut, cursors of the edge-power windows.
  sweep::Sweep sweep_;
  size_t i_ = 0, behind_ = 0, ahead_ = 0;
  int64_t prev_c_ = 0;
  double prev_e_ = 0.0;
  bool have_prev_ = false;
};

}  // namespace fastmeter
