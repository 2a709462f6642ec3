// Activity shaping: spread each measured energy delta over its update interval in proportion to a predicted power.
// The pure-Python twin is python/fastmeter/reference/shape.py; docs/attribution.md ("Activity") defines the rule.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastmeter {

// Pointers are borrowed for the duration of shape_curve(); fastmeter.activity validates the semantics (sorted
// times, non-decreasing energy, non-negative power). shape_curve() checks only what memory safety needs.
struct ShapeInput {
  // Measured cumulative energy at the sensor's update instants: strictly increasing knot_t_ns, non-decreasing J.
  const int64_t* knot_t_ns = nullptr;
  const double* knot_energy_j = nullptr;
  size_t n_knots = 0;
  // Predicted power, piecewise constant: power_w[j] on [power_t_ns[j], power_t_ns[j + 1]), the last value after
  // the last breakpoint, 0 before the first. Strictly increasing times, power >= 0.
  const int64_t* power_t_ns = nullptr;
  const double* power_w = nullptr;
  size_t n_power = 0;
  // Instants at which the shaped curve is wanted (any order).
  const int64_t* query_t_ns = nullptr;
  size_t n_query = 0;
};

// Writes the shaped cumulative energy at every query instant into out_energy_j (n_query entries, caller-owned).
// Inside a knot interval (k_i, k_{i+1}) the delta E_{i+1} - E_i is split in proportion to the integral of the
// predicted power, or linearly in time where that integral is 0; at every knot the value is the measured one,
// so each measured delta is conserved exactly. Before the first knot and after the last the curve is flat.
// Throws std::invalid_argument when there is no knot.
void shape_curve(const ShapeInput& in, double* out_energy_j);

}  // namespace fastmeter
