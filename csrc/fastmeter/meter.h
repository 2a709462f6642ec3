// The native meter: sources + sampler thread + a drain thread that moves samples from the ring into an in-memory
// record (columns for Arrow, knots for interpolation, change points for error bounds). Every method may be called
// from any thread with the GIL released; start/stop/close follow one state machine under a lifecycle lock.
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

#include "fastmeter/bound.h"
#include "fastmeter/integrate.h"
#include "fastmeter/log_histogram.h"
#include "fastmeter/record.h"
#include "fastmeter/sampler.h"
#include "fastmeter/telemetry.h"

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
  std::string history_dir;                    // where the thinned history goes (history_blocks.h); empty = RAM
};

struct RecordStats {
  uint64_t samples_kept = 0, samples_dropped_from_ram = 0;
  uint64_t knots = 0;                                // over all channels
  uint64_t change_points = 0;                        // the error bound's, over all channels (bound.h)
  double query_p50_us = 0.0, query_p99_us = 0.0;     // energy_between / cumulative_at calls; NaN before any
  uint64_t queries = 0;
  uint64_t telemetry_kept = 0, telemetry_dropped_from_ram = 0;  // telemetry readings, like samples
  // Bytes of the bounded stores (raw samples, recent knots and change points, all channels) and of the thinned
  // history (on disk, in RAM), and why the history stopped going to disk (empty while it does).
  uint64_t samples_bytes = 0, knots_bytes = 0, change_points_bytes = 0;
  uint64_t history_disk_bytes = 0, history_ram_bytes = 0;
  std::string history_error;
};

// new -> running -> stopping -> stopped -> closed (stop/close of a new meter go straight to stopped/closed).
// A forked child's copy of a running meter becomes stopped without ever touching the parent's threads.
enum class MeterState : int { kNew, kRunning, kStopping, kStopped, kClosed };

// What a span's value per channel is worth.
enum class SpanStatus : uint8_t {
  kFinal,        // a counter change after the span's end has been seen: the value will not change
  kProvisional,  // the end lies after the newest change point: extrapolated, inside its bound
  kUnknown,      // the counter never updated inside or after the span (or nothing was polled yet): NaN
  kFailed,       // the channel failed before the span ended: NaN
};

struct SpanEnergy {
  int64_t t0_ns = 0, t1_ns = 0;  // the span used (t1 is the stop instant when truncated)
  bool truncated = false;        // the span was cut at the stop instant
  std::vector<double> energy_j;  // per channel; NaN when unknown or failed
  std::vector<double> bound_j;   // per channel: |energy_j - truth| <= bound_j (bound.h); NaN when not derivable
  std::vector<SpanStatus> status;
};

// No failure seen on a channel.
constexpr int64_t kNotFailed = INT64_MAX;

class Meter {
 public:
  Meter(const std::vector<std::pair<std::string, SourceOptions>>& sources, SamplerConfig config,
        RecordConfig record = {});
  ~Meter();
  Meter(const Meter&) = delete;
  Meter& operator=(const Meter&) = delete;

  // Each may be called from any thread, concurrently. start() on a meter that is not new throws MeterError; stop()
  // returns once the record is complete (a second caller waits for the first); close() stops and releases the
  // threads and hardware; the record stays readable.
  void start();
  void stop();
  void close();
  MeterState state() const noexcept { return state_.load(std::memory_order_acquire); }
  bool running() const noexcept { return state() == MeterState::kRunning; }
  bool stopped() const noexcept { return state() >= MeterState::kStopped; }

