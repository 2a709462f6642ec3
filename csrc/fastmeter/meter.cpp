#include "fastmeter/meter.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <new>

namespace fastmeter {
namespace {

SamplerConfig checked(SamplerConfig config) {
  // The sampler divides by the period: a bad value must stop here, not as SIGFPE in its thread.
  if (config.period_ns <= 0)
    throw MeterError("period_ns=" + std::to_string(config.period_ns) + " must be > 0 (e.g. 1000000 for 1 kHz)");
  if (config.spin_ns < 0 || config.spin_ns > config.period_ns)
    throw MeterError("spin_ns=" + std::to_string(config.spin_ns) + " must be within 0..period_ns");
  if (config.ring_capacity < 1) throw MeterError("ring_capacity must be at least 1 sample");
  if (config.telemetry_period_ns < 0)
    throw MeterError("telemetry_period_ns=" + std::to_string(config.telemetry_period_ns) +
                     " must be >= 0 (0 = no telemetry, 50000000 for 20 Hz)");
  return config;
}

std::shared_ptr<HistoryBlocks> make_history(const std::string& dir) {
  try {
    return std::make_shared<HistoryBlocks>(dir);
  } catch (const std::runtime_error& e) {
    throw MeterError(e.what());
  }
}

std::unique_ptr<Sampler> make_sampler(const std::vector<std::pair<std::string, SourceOptions>>& specs,
                                      SamplerConfig config) {
  config = checked(config);
  std::vector<std::unique_ptr<Source>> sources;
  for (const auto& [name, options] : specs) sources.push_back(open_source(name, options));
  std::vector<std::unique_ptr<TelemetryProbe>> telemetry;
  if (config.telemetry_period_ns > 0) {
    for (const auto& s : sources)
      if (auto probe = s->open_telemetry()) telemetry.push_back(std::move(probe));
    telemetry.push_back(make_cpu_telemetry());
    // Two seconds of readings at the nominal rate, at least the default: the drain thread empties the ring at
    // least once a second, so only a stalled drain drops (and counts) telemetry.
    size_t series = 0;
    for (const auto& p : telemetry) series += p->series().size();
    const double per_s = static_cast<double>(series) * 1e9 / static_cast<double>(config.telemetry_period_ns);
    config.telemetry_ring_capacity = std::max(config.telemetry_ring_capacity, static_cast<size_t>(2.0 * per_s));
  }
  return std::make_unique<Sampler>(std::move(sources), config, std::move(telemetry));
}

std::string ns_text(int64_t t_ns) { return std::to_string(t_ns) + " ns"; }

std::string seconds_text(int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(ns) * 1e-9);
  return buf;
}

// The count bound that goes with the time bound: keep_ns of polls at the nominal period, every channel, plus the
// extra polls at start and stop. A starved sampler polls less often, so the time bound is the one that binds then.
size_t max_samples(const RecordConfig& r, int64_t period_ns, size_t channels) {
  if (r.keep_samples_ns <= 0) return 0;
  const double polls = std::ceil(static_cast<double>(r.keep_samples_ns) / static_cast<double>(period_ns)) + 2.0;
  const double n = polls * static_cast<double>(channels);
  return n >= 1e18 ? static_cast<size_t>(1e18) : static_cast<size_t>(n);
}

// The telemetry count bound that goes with the time bound: keep_ns of telemetry polls, every series, + start/stop.
size_t max_telemetry(const RecordConfig& r, int64_t telemetry_period_ns, size_t series) {
  if (r.keep_samples_ns <= 0 || telemetry_period_ns <= 0) return 0;
  const double polls = std::ceil(static_cast<double>(r.keep_samples_ns) / static_cast<double>(telemetry_period_ns));
  const double n = (polls + 2.0) * static_cast<double>(series);
  return n >= 1e18 ? static_cast<size_t>(1e18) : static_cast<size_t>(n);
}

// Samples the timer lets accumulate at the nominal rate: ~1 ms of drain work, which the first query after a quiet
// spell would otherwise do itself.
constexpr size_t kDrainBatch = 16384;

// Times a query into a histogram when it leaves, whichever way.
class QueryTimer {
 public:
  explicit QueryTimer(LogHistogram<std::atomic<uint64_t>>& h) noexcept : h_(h), t0_ns_(monotonic_ns()) {}
  ~QueryTimer() { h_.record(monotonic_ns() - t0_ns_); }
  QueryTimer(const QueryTimer&) = delete;
  QueryTimer& operator=(const QueryTimer&) = delete;

