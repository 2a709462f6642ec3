// Per-request energy attribution: one sweep over the sorted request events and the energy curve's points.
// The pure-Python twin is python/fastmeter/reference/attribute.py; docs/attribution.md defines every rule.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastmeter {

enum class AttributionMethod {
  kTimeShare,      // an interval's energy is split equally among the requests active in it
  kTokenWeighted,  // split in proportion to each request's tokens within the interval (time-share if none)
};

// Pointers are borrowed for the duration of attribute(); the caller (fastmeter.attribution) has validated the
// semantics (sorted times, end >= start, chunks inside their request). attribute() checks only what memory
// safety needs.
struct AttributionInput {
  // Total cumulative-energy curve E(t): strictly increasing t_ns, linear between points, flat outside them.
  const int64_t* t_ns = nullptr;
  const double* energy_j = nullptr;
  // Optional: a bound of |E - true E| at each curve point (NaN where unknown). Where known it is the error of E at a
  // cut, so uncertainty_j bounds each request's attribution error; elsewhere the update-period heuristic serves.
  const double* bound_j = nullptr;
  size_t n_points = 0;

  const int64_t* start_ns = nullptr;
  const int64_t* end_ns = nullptr;
  const int64_t* first_token_ns = nullptr;  // read only where has_first_token[r] != 0
  const uint8_t* has_first_token = nullptr;
  size_t n_requests = 0;

  // Token chunks of request r are [chunk_offsets[r], chunk_offsets[r + 1]) (n_requests + 1 offsets, sorted
  // times within a request). Needed only by kTokenWeighted.
  const int64_t* chunk_offsets = nullptr;
  const int64_t* chunk_t_ns = nullptr;
  const int64_t* chunk_tokens = nullptr;
  size_t n_chunks = 0;

  AttributionMethod method = AttributionMethod::kTimeShare;
  // Counter refresh period behind the heuristic uncertainty; 0 = none; NaN = unknown, so a request whose share
  // changes at a cut without a known bound gets uncertainty NaN.
  double update_period_s = 0.0;
};

// Per-request arrays (n_requests each) are written by attribute(); the caller owns them.
struct AttributionOutput {
  double* energy_j = nullptr;          // gross energy attributed to the request
  double* prefill_energy_j = nullptr;  // the part before its first token (all of it if it has none)
  double* attributed_s = nullptr;      // its share of time, sum over intervals of share x duration
  double* uncertainty_j = nullptr;     // from bound_j, else the update period (docs/attribution.md)
  double idle_j = 0.0;                 // energy while no request was active
  double idle_s = 0.0;                 // time inside the curve's span with no request active
  double total_j = 0.0;                // E(last point) - E(first point)
  double span_s = 0.0;                 // last point - first point
};

// Throws std::invalid_argument when sizes or chunk offsets are inconsistent.
void attribute(const AttributionInput& in, AttributionOutput& out);

}  // namespace fastmeter
