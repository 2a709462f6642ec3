// Update-aware scheduling: learn when a hardware field (an NVML energy counter, a power reading) publishes a new
// value, then poll it densely only in a guard band around each expected update.
//
// NVML counters and power on A100/H100 refresh every ~100 ms (FACTS.md): of 1000 polls a second at 1 kHz only ~10
// carry news. An UpdateTracker watches one field's polls (t_ns, changed) and moves between states:
//   learning  dense polling; every change is located at the middle of (previous poll, poll that saw it]. Once the
//             last kLockIntervals intervals between changes are each within guard_ns * 3/4 of 1..kMaxMultiple
//             periods (a value may repeat across an update; the period is refined over all of them), at least half
//             of them are one period, and the median is at least kContinuousPolls polls, it locks with that period.
//   locked    the next update is expected at e = last located update + period; the field needs polls only in
//             [e - guard_ns, e + guard_ns] (on the sampler's grid). A change seen there re-anchors e at the located
//             update and nudges the period by the prediction error / kPeriodGain (tracks phase drift). A change seen
//             at the first poll of the band (it happened before the band) or kMaxQuietBands bands in a row without
//             a change is a miss: back to learning (dense), and a later lock counts as a re-lock. Quiet bands are
//             tolerated because a value can repeat across an update (a power reading at a constant load).
//   fixed     dense polling for good reasons: changes come at nearly every poll (a continuous counter such as
//             RAPL: median interval below kContinuousPolls polls) or stay irregular for kIrregularChanges changes.
//             Evidence keeps accumulating, so a field that becomes periodic locks later.
//   quiet     no change for kQuietNs: the field has no period to learn. Polled densely unless another field of the
//             same source is locked (then it is read at that field's polls, and its next change wakes it up).
// Pure logic on integers (no clock, no I/O), so the Python twin in python/fastmeter/reference/schedule.py and the
// property tests can drive it with made-up update instants.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace fastmeter {

enum class TrackState : uint8_t { kLearning, kLocked, kFixed, kQuiet };
const char* track_state_name(TrackState s) noexcept;

class UpdateTracker {
 public:
  static constexpr int kLockIntervals = 8;
  static constexpr int kContinuousPolls = 4;
  static constexpr int kIrregularChanges = 32;
  static constexpr int kMaxQuietBands = 3;
  static constexpr int64_t kMaxMultiple = 4;
  static constexpr int64_t kPeriodGain = 8;
  static constexpr int64_t kQuietNs = 1'000'000'000;

  // poll_ns: the sampler's dense period; guard_ns: half-width of the band polled around an expected update
  // (>= 2 * poll_ns keeps the quantization of located updates inside the band).
  UpdateTracker(int64_t poll_ns, int64_t guard_ns) noexcept;

  // One poll of this field at t_ns (polls come in time order); changed: its value differs from the previous poll's.
  void observe(int64_t t_ns, bool changed) noexcept;
  // Earliest instant >= after_ns at which this field needs a poll (after_ns itself unless locked).
  int64_t next_poll_ns(int64_t after_ns) const noexcept;

  TrackState state() const noexcept { return state_; }
  int64_t period_ns() const noexcept { return period_ns_; }  // 0 until first locked
  int64_t expected_ns() const noexcept { return expected_ns_; }
  // Located instant of the latest precisely located change (0 before any).
  int64_t last_update_ns() const noexcept { return last_update_ns_; }
  uint64_t misses() const noexcept { return misses_; }
  uint64_t relocks() const noexcept { return relocks_; }

 private:
  void learn(int64_t located_ns) noexcept;
  void lose_lock() noexcept;

  int64_t poll_ns_, guard_ns_;
  TrackState state_ = TrackState::kLearning;
  bool have_poll_ = false, ever_locked_ = false;
  int64_t last_poll_ns_ = 0, last_change_poll_ns_ = 0;
  int64_t last_update_ns_ = 0;
  // learning: the latest located changes (ring), how many are valid, changes since the last lock attempt began.
  std::array<int64_t, kLockIntervals + 1> hist_{};
  int n_hist_ = 0, unlocked_changes_ = 0;
  // locked
  int64_t period_ns_ = 0, expected_ns_ = 0;
  int quiet_bands_ = 0;
  uint64_t misses_ = 0, relocks_ = 0;
};

// One tracker driven by a made-up field, for tests against the Python twin: polls on the grid start + k * poll_ns
// that the tracker asks for (the first at start_ns), up to end_ns; a poll sees a change when an update instant
// (sorted) lies in (previous poll, poll].
struct ScheduleRun {
  std::vector<int64_t> poll_t_ns;
  std::vector<int> states;  // TrackState after each poll, as integers
  int64_t period_ns = 0;
  uint64_t misses = 0, relocks = 0;
};
ScheduleRun simulate_schedule(const std::vector<int64_t>& update_t_ns, int64_t start_ns, int64_t end_ns,
                              int64_t poll_ns, int64_t guard_ns);

}  // namespace fastmeter