 private:
  LogHistogram<std::atomic<uint64_t>>& h_;
  int64_t t0_ns_;
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Live meters, for the at-fork handlers. The registry lock is held from prepare to parent/child.
struct Registry {
  std::mutex mu;
  std::vector<Meter*> meters;
};

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry();  // never destroyed: a fork may come during static destruction
    pthread_atfork(
        [] {
          Registry& g = registry();
          g.mu.lock();
          for (Meter* m : g.meters) m->fork_prepare();
        },
        [] {
          Registry& g = registry();
          for (Meter* m : g.meters) m->fork_parent();
          g.mu.unlock();
        },
        [] {
          Registry& g = registry();
          for (Meter* m : g.meters) m->fork_child();
          g.mu.unlock();
        });
    return reg;
  }();
  return *r;
}

}  // namespace

Meter::Meter(const std::vector<std::pair<std::string, SourceOptions>>& sources, SamplerConfig config,
             RecordConfig record)
    : history_(make_history(record.history_dir)),
      sampler_(make_sampler(sources, config)),
      record_config_(record),
      record_(record.keep_samples_ns, max_samples(record, config.period_ns, sampler_->channels().size())),
      knots_(),
      failed_at_ns_(sampler_->channels().size(), kNotFailed),
      last_t_ns_(sampler_->channels().size(), std::numeric_limits<int64_t>::min()),
      buf_(2048),  // one drain batch: ~0.1 ms under the mutex, so a query never waits behind a long one
      tel_record_(record.keep_samples_ns,
                  max_telemetry(record, config.telemetry_period_ns, sampler_->telemetry_series().size())),
      tel_buf_(1024) {
  for (const auto& c : sampler_->channels()) {
    knots_.emplace_back(c.power_window_ns, record.knot_resolution_ns);
    knots_.back().use_history(history_);
    bounds_.emplace_back(c.has_counter ? c.counter_unit_j : 0.0);
    bounds_.back().use_history(history_);
  }
  Registry& g = registry();
  std::lock_guard<std::mutex> lock(g.mu);
  g.meters.push_back(this);
}

Meter::~Meter() {
  {
    Registry& g = registry();
    std::lock_guard<std::mutex> lock(g.mu);
    g.meters.erase(std::remove(g.meters.begin(), g.meters.end(), this), g.meters.end());
  }
  if (forked_) {
    // The sampler's thread, condition variable and hardware session live only in the parent: joining, destroying
    // or closing them here would hang (pthread_cond_destroy waits for the parent's waiters). Leave them be.
    (void)sampler_.release();
    return;
  }
  try {
    close();
  } catch (...) {
  }
}

void Meter::start() {
  std::lock_guard<std::mutex> life(life_mu_);
  switch (state()) {
    case MeterState::kNew:
      break;
    case MeterState::kRunning:
      throw MeterError("this Meter is already running");
    default:
      throw MeterError("this Meter has been stopped; create a new Meter to measure again");
  }
  sampler_->start();
  drainer_ = std::thread([this] { drain_loop(); });
  state_.store(MeterState::kRunning, std::memory_order_release);
}

void Meter::stop() {
  std::lock_guard<std::mutex> life(life_mu_);
  stop_locked();
}

void Meter::close() {
  std::lock_guard<std::mutex> life(life_mu_);
  stop_locked();
  state_.store(MeterState::kClosed, std::memory_order_release);
}

void Meter::stop_locked() {
  const MeterState s = state();
  if (s == MeterState::kNew) {
    state_.store(MeterState::kStopped, std::memory_order_release);
    return;
  }
  if (s != MeterState::kRunning) return;  // already stopped (a concurrent caller waited on life_mu_ for it)
  state_.store(MeterState::kStopping, std::memory_order_release);
  sampler_->stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    drain_stop_ = true;
  }
  drain_cv_.notify_all();
  drainer_.join();
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  stop_ns_ = newest_t_ns_;
  // Under mu_: a query that sees kStopped also sees the complete record and stop_ns_.
  state_.store(MeterState::kStopped, std::memory_order_release);
}

