// The native meter: sources + sampler thread + a drain thread that moves samples from the ring into an in-memory
// record (columns for Arrow, knots for interpolation). Every method may be called with the GIL released.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fastmeter/integrate.h"
#include "fastmeter/log_histogram.h"
#include "fastmeter/record.h"
#include "fastmeter/sampler.h"

namespace fastmeter {

// Bad use of the meter (wrong state, span outside the record). Message says what to do.
class MeterError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the Meter keeps in RAM besides the ring (docs/architecture.md, "What stays in RAM").
struct RecordConfig {
  int64_t keep_samples_ns = 60'000'000'000;  // raw samples at most this old stay readable; 0 = none
  int64_t knot_resolution_ns = 10'000'000;   // knots older than keep_samples_ns are thinned to this; 0 = never
};

struct RecordStats {
  uint64_t samples_kept = 0, samples_dropped_from_ram = 0;
  uint64_t knots = 0;                                // over all channels
  double query_p50_us = 0.0, query_p99_us = 0.0;     // energy_between / cumulative_at calls; NaN before any
  uint64_t queries = 0;
};

struct SpanEnergy {
  std::vector<double> energy_j;  // per channel; NaN for a channel that failed before the span ended
  std::vector<bool> final;       // per channel: a hardware update at or after the span's end has been seen
};

class Meter {
 public:
  Meter(const std::vector<std::pair<std::string, SourceOptions>>& sources, SamplerConfig config,
        RecordConfig record = {});
  ~Meter();
  Meter(const Meter&) = delete;
  Meter& operator=(const Meter&) = delete;

  void start();
  void stop();
  bool running() const noexcept { return sampler_->running(); }
  bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }

  const std::vector<ChannelInfo>& channels() const noexcept { return sampler_->channels(); }
  std::vector<double> totals() const;
  // Energy per channel between two CLOCK_MONOTONIC instants. Waits (bounded) for the sampler to poll past t1, then
  // up to wait_final_ns more for every channel's next hardware update after t1.
  SpanEnergy energy_between(int64_t t0_ns, int64_t t1_ns, int64_t wait_final_ns);
  // Cumulative joules of one channel at each of t_ns[0..n) on the interpolated curve (the one energy_between
  // uses); NaN where the channel has no knots. For evaluating many event times at once (attribution).
  void cumulative_at(size_t channel, const int64_t* t_ns, size_t n, double* out);
  // Drains the ring; returns how many samples were ever recorded (absolute: the next sample's sequence number).
  size_t sample_count();
  // Copies samples with sequence numbers [from, to) into caller-owned columns; returns how many were copied
  // (to is clamped to the record's size). One copy, straight into the caller's (numpy) buffers. Throws MeterError
  // when part of the range has already left RAM (older than keep_samples_ns).
  size_t copy_samples(size_t from, size_t to, int64_t* t_ns, uint32_t* channel, double* energy_j, double* power_w);
  RecordStats record_stats();

  SamplerStats stats() const noexcept { return sampler_->stats(); }
  std::string channel_error(size_t i) const { return sampler_->channel_error(i); }
  std::vector<double> update_periods_s();  // observed interval between hardware updates, per channel
  int64_t start_ns() const noexcept { return sampler_->start_ns(); }
  int64_t stop_ns() const noexcept { return stop_ns_; }
  ClockAnchor anchor() const noexcept { return sampler_->anchor(); }
  int64_t period_ns() const noexcept { return sampler_->period_ns(); }

 private:
  void drain_loop();
  void drain_locked();        // caller holds mu_; drains the ring empty
  bool drain_batch_locked();  // caller holds mu_; one batch; false when the ring was empty
  // Drain until a sample at or after t_ns is in the record, or the deadline passes.
  bool wait_for_poll(std::unique_lock<std::mutex>& lock, int64_t t_ns, int64_t deadline_ns);

  std::unique_ptr<Sampler> sampler_;
  mutable std::mutex mu_;  // guards everything below except the atomics
  RecordConfig record_config_;
  SampleRecord record_;  // raw samples in poll order, one per channel per poll, bounded
  std::vector<KnotBuilder> knots_;
  std::vector<int64_t> last_t_ns_;  // newest drained sample per channel
  std::vector<Sample> buf_;
  int64_t newest_t_ns_ = 0;
  int64_t stop_ns_ = 0;

  LogHistogram<std::atomic<uint64_t>> query_ns_;  // latency of energy_between / cumulative_at, any thread

  std::thread drainer_;
  std::condition_variable drain_cv_;
  bool drain_stop_ = false;
  std::atomic<bool> stopped_{false};
};

}  // namespace fastmeter
