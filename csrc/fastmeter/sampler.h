// One native thread that polls every source on absolute CLOCK_MONOTONIC deadlines, turns readings into cumulative
// joules (integrate.h) and pushes Samples into the SPSC ring. It never calls into Python and never blocks on the
// consumer: a full ring counts a drop. Deadlines lie on one grid (start + k * period); with the adaptive schedule
// each source is polled only at the grid points its fields need (schedule.h) and the thread sleeps until the
// earliest one.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fastmeter/clock.h"
#include "fastmeter/integrate.h"
#include "fastmeter/ring.h"
#include "fastmeter/sample.h"
#include "fastmeter/schedule.h"
#include "fastmeter/sources/source.h"
#include "fastmeter/stats.h"
#include "fastmeter/telemetry.h"

namespace fastmeter {

struct SamplerConfig {
  int64_t period_ns = 1000000;
  // Busy-wait this long before each deadline instead of sleeping through it: the kernel wakes us late by tens of µs
  // (timer slack, VM exits), which at sub-millisecond periods is most of the period.
  int64_t spin_ns = 0;
  size_t ring_capacity = 1 << 20;
  // kFixed: every source at every deadline. kAdaptive: learn each field's update period and phase and poll only
  // around expected updates (schedule.h); continuous counters and fields without a period stay on every deadline.
  enum class Schedule { kFixed, kAdaptive } schedule = Schedule::kFixed;
  // Half-width of the band polled around an expected update; <= 0 picks max(2 ms, 2 periods).
  int64_t guard_ns = 0;
  // Ask for SCHED_FIFO at the lowest real-time priority, so a CPU-bound neighbour cannot starve the sampler.
  // Without the privilege (EPERM) the thread stays SCHED_OTHER; stats() says which it got.
  bool realtime = true;
  // Telemetry schedule (telemetry.h): every probe is read on its own grid, start + period_ns / 2 + k *
  // telemetry_period_ns (between two energy deadlines), and at start and stop; 0 = no telemetry.
  int64_t telemetry_period_ns = 0;
  size_t telemetry_ring_capacity = 1 << 16;
};

// A channel failing every read for this long (and at least kFailAfterReadErrors times in a row) fails for good:
// skipping transient errors must not turn a dead counter into a silent gap.
constexpr int64_t kFailAfterErrorsNs = 1'000'000'000;
constexpr uint64_t kFailAfterReadErrors = 3;

struct ChannelStats {
  uint64_t polls = 0;
  uint64_t read_errors = 0;     // transient read failures skipped (the channel stayed alive)
  int64_t poll_gap_max_ns = 0;  // largest interval between the starts of successive reads of this channel
};

struct FieldSchedule {
  const char* field;  // "counter" or "power"
  TrackState state;
  int64_t period_ns;  // 0 until locked once
  uint64_t misses, relocks;
};

struct SamplerStats {
  uint64_t polls = 0;  // wake-ups that polled at least one source (plus the start and stop polls)
  double elapsed_s = 0.0;
  double rate_hz = 0.0;
  double jitter_p50_us = 0.0, jitter_p99_us = 0.0, jitter_max_us = 0.0;
  uint64_t missed = 0;   // deadlines skipped because a poll overran a whole period
  double missed_share = 0.0;  // missed / (deadlines polled + missed)
  int64_t poll_gap_max_ns = 0;  // largest interval between successive wake-ups
  uint64_t dropped = 0;  // samples lost because the ring was full
  std::string sched_policy;  // "SCHED_FIFO", "SCHED_OTHER", ...; "" before the thread ran
  std::vector<ChannelStats> channels;
  std::vector<std::vector<FieldSchedule>> schedule;  // per channel, adaptive schedule only
  uint64_t telemetry_polls = 0;         // telemetry wake-ups (plus start and stop)
  uint64_t telemetry_missed = 0;        // telemetry deadlines skipped because the thread was late by a period
  uint64_t telemetry_dropped = 0;       // readings lost because the telemetry ring was full
  uint64_t telemetry_read_errors = 0;   // per item: polls that gave no value (transient errors)
  double telemetry_read_p99_us = 0.0;   // time one telemetry poll of every probe took
};

class Sampler {
 public:
  // Spin budget the default picks for a period: short periods need it to keep up, long ones can afford sleeping.
  static int64_t default_spin_ns(int64_t period_ns) noexcept;

  Sampler(std::vector<std::unique_ptr<Source>> sources, SamplerConfig config,
          std::vector<std::unique_ptr<TelemetryProbe>> telemetry = {});
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  void start();
  // Wakes the thread at once, takes one last poll so the record ends at the stop instant, joins.
  void stop();
  bool running() const noexcept { return running_.load(std::memory_order_acquire); }