void Meter::fork_prepare() {
  life_mu_.lock();
  mu_.lock();
  if (running()) drain_locked();  // the child keeps what was measured up to the fork
}

void Meter::fork_parent() {
  mu_.unlock();
  life_mu_.unlock();
}

void Meter::fork_child() {
  if (running() || state() == MeterState::kStopping) {
    forked_ = true;
    drain_locked();  // the ring holds what the sampler published before the fork; its thread is gone
    stop_ns_ = newest_t_ns_;
    // The drain thread does not exist here: forget it without join (a joinable std::thread would terminate) and
    // without destroying the condition variable it waited on. Reusing their storage is allowed ([basic.life]).
    new (&drainer_) std::thread();
    new (&drain_cv_) std::condition_variable();
    state_.store(MeterState::kStopped, std::memory_order_release);
  }
  mu_.unlock();
  life_mu_.unlock();
}

void Meter::drain_loop() {
  // Queries drain on demand, so this thread only keeps the ring from filling and the record's bounds current. It
  // wakes when a quarter of the ring, or kDrainBatch samples, should have arrived at the nominal rate (between
  // 10 ms and 1 s): 16 channels at 10 kHz wake it 10x a second, 10 channels at 1 kHz once a second (each wake-up
  // costs tens of µs of CPU, as much as a poll). The batch cap keeps the backlog a query may find small.
  const double samples_per_s = static_cast<double>(channels().size()) * 1e9 / static_cast<double>(period_ns());
  const double batch = static_cast<double>(std::min(sampler_->ring().capacity() / 4, kDrainBatch));
  const double interval_s = std::clamp(batch / std::max(samples_per_s, 1e-9), 0.01, 1.0);
  const auto interval = std::chrono::microseconds(static_cast<int64_t>(interval_s * 1e6));
  std::unique_lock<std::mutex> lock(mu_);
  while (!drain_stop_) {
    while (drain_batch_locked()) {
      lock.unlock();  // between batches: a waiting query gets the mutex
      lock.lock();
    }
    drain_cv_.wait_for(lock, interval, [this] { return drain_stop_; });
  }
}

void Meter::drain_locked() {
  while (drain_batch_locked()) {
  }
}

bool Meter::drain_batch_locked() {
  // Telemetry first: a few readings per poll at 20 Hz, so one pass keeps its ring empty.
  for (size_t m; (m = sampler_->telemetry_ring().pop_bulk(tel_buf_.data(), tel_buf_.size())) > 0;) {
    for (size_t k = 0; k < m; ++k) tel_record_.append(tel_buf_[k]);
    tel_record_.trim();
  }
  const size_t n = sampler_->ring().pop_bulk(buf_.data(), buf_.size());
  if (n == 0) return false;
  for (size_t k = 0; k < n; ++k) {
    const Sample& s = buf_[k];
    record_.append(s);
    if (!(s.flags & kSampleFailed)) {
      const bool counter = (s.flags & kSampleCounter) != 0, changed = (s.flags & kSampleChanged) != 0;
      knots_[s.channel].push(s.t_ns, s.energy_j, s.power_w, counter, changed);
      bounds_[s.channel].push(s.t_ns, s.energy_j, s.power_w, counter, changed);
    } else if (failed_at_ns_[s.channel] == kNotFailed) {
      failed_at_ns_[s.channel] = s.t_ns;
    }
    last_t_ns_[s.channel] = s.t_ns;
    if (s.t_ns > newest_t_ns_) newest_t_ns_ = s.t_ns;
  }
  // Bounds are enforced per batch, not per sample: each is O(1) unless a whole chunk leaves.
  record_.trim();
  const int64_t cutoff_ns = newest_t_ns_ - record_config_.keep_samples_ns;
  for (KnotBuilder& kb : knots_) kb.settle_before(cutoff_ns);
  for (BoundBuilder& b : bounds_) b.thin_before(cutoff_ns, record_config_.knot_resolution_ns);
  return true;
}

