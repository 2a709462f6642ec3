// A rigorous bound on the error of a counter channel's cumulative-energy curve, derived only from what was observed
// (docs/methodology.md, "Error bound"). Twin: python/fastmeter/reference/bound.py, written from that specification.
#pragma once
#include <cstddef>
#include <cstdint>

#include "fastmeter/change_points.h"

namespace fastmeter {

// True power may exceed the largest power seen on a channel (every reading is an average, so peaks lie above it):
// the bound assumes 0 <= P(t) <= kPowerBoundMargin x that largest power. Python: validity.POWER_BOUND_MARGIN.
constexpr double kPowerBoundMargin = 2.0;

// An interval holding the true value; an end is infinite where nothing observed limits it.
struct EnergyRange {
  double lo_j, hi_j;
};

// Collects a counter channel's change points from the same sample stream KnotBuilder gets (failed samples left
// out). Dropping points only widens the ranges, so a store that trims old points keeps them valid.
class BoundBuilder {
 public:
  explicit BoundBuilder(double unit_j) noexcept : unit_j_(unit_j) {}

  void push(int64_t t_ns, double energy_j, double power_w, bool counter, bool changed);
  bool has_counter() const noexcept { return !points_.empty(); }
  // kPowerBoundMargin x the largest power seen (power readings; mean power between two change points, a lower
  // estimate of it); +inf before anything was seen, so only monotonicity limits the curve.
  double max_power_w() const noexcept;
  // The interval that must hold the true cumulative energy at t_ns. O(log n).
  EnergyRange range_at(int64_t t_ns) const noexcept;
  // A counter change certainly later than t_ns has been seen: the curve at t_ns will not change any more.
  bool settled_at(int64_t t_ns) const noexcept;
  // A counter change that may be later than t_ns has been seen (else the counter never updated since t_ns).
  bool updated_since(int64_t t_ns) const noexcept;
  // Thins change points older than cutoff_ns to one per resolution_ns, so a long run keeps bounded memory (a RAPL
  // counter makes one per poll). Ranges only widen: by at most the energy of resolution_ns at the power limit.
  // Whole chunks at a time (change_points.h): O(1) per point.
  void thin_before(int64_t cutoff_ns, int64_t resolution_ns) { points_.thin_before(cutoff_ns, resolution_ns); }
  size_t points() const noexcept { return points_.size(); }
  size_t bytes() const noexcept { return points_.bytes(); }  // recent points (the history's: history_bytes)
  size_t history_bytes() const noexcept { return points_.history_bytes(); }
  void use_history(std::shared_ptr<HistoryBlocks> blocks) noexcept { points_.use_history(std::move(blocks)); }

 private:
  double unit_j_;
  ChangePointStore points_;
  int64_t last_counter_ns_ = 0;
  double seen_max_w_ = 0.0;
};

// Largest distance from value to an end of r: the error bound of value. NaN when r is unbounded.
double bound_of(double value, EnergyRange r) noexcept;
// The interval holding E(t1) - E(t0), from the ranges at both ends and 0 <= E(t1) - E(t0) <= pmax_w (t1 - t0).
EnergyRange span_range(EnergyRange at_t0, EnergyRange at_t1, double pmax_w, int64_t t0_ns, int64_t t1_ns) noexcept;

}  // namespace fastmeter
