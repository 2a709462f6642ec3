#include "fastmeter/meter.h"

#include <algorithm>
#include <chrono>
#include <cmath>
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

}  // namespace

Meter::Meter(const std::vector<std::pair<std::string, SourceOptions>>& sources, SamplerConfig config)
    : sampler_(make_sampler(sources, config)),
      knots_(),
      last_t_ns_(sampler_->channels().size(), std::numeric_limits<int64_t>::min()),
      buf_(8192) {
  for (const auto& c : sampler_->channels()) knots_.emplace_back(c.power_window_ns);
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
  // Queries drain on demand, so this thread only keeps the ring from filling: it wakes when the ring could be a
  // quarter full at the sampler's densest rate (one sample per channel per period), between 10 ms and 1 s. At 1 kHz
  // with a few channels that is once a second (each wake-up costs tens of µs of CPU, as much as a poll); at the
  // extreme (20 kHz x 64 channels, 1M capacity) ~0.2 s.
  const double per_s = 1e9 / static_cast<double>(sampler_->period_ns()) *
                       static_cast<double>(std::max<size_t>(1, sampler_->channels().size()));
  const double fill_s = static_cast<double>(sampler_->ring().capacity()) / per_s / 4.0;
  const auto interval = std::chrono::milliseconds(static_cast<int64_t>(std::clamp(fill_s, 0.01, 1.0) * 1e3));
  std::unique_lock<std::mutex> lock(mu_);
  while (!drain_stop_) {
    drain_locked();
    drain_cv_.wait_for(lock, interval, [this] { return drain_stop_; });
  }
}

void Meter::drain_locked() {
  for (;;) {
    const size_t n = sampler_->ring().pop_bulk(buf_.data(), buf_.size());
    if (n == 0) return;
    for (size_t k = 0; k < n; ++k) {
      const Sample& s = buf_[k];
      rec_t_ns_.push_back(s.t_ns);
      rec_channel_.push_back(s.channel);
      rec_energy_j_.push_back(s.energy_j);
      rec_power_w_.push_back(s.power_w);
      if (!(s.flags & kSampleFailed))
        knots_[s.channel].push(s.t_ns, s.energy_j, s.power_w, (s.flags & kSampleCounter) != 0,
                               (s.flags & kSampleChanged) != 0);
      last_t_ns_[s.channel] = s.t_ns;
      if (s.t_ns > newest_t_ns_) newest_t_ns_ = s.t_ns;
    }
  }
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
      out.energy_j[i] = energy_at(k.data(), k.size(), t1_ns) - energy_at(k.data(), k.size(), t0_ns);
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
  const size_t n = rec_t_ns_.size();
  if (to > n) to = n;
  if (from >= to) return 0;
  const size_t k = to - from;
  std::copy_n(rec_t_ns_.data() + from, k, t_ns);
  std::copy_n(rec_channel_.data() + from, k, channel);
  std::copy_n(rec_energy_j_.data() + from, k, energy_j);
  std::copy_n(rec_power_w_.data() + from, k, power_w);
  return k;
}

void Meter::cumulative_at(size_t channel, const int64_t* t_ns, size_t n, double* out) {
  if (channel >= channels().size()) throw MeterError("channel index out of range");
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  const auto& k = knots_[channel].knots();
  for (size_t i = 0; i < n; ++i)
    out[i] = k.empty() ? std::numeric_limits<double>::quiet_NaN() : energy_at(k.data(), k.size(), t_ns[i]);
}

size_t Meter::sample_count() {
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  return rec_t_ns_.size();
}

std::vector<double> Meter::update_periods_s() {
  std::lock_guard<std::mutex> lock(mu_);
  drain_locked();
  std::vector<double> out;
  for (const auto& k : knots_) out.push_back(k.observed_update_period_s());
  return out;
}

}  // namespace fastmeter
