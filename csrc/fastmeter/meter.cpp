#include "fastmeter/meter.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

namespace fastmeter {
namespace {

std::unique_ptr<Sampler> make_sampler(const std::vector<std::pair<std::string, SourceOptions>>& specs,
                                      SamplerConfig config) {
  std::vector<std::unique_ptr<Source>> sources;
  for (const auto& [name, options] : specs) sources.push_back(open_source(name, options));
  return std::make_unique<Sampler>(std::move(sources), config);
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

}  // namespace

Meter::Meter(const std::vector<std::pair<std::string, SourceOptions>>& sources, SamplerConfig config,
             RecordConfig record)
    : sampler_(make_sampler(sources, config)),
      record_config_(record),
      record_(record.keep_samples_ns, max_samples(record, config.period_ns, sampler_->channels().size())),
      knots_(),
      last_t_ns_(sampler_->channels().size(), std::numeric_limits<int64_t>::min()),
      buf_(2048) {  // one drain batch: ~0.1 ms under the mutex, so a query never waits behind a long one
  for (const auto& c : sampler_->channels()) knots_.emplace_back(c.power_window_ns, record.knot_resolution_ns);
}

Meter::~Meter() {
  try {
    stop();
  } catch (...) {
  }
}

void Meter::start() {
  if (stopped()) throw MeterError("this Meter has been stopped; create a new Meter to measure again");
  if (running()) throw MeterError("this Meter is already running");
  sampler_->start();
  drainer_ = std::thread([this] { drain_loop(); });
}

void Meter::stop() {
  if (!running()) return;
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
  stopped_.store(true, std::memory_order_release);
}

void Meter::drain_loop() {
  // Queries drain on demand, so this thread only keeps the ring from filling and the record's bounds current. It
  // wakes when a quarter of the ring, or kDrainBatch samples, should have arrived at the nominal rate (between
  // 10 ms and 1 s): 16 channels at 10 kHz wake it 10x a second, 10 channels at 1 kHz once a second.
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
  const size_t n = sampler_->ring().pop_bulk(buf_.data(), buf_.size());
  if (n == 0) return false;
  for (size_t k = 0; k < n; ++k) {
    const Sample& s = buf_[k];
    record_.append(s);
    if (!(s.flags & kSampleFailed))
      knots_[s.channel].push(s.t_ns, s.energy_j, s.power_w, (s.flags & kSampleCounter) != 0,
                             (s.flags & kSampleChanged) != 0);
    last_t_ns_[s.channel] = s.t_ns;
    if (s.t_ns > newest_t_ns_) newest_t_ns_ = s.t_ns;
  }
  // Bounds are enforced per batch, not per sample: each is O(1) unless a whole chunk leaves.
  record_.trim();
  const int64_t cutoff_ns = newest_t_ns_ - record_config_.keep_samples_ns;
  for (KnotBuilder& kb : knots_) kb.settle_before(cutoff_ns);
  return true;
}

bool Meter::wait_for_poll(std::unique_lock<std::mutex>& lock, int64_t t_ns, int64_t deadline_ns) {
  drain_locked();
  while (newest_t_ns_ < t_ns) {
    if (!running() || monotonic_ns() >= deadline_ns) return false;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    lock.lock();
    drain_locked();
  }
  return true;
}

std::vector<double> Meter::totals() const {
  std::vector<double> out(channels().size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = sampler_->total_j(i);
  return out;
}

SpanEnergy Meter::energy_between(int64_t t0_ns, int64_t t1_ns, int64_t wait_final_ns) {
  const QueryTimer timer(query_ns_);
  if (sampler_->start_ns() == 0) throw MeterError("the Meter has not been started; call start() or use `with`");
  if (t1_ns < t0_ns) throw MeterError("span ends before it starts: t1_ns < t0_ns");
  if (t0_ns < sampler_->start_ns())
    throw MeterError("span starts at " + ns_text(t0_ns) + ", before the meter started at " +
                     ns_text(sampler_->start_ns()) + "; take timestamps with meter.now_ns() after start()");
  std::unique_lock<std::mutex> lock(mu_);
  if (stopped() && t1_ns > stop_ns_)
    throw MeterError("span ends at " + ns_text(t1_ns) + ", after the meter stopped at " + ns_text(stop_ns_));
  if (running() && t1_ns > monotonic_ns() + 1000000)
    throw MeterError("span ends in the future (" + ns_text(t1_ns) + "); use a time from meter.now_ns()");
  // The sampler polls every period; allow a few periods plus a second of scheduling delay on a busy machine.
  const int64_t poll_deadline = monotonic_ns() + 4 * sampler_->period_ns() + 1000000000;
  if (!wait_for_poll(lock, t1_ns, poll_deadline) && newest_t_ns_ < t1_ns && running())
    throw MeterError("the sampler has not polled past the span's end; is the machine overloaded?");

  const size_t n = channels().size();
  const int64_t final_deadline = monotonic_ns() + wait_final_ns;
  SpanEnergy out;
  out.energy_j.assign(n, 0.0);
  out.final.assign(n, false);
  for (;;) {
    bool all_final = true;
    for (size_t i = 0; i < n; ++i) {
      const auto& k = knots_[i].knots();
      const bool failed = !sampler_->channel_error(i).empty();
      if (k.empty() || (failed && t1_ns > k.back().t_ns)) {
        // No change point yet (a slow counter early in the run): wait for one. A failed channel: nothing comes.
        out.energy_j[i] = std::numeric_limits<double>::quiet_NaN();
        out.final[i] = failed;
        all_final = all_final && failed;
        continue;
      }
      out.energy_j[i] = energy_at(k, t1_ns) - energy_at(k, t0_ns);
      out.final[i] = k.back().t_ns >= t1_ns || failed;
      all_final = all_final && out.final[i];
    }
    if (all_final || !running() || monotonic_ns() >= final_deadline) return out;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    lock.lock();
    drain_locked();
  }
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
    for (const KnotBuilder& kb : knots_) out.knots += kb.knots().size();
  }
  out.queries = query_ns_.count();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  out.query_p50_us = out.queries ? static_cast<double>(query_ns_.quantile_ns(0.50)) * 1e-3 : nan;
  out.query_p99_us = out.queries ? static_cast<double>(query_ns_.quantile_ns(0.99)) * 1e-3 : nan;
  return out;
}

void Meter::cumulative_at(size_t channel, const int64_t* t_ns, size_t n, double* out) {
  const QueryTimer timer(query_ns_);
  if (channel >= channels().size()) throw MeterError("channel index out of range");
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  const auto& k = knots_[channel].knots();
  for (size_t i = 0; i < n; ++i)
    out[i] = k.empty() ? std::numeric_limits<double>::quiet_NaN() : energy_at(k, t_ns[i]);
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

}  // namespace fastmeter
