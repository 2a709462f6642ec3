#include "fastmeter/schedule.h"

#include <algorithm>

namespace fastmeter {

const char* track_state_name(TrackState s) noexcept {
  switch (s) {
    case TrackState::kLocked:
      return "locked";
    case TrackState::kFixed:
      return "fixed";
    case TrackState::kQuiet:
      return "quiet";
    default:
      return "learning";
  }
}

UpdateTracker::UpdateTracker(int64_t poll_ns, int64_t guard_ns) noexcept : poll_ns_(poll_ns), guard_ns_(guard_ns) {}

void UpdateTracker::observe(int64_t t_ns, bool changed) noexcept {
  if (!have_poll_) {
    // The first poll has nothing to differ from.
    have_poll_ = true;
    last_poll_ns_ = last_change_poll_ns_ = t_ns;
    return;
  }
  const int64_t prev = last_poll_ns_;
  last_poll_ns_ = t_ns;
  // A change is located only when the poll before it is at most two dense periods back; after a longer gap
  // (a band start, a starved thread) it happened somewhere in a span too wide to learn from.
  const bool precise = t_ns - prev <= 2 * poll_ns_;
  const int64_t located = prev + (t_ns - prev) / 2;
  if (changed) {
    last_change_poll_ns_ = t_ns;
    if (precise) last_update_ns_ = located;
  }
  if (state_ == TrackState::kLocked) {
    if (changed) {
      if (!precise) {
        lose_lock();
        return;
      }
      period_ns_ += (located - expected_ns_) / kPeriodGain;
      expected_ns_ = located + period_ns_;
      quiet_bands_ = 0;
    } else if (t_ns > expected_ns_ + guard_ns_) {
      if (++quiet_bands_ >= kMaxQuietBands) {
        lose_lock();
        return;
      }
      expected_ns_ += period_ns_;
    }
    return;
  }
  if (changed) {
    if (state_ == TrackState::kQuiet) state_ = TrackState::kLearning;
    if (precise) {
      learn(located);
    } else {
      n_hist_ = 0;
    }
  } else if (t_ns - last_change_poll_ns_ >= kQuietNs) {
    state_ = TrackState::kQuiet;
    n_hist_ = 0;
    unlocked_changes_ = 0;
  }
}

void UpdateTracker::learn(int64_t located_ns) noexcept {
  constexpr int kN = kLockIntervals + 1;
  if (n_hist_ == kN) {
    std::copy(hist_.begin() + 1, hist_.end(), hist_.begin());
    --n_hist_;
  }
  hist_[static_cast<size_t>(n_hist_++)] = located_ns;
  ++unlocked_changes_;
  if (n_hist_ < kN) return;
  std::array<int64_t, kLockIntervals> d{};
  for (int i = 0; i < kLockIntervals; ++i) d[static_cast<size_t>(i)] = hist_[static_cast<size_t>(i + 1)] - hist_[static_cast<size_t>(i)];
  std::array<int64_t, kLockIntervals> sorted = d;
  std::sort(sorted.begin(), sorted.end());
  const int64_t median = sorted[kLockIntervals / 2];
  if (median < kContinuousPolls * poll_ns_) {
    state_ = TrackState::kFixed;  // a continuous counter: every poll has news
    return;
  }
  // Intervals may span several updates: a value can repeat across an update (a power reading at a steady load),
  // so each interval must be a whole number of periods. Estimate the period from the shortest interval, refine it
  // over all of them, then check each against its multiple.
  const int64_t shortest = sorted[0];
  int64_t periods = 0;
  for (int64_t x : d) periods += (2 * x + shortest) / (2 * shortest);
  const int64_t period = (hist_[kN - 1] - hist_[0]) / periods;
  if (period <= 0) return;
  const int64_t tol = guard_ns_ * 3 / 4;
  // At least half the intervals must be one period (the lower median), and none more than kMaxMultiple:
  // otherwise a short enough "period" would fit any sequence.
  const int64_t lower_median = sorted[kLockIntervals / 2 - 1];
  bool ok = (2 * lower_median + period) / (2 * period) == 1;
  for (int64_t x : d) {
    const int64_t k = (2 * x + period) / (2 * period);
    ok = ok && k >= 1 && k <= kMaxMultiple && x - k * period <= tol && k * period - x <= tol;
  }
  if (!ok) {
    if (unlocked_changes_ >= kIrregularChanges) state_ = TrackState::kFixed;
    return;
  }
  period_ns_ = period;
  expected_ns_ = located_ns + period_ns_;
  state_ = TrackState::kLocked;
  if (ever_locked_) ++relocks_;
  ever_locked_ = true;
  quiet_bands_ = 0;
  unlocked_changes_ = 0;
}

void UpdateTracker::lose_lock() noexcept {
  ++misses_;
  state_ = TrackState::kLearning;
  n_hist_ = 0;
  unlocked_changes_ = 0;
  quiet_bands_ = 0;
}

int64_t UpdateTracker::next_poll_ns(int64_t after_ns) const noexcept {
  if (state_ != TrackState::kLocked) return after_ns;
  return std::max(after_ns, expected_ns_ - guard_ns_);
}

ScheduleRun simulate_schedule(const std::vector<int64_t>& update_t_ns, int64_t start_ns, int64_t end_ns,
                              int64_t poll_ns, int64_t guard_ns) {
  UpdateTracker tr(poll_ns, guard_ns);
  ScheduleRun out;
  size_t next_update = 0;
  for (int64_t t = start_ns; t <= end_ns;) {
    bool changed = false;
    while (next_update < update_t_ns.size() && update_t_ns[next_update] <= t) {
      changed = !out.poll_t_ns.empty();
      ++next_update;
    }
    tr.observe(t, changed);
    out.poll_t_ns.push_back(t);
    out.states.push_back(static_cast<int>(tr.state()));
    const int64_t want = tr.next_poll_ns(t + poll_ns);
    t = start_ns + (want - start_ns + poll_ns - 1) / poll_ns * poll_ns;
  }
  out.period_ns = tr.period_ns();
  out.misses = tr.misses();
  out.relocks = tr.relocks();
  return out;
}

}  // namespace fastmeter