  const std::vector<ChannelInfo>& channels() const noexcept { return sampler_->channels(); }
  std::vector<double> totals() const;
  // Energy per channel between two CLOCK_MONOTONIC instants, with error bounds. Waits at most wait_ns in all for
  // the sampler to poll past t1 and every counter to change after it; then what is missing is provisional or
  // unknown. clamp_to_stop: a span ending after the stop instant is cut there (else MeterError).
  SpanEnergy energy_between(int64_t t0_ns, int64_t t1_ns, int64_t wait_ns, bool clamp_to_stop = false);
  // Cumulative joules of one channel at each of t_ns[0..n) on the interpolated curve (the one energy_between
  // uses); NaN outside the record (before start, after the newest poll), after the channel's failure and while
  // it has no knot yet. bound_out (may be null): each value's error bound (bound.h), NaN where not derivable.
  void cumulative_at(size_t channel, const int64_t* t_ns, size_t n, double* out, double* bound_out = nullptr);
  // Per channel: t_ns of the first failed sample seen, kNotFailed while it works.
  std::vector<int64_t> failed_at_ns();
  // Drains the ring; returns how many samples were ever recorded (absolute: the next sample's sequence number).
  size_t sample_count();
  // Copies samples with sequence numbers [from, to) into caller-owned columns; returns how many were copied
  // (to is clamped to the record's size). One copy, straight into the caller's (numpy) buffers. Throws MeterError
  // when part of the range has already left RAM (older than keep_samples_ns).
  size_t copy_samples(size_t from, size_t to, int64_t* t_ns, uint32_t* channel, double* energy_j, double* power_w);
  RecordStats record_stats();
  // Telemetry (telemetry.h): readings ever recorded (absolute, like sample_count), and copies by sequence number
  // or by time. Both drain first; both throw MeterError when part of the range has left RAM.
  size_t telemetry_count();
  size_t copy_telemetry(size_t from, size_t to, int64_t* t_ns, uint32_t* series, double* value);
  std::vector<TelemetryReading> telemetry_between(int64_t t0_ns, int64_t t1_ns);
  const std::vector<TelemetrySeries>& telemetry_series() const noexcept { return sampler_->telemetry_series(); }
  const std::vector<std::string>& telemetry_unavailable() const noexcept {
    return sampler_->telemetry_unavailable();
  }
  int64_t telemetry_period_ns() const noexcept { return sampler_->telemetry_period_ns(); }

  SamplerStats stats() const noexcept { return sampler_->stats(); }
  std::string channel_error(size_t i) const { return sampler_->channel_error(i); }
  std::vector<double> update_periods_s();  // observed interval between hardware updates, per channel
  int64_t start_ns() const noexcept { return sampler_->start_ns(); }
  int64_t stop_ns() const noexcept { return stop_ns_; }
  ClockAnchor anchor() const noexcept { return sampler_->anchor(); }
  int64_t period_ns() const noexcept { return sampler_->period_ns(); }

  // pthread_atfork handlers (meter.cpp keeps a registry of live meters): hold the locks across fork so the child
  // inherits them free, drained up to the fork; the child's running meter becomes stopped.
  void fork_prepare();
  void fork_parent();
  void fork_child();

 private:
  void stop_locked();  // caller holds life_mu_
  // One pass over every channel for energy_between; caller holds mu_.
  SpanEnergy span_locked(int64_t t0_ns, int64_t t1_ns) const;
  void drain_loop();
  void drain_locked();        // caller holds mu_; drains the ring empty
  bool drain_batch_locked();  // caller holds mu_; one batch; false when the ring was empty
  std::mutex life_mu_;  // held for a whole start/stop/close; taken before mu_, never while holding it
  std::atomic<MeterState> state_{MeterState::kNew};
  bool forked_ = false;  // this is a fork child's copy: the threads and hardware belong to the parent
  std::shared_ptr<HistoryBlocks> history_;  // before sampler_: a bad history_dir fails before any source opens
  std::unique_ptr<Sampler> sampler_;
  mutable std::mutex mu_;  // guards everything below except the atomics
  RecordConfig record_config_;
  SampleRecord record_;  // raw samples in poll order, one per channel per poll, bounded
  std::vector<KnotBuilder> knots_;
  std::vector<BoundBuilder> bounds_;
  std::vector<int64_t> failed_at_ns_;  // first failed sample per channel, kNotFailed while it works
  std::vector<int64_t> last_t_ns_;  // newest drained sample per channel
  std::vector<Sample> buf_;
  TelemetryRecord tel_record_;
  std::vector<TelemetryReading> tel_buf_;
  int64_t newest_t_ns_ = 0;
  int64_t stop_ns_ = 0;

  LogHistogram<std::atomic<uint64_t>> query_ns_;  // latency of energy_between / cumulative_at, any thread

  std::thread drainer_;
  std::condition_variable drain_cv_;
  bool drain_stop_ = false;
};

}  // namespace fastmeter