std::vector<double> Meter::totals() const {
  std::vector<double> out(channels().size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = sampler_->total_j(i);
  return out;
}

SpanEnergy Meter::energy_between(int64_t t0_ns, int64_t t1_ns, int64_t wait_ns, bool clamp_to_stop) {
  const QueryTimer timer(query_ns_);
  if (sampler_->start_ns() == 0) throw MeterError("the Meter has not been started; call start() or use `with`");
  if (t1_ns < t0_ns) throw MeterError("span ends before it starts: t1_ns < t0_ns");
  if (t0_ns < sampler_->start_ns())
    throw MeterError("span starts at " + ns_text(t0_ns) + ", before the meter started at " +
                     ns_text(sampler_->start_ns()) + "; take timestamps with meter.now_ns() after start()");
  // One budget for everything: the sampler polling past t1 (at a 10 s period it may not for 10 s) and each
  // counter's next change after it. What has not come by then is provisional or unknown, never waited for longer.
  const int64_t deadline = monotonic_ns() + std::max<int64_t>(wait_ns, 0);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    drain_locked();
    const MeterState s = state();  // under mu_: kStopped implies the record and stop_ns_ are complete
    bool truncated = false;
    if (s >= MeterState::kStopped && t1_ns > stop_ns_) {
      if (!clamp_to_stop)
        throw MeterError("span ends at " + ns_text(t1_ns) + ", after the meter stopped at " + ns_text(stop_ns_));
      t1_ns = stop_ns_;
      t0_ns = std::min(t0_ns, t1_ns);
      truncated = true;
    }
    if (s == MeterState::kRunning && t1_ns > monotonic_ns() + 1000000)
      throw MeterError("span ends in the future (" + ns_text(t1_ns) + "); use a time from meter.now_ns()");
    SpanEnergy out = span_locked(t0_ns, t1_ns);
    out.truncated = truncated;
    const bool settled = std::all_of(out.status.begin(), out.status.end(), [](SpanStatus x) {
      return x == SpanStatus::kFinal || x == SpanStatus::kFailed;
    });
    if (settled || s >= MeterState::kStopped || monotonic_ns() >= deadline) return out;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    lock.lock();
  }
}

SpanEnergy Meter::span_locked(int64_t t0_ns, int64_t t1_ns) const {
  const size_t n = channels().size();
  SpanEnergy out;
  out.t0_ns = t0_ns;
  out.t1_ns = t1_ns;
  out.energy_j.assign(n, kNaN);
  out.bound_j.assign(n, kNaN);
  out.status.assign(n, SpanStatus::kUnknown);
  for (size_t i = 0; i < n; ++i) {
    const auto& k = knots_[i].knots();
    const BoundBuilder& b = bounds_[i];
    if (failed_at_ns_[i] <= t1_ns) {
      out.status[i] = SpanStatus::kFailed;
      continue;
    }
    // A counter that has not changed since t0: the span's energy is nothing but extrapolation.
    if (k.empty() || (b.has_counter() && !b.updated_since(t0_ns))) continue;
    const double e0 = energy_at(k, t0_ns), e1 = energy_at(k, t1_ns);
    out.energy_j[i] = e1 - e0;
    const bool settled = b.has_counter() ? b.settled_at(t1_ns) : k.back().t_ns >= t1_ns;
    out.status[i] = settled ? SpanStatus::kFinal : SpanStatus::kProvisional;
    if (b.has_counter()) {
      const EnergyRange r = span_range(b.range_at(t0_ns), b.range_at(t1_ns), b.max_power_w(), t0_ns, t1_ns);
      out.bound_j[i] = bound_of(out.energy_j[i], r);
    }
  }
  return out;
}

size_t Meter::copy_samples(size_t from, size_t to, int64_t* t_ns, uint32_t* channel, double* energy_j,
                           double* power_w) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t n = record_.end_seq();
  if (to > n) to = n;
  if (from >= to) return 0;
  if (from < record_.first_seq())
    throw MeterError("samples " + std::to_string(from) + ".." + std::to_string(to) +
                     " are no longer in RAM: the Meter keeps raw samples for keep_samples_s=" +
                     seconds_text(record_config_.keep_samples_ns) + " (now from sample " +
                     std::to_string(record_.first_seq()) +
                     " on). Stream long runs to a file with the recorder (`fastmeter trace`) and read them back "
                     "from there, or create the Meter with a larger keep_samples_s");
  record_.copy(from, to, t_ns, channel, energy_j, power_w);
  return to - from;
}

