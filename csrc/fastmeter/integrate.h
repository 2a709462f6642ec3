// Turning raw readings into joules, and the cumulative-energy curve between them.
// Every function here has a pure-Python twin in python/fastmeter/reference/integrate.py used by the property tests;
// the two mirror each other operation by operation, so change both together.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastmeter/knot_store.h"
#include "fastmeter/log_histogram.h"
#include "fastmeter/sources/source.h"

namespace fastmeter {

// NVML instant power (field 186) on A100/H100 is the average of the ~25 ms before the value becomes visible.
constexpr int64_t kNvmlPowerWindowNs = 25'000'000;

// Raw ticks between two counter readings. range > 0: the counter wraps to 0 at range, so cur < prev is one wrap.
// range == 0: a 64-bit counter that never wraps; cur < prev means it was reset, which contributes nothing.
uint64_t counter_delta(uint64_t prev, uint64_t cur, uint64_t range) noexcept;

// Cumulative joules of one channel, fed one Reading per poll by the sampler thread.
// Counter channels (info.has_counter) take energy from the counter only: a poll without a counter reading adds
// nothing, and the next good reading is differenced against the last good one, so a missed poll loses no energy.
// Other channels integrate power with the trapezoid rule between consecutive good power readings.
class ChannelAccumulator {
 public:
  explicit ChannelAccumulator(const ChannelInfo& info) noexcept;

  struct Step {
    double energy_j;  // cumulative since the first reading
    bool counter;     // energy came from the hardware counter at this poll
    bool changed;     // the counter moved since the previous good reading (a change point)
  };
  Step push(int64_t t_ns, const Reading& r) noexcept;
  double energy_j() const noexcept { return energy_j_; }

 private:
  double unit_j_;
  uint64_t range_;
  bool has_counter_;
  bool have_counter_ = false, have_power_ = false;
  uint64_t last_counter_ = 0;
  int64_t last_power_t_ns_ = 0;
  double last_power_w_ = 0.0;
  double energy_j_ = 0.0;
};

// A power reading as a measurement: the average power over [lo_ns, hi_ns].
struct PowerWindow {
  int64_t lo_ns, hi_ns;
  double power_w;
};

// Power windows one counter interval keeps for fusion. A counter that stops changing while power keeps changing
// would grow the list without bound; past this many, they are merged to a common time resolution (KnotBuilder).
constexpr size_t kMaxPendingWindows = 1024;

// Collects knots from a channel's samples in time order.
//
// Counter channels (any sample with counter set switches the builder to this mode for good): the counter refreshes
// far slower than we poll (~100 ms on A100/H100), so only polls where it changed are knots, placed at the midpoint
// between the last poll that read the old value and the poll that read the new one (at the poll itself when the
// previous poll saw a change too: such a counter is current when read). Between two such knots the
// energy is known exactly, but not how it was spread. Each change of the power reading tells the average power over
// the power_window_ns before the change (NVML: a 25 ms trailing average), so inside an interval those windows get
// their measured power and the time no window covers gets the constant power that makes the interval's energy
// exact; each piece's ends become knots, whose slope is the measured power next to them. Knots never change once
// made, so only a query after the newest knot is provisional.
//
// Power-integrated channels: every sample is a knot, placed power_window_ns / 2 before the poll because a trailing
// average describes the middle of its window (pass 0 for instantaneous power).
//
// Memory: knots older than a cutoff the owner chooses (settle_before) are decimated to resolution_ns (knot_store.h);
// the update-period statistic is a fixed-size histogram. Both are O(1) per sample. The power windows of the open
// interval are at most kMaxPendingWindows: when one more arrives, neighbours are merged into windows no longer than a
// resolution (chosen to leave at most about half, and at least doubled at each such pass), and later windows join
// the newest one while it stays within that resolution. A merged window has the mean power of what fusion takes
// from its members, over their whole span, so only the curve's shape inside that interval coarsens; its energy stays
// the counter's. Amortized O(1) per window.
class KnotBuilder {
 public:
  KnotBuilder() = default;
  explicit KnotBuilder(int64_t power_window_ns, int64_t resolution_ns = 0)
      : power_window_ns_(power_window_ns), resolution_ns_(resolution_ns) {}

  void push(int64_t t_ns, double energy_j, double power_w, bool counter, bool changed);
  const KnotStore& knots() const noexcept { return knots_; }
  void use_history(std::shared_ptr<HistoryBlocks> blocks) noexcept { knots_.use_history(std::move(blocks)); }
  // Decimates knots older than cutoff_ns to the builder's resolution (0: keeps them all).
  void settle_before(int64_t cutoff_ns) { knots_.settle_before(cutoff_ns, resolution_ns_); }
  int64_t first_poll_ns() const noexcept { return first_poll_ns_; }
  int64_t last_poll_ns() const noexcept { return last_poll_ns_; }
  // Median interval between updates (counter change points; power changes on power channels) in seconds, to the
  // histogram's resolution (the centre of the bucket holding the upper median, log_histogram.h); NaN with fewer
  // than two intervals. O(1).
  double observed_update_period_s() const;

 private:
  void note_update(int64_t t_ns);
  void add_window(PowerWindow w);
  void close_interval(int64_t b_ns, double energy_j, double latest_power_w);

  int64_t power_window_ns_ = kNvmlPowerWindowNs;
  int64_t resolution_ns_ = 0;
  KnotStore knots_;
  std::vector<PowerWindow> pending_;  // power windows seen since the newest counter knot
  int64_t merge_ns_ = 0;              // longest merged window once pending_ overflowed; 0: every window as read
  MedianHistogram update_intervals_ns_;
  int64_t first_poll_ns_ = 0, last_poll_ns_ = 0;
  int64_t last_valid_ns_ = 0, last_power_ns_ = 0, last_update_ns_ = 0;
  double last_power_w_ = 0.0;
  bool any_ = false, counter_mode_ = false, have_valid_ = false, have_power_ = false, have_update_ = false;
  bool valid_prev_changed_ = false, power_prev_changed_ = false;  // the previous good poll saw a change
};

// Cumulative energy at t_ns on the curve through knots[0..n) (sorted by t_ns): between knots a cubic Hermite with
// the knots' power_w as slopes, limited (Fritsch-Carlson) so it never decreases; a piece with equal end slopes and
// secant is a straight line. Outside the knots it extends linearly with the end knot's slope. 0 when n == 0.
// O(log n).
double energy_at(const Knot* knots, size_t n, int64_t t_ns) noexcept;
// The same on a channel's stored knots: O(log n), equal to energy_at over every knot the store holds.
inline double energy_at(const KnotStore& knots, int64_t t_ns) noexcept {
  const KnotSpan s = knots.span_for(t_ns);
  return energy_at(s.data, s.size, t_ns);
}

}  // namespace fastmeter