  const std::vector<ChannelInfo>& channels() const noexcept { return channels_; }
  SpscRing<Sample>& ring() noexcept { return ring_; }
  // Cumulative joules of channel i at the latest poll; O(1), any thread.
  double total_j(size_t i) const noexcept { return state_[i].total_j.load(std::memory_order_acquire); }
  int64_t last_poll_ns() const noexcept { return last_poll_ns_.load(std::memory_order_acquire); }
  int64_t start_ns() const noexcept { return start_ns_; }
  ClockAnchor anchor() const noexcept { return anchor_; }
  // Error text of a failed channel, empty while it works.
  std::string channel_error(size_t i) const;
  // Safe from any thread; the adaptive schedule's per-field states are read under a lock the thread takes once
  // per poll of a source.
  SamplerStats stats() const;
  int64_t period_ns() const noexcept { return config_.period_ns; }
  int64_t telemetry_period_ns() const noexcept { return config_.telemetry_period_ns; }
  // Every probe's series, concatenated (TelemetryReading::series indexes this), and what they left out.
  const std::vector<TelemetrySeries>& telemetry_series() const noexcept { return tel_series_; }
  const std::vector<std::string>& telemetry_unavailable() const noexcept { return tel_unavailable_; }
  SpscRing<TelemetryReading>& telemetry_ring() noexcept { return tel_ring_; }

 private:
  struct ChannelState {
    std::atomic<double> total_j{0.0};
    std::atomic<bool> failed{false};
    std::string error;  // written once by the sampler before `failed` is released
    std::atomic<uint64_t> polls{0}, read_errors{0};
    std::atomic<int64_t> poll_gap_max_ns{0};
    // Sampler thread only:
    uint64_t errors_in_row = 0;
    int64_t first_error_ns = 0;
    bool have_counter = false, have_power = false;
    uint64_t last_counter = 0;
    double last_power_w = 0.0;
    int counter_track = -1, power_track = -1;  // index into trackers_, -1: field absent or fixed schedule
  };
  struct SourceState {
    int64_t next_ns = 0;  // its next deadline on the grid
    int64_t last_poll_ns = 0;  // start of its latest read
  };

  void run() noexcept;
  void poll_all() noexcept;
  void poll_source(size_t s) noexcept;
  void fail_channel(size_t i, const std::string& why) noexcept;
  void observe_fields(size_t i, int64_t t_ns, const Reading& r) noexcept;
  // Grid deadline at or after t_ns the source needs next (every deadline on the fixed schedule).
  int64_t source_deadline(size_t s, int64_t after_ns) const noexcept;
  int64_t grid_ceil(int64_t t_ns) const noexcept;
  void wait_until(int64_t deadline_ns) noexcept;
  void take_realtime() noexcept;
  void poll_telemetry() noexcept;

  std::vector<std::unique_ptr<Source>> sources_;
  SamplerConfig config_;
  std::vector<ChannelInfo> channels_;
  std::vector<size_t> first_channel_;  // per source: index of its first channel
  std::vector<SourceState> src_state_;
  std::vector<UpdateTracker> trackers_;  // adaptive schedule: one per (channel, field)
  mutable std::mutex track_mu_;          // guards trackers_ against stats() readers
  std::vector<ChannelAccumulator> acc_;
  std::unique_ptr<ChannelState[]> state_;
  std::vector<Reading> readings_;
  SpscRing<Sample> ring_;

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;  // guarded by mu_
  std::atomic<bool> stop_flag_{false};
  std::atomic<bool> running_{false};

  int64_t start_ns_ = 0;
  ClockAnchor anchor_{};
  std::atomic<int64_t> last_poll_ns_{0};
  std::atomic<uint64_t> polls_{0}, missed_{0}, dropped_{0}, deadlines_{0};
  std::atomic<int64_t> poll_gap_max_ns_{0};
  std::atomic<int> sched_policy_{-1};
  LatenessHistogram lateness_;

  std::vector<std::unique_ptr<TelemetryProbe>> telemetry_;
  std::vector<TelemetrySeries> tel_series_;
  std::vector<std::string> tel_unavailable_;
  std::vector<double> tel_values_;  // scratch, one per series
  SpscRing<TelemetryReading> tel_ring_;
  int64_t tel_next_ns_ = 0;  // sampler thread only
  std::atomic<uint64_t> tel_polls_{0}, tel_missed_{0}, tel_dropped_{0}, tel_read_errors_{0};
  LatenessHistogram tel_read_ns_;  // duration of one telemetry poll
};

}  // namespace fastmeter