RecordStats Meter::record_stats() {
  RecordStats out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.samples_kept = record_.kept();
    out.samples_dropped_from_ram = record_.first_seq();
    out.telemetry_kept = tel_record_.kept();
    out.telemetry_dropped_from_ram = tel_record_.first_seq();
    for (const KnotBuilder& kb : knots_) {
      out.knots += kb.knots().size();
      out.knots_bytes += kb.knots().bytes();
    }
    for (const BoundBuilder& b : bounds_) {
      out.change_points += b.points();
      out.change_points_bytes += b.bytes();
    }
    out.samples_bytes = record_.bytes();
    out.history_disk_bytes = history_->file_bytes();
    out.history_ram_bytes = history_->ram_bytes();
    out.history_error = history_->error();
  }
  out.queries = query_ns_.count();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  out.query_p50_us = out.queries ? static_cast<double>(query_ns_.quantile_ns(0.50)) * 1e-3 : nan;
  out.query_p99_us = out.queries ? static_cast<double>(query_ns_.quantile_ns(0.99)) * 1e-3 : nan;
  return out;
}

void Meter::cumulative_at(size_t channel, const int64_t* t_ns, size_t n, double* out, double* bound_out) {
  const QueryTimer timer(query_ns_);
  if (channel >= channels().size()) throw MeterError("channel index out of range");
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  const auto& k = knots_[channel].knots();
  const BoundBuilder& b = bounds_[channel];
  // The record spans [start, newest poll]; the curve is not extended past it, nor past the channel's failure.
  const int64_t first = sampler_->start_ns();
  const int64_t last = std::min(newest_t_ns_, failed_at_ns_[channel]);
  const bool known = !k.empty() && first != 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t t = t_ns[i];
    const bool inside = known && t >= first && t <= last;
    out[i] = inside ? energy_at(k, t) : kNaN;
    if (bound_out) bound_out[i] = inside && b.has_counter() ? bound_of(out[i], b.range_at(t)) : kNaN;
  }
}

std::vector<int64_t> Meter::failed_at_ns() {
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  return failed_at_ns_;
}

size_t Meter::sample_count() {
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  return record_.end_seq();
}

std::vector<double> Meter::update_periods_s() {
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  std::vector<double> out;
  for (const auto& k : knots_) out.push_back(k.observed_update_period_s());
  return out;
}

size_t Meter::telemetry_count() {
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  return tel_record_.end_seq();
}

size_t Meter::copy_telemetry(size_t from, size_t to, int64_t* t_ns, uint32_t* series, double* value) {
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  if (to > tel_record_.end_seq()) to = tel_record_.end_seq();
  if (from >= to) return 0;
  if (from < tel_record_.first_seq())
    throw MeterError("telemetry readings " + std::to_string(from) + ".." + std::to_string(to) +
                     " are no longer in RAM: the Meter keeps them for keep_samples_s=" +
                     seconds_text(record_config_.keep_samples_ns) +
                     ". Stream long runs to a file with the recorder (`fastmeter trace`), or create the Meter "
                     "with a larger keep_samples_s");
  for (size_t i = from; i < to; ++i) {
    const TelemetryReading& r = tel_record_.at(i);
    t_ns[i - from] = r.t_ns;
    series[i - from] = r.series;
    value[i - from] = r.value;
  }
  return to - from;
}

std::vector<TelemetryReading> Meter::telemetry_between(int64_t t0_ns, int64_t t1_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  if (t1_ns < t0_ns) throw MeterError("telemetry span ends before it starts: stop_ns < start_ns");
  // Readings before the oldest kept one are gone only if some were dropped; before start there were none.
  if (tel_record_.first_seq() > 0 && t0_ns < tel_record_.first_t_ns())
    throw MeterError("telemetry before " + ns_text(tel_record_.first_t_ns()) +
                     " is no longer in RAM (the Meter keeps keep_samples_s=" +
                     seconds_text(record_config_.keep_samples_ns) +
                     "); stream long runs to a file with the recorder (`fastmeter trace`)");
  std::vector<TelemetryReading> out;
  for (uint64_t i = tel_record_.lower_bound(t0_ns); i < tel_record_.end_seq(); ++i) {
    const TelemetryReading& r = tel_record_.at(i);
    if (r.t_ns > t1_ns) break;
    out.push_back(r);
  }
  return out;
}

}  // namespace fastmeter
