#include "fastmeter/sampler.h"

#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

namespace fastmeter {
namespace {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

void raise_to(std::atomic<int64_t>& max, int64_t v) noexcept {
  int64_t prev = max.load(std::memory_order_relaxed);
  while (v > prev && !max.compare_exchange_weak(prev, v, std::memory_order_relaxed)) {
  }
}

const char* policy_name(int policy) noexcept {
  switch (policy) {
    case SCHED_OTHER:
      return "SCHED_OTHER";
    case SCHED_FIFO:
      return "SCHED_FIFO";
    case SCHED_RR:
      return "SCHED_RR";
#ifdef SCHED_BATCH
    case SCHED_BATCH:
      return "SCHED_BATCH";
#endif
#ifdef SCHED_IDLE
    case SCHED_IDLE:
      return "SCHED_IDLE";
#endif
    default:
      return "unknown";
  }
}

}  // namespace

int64_t Sampler::default_spin_ns(int64_t period_ns) noexcept {
  // Measured on 2-core VMs (FACTS.md): below ~200 us sleeping alone cannot keep up, so sleep until 40 us before
  // each deadline and spin the rest (most of a core at 20 kHz). Longer periods sleep only (timer slack 1 ns,
  // p99 lateness ~100 us): spinning there would cost more CPU per sample than a Python polling loop. Callers
  // who want tighter deadlines at 1 kHz pass spin_us (50 us spin: p99 ~40 us for ~5% of a core).
  if (period_ns >= 200000) return 0;
  return std::min<int64_t>(40000, period_ns * 4 / 5);
}

Sampler::Sampler(std::vector<std::unique_ptr<Source>> sources, SamplerConfig config,
                 std::vector<std::unique_ptr<TelemetryProbe>> telemetry)
    : sources_(std::move(sources)),
      config_(config),
      ring_(config.ring_capacity),
      telemetry_(std::move(telemetry)),
      tel_ring_(config.telemetry_period_ns > 0 ? config.telemetry_ring_capacity : 1) {
  if (config_.period_ns <= 0) throw std::invalid_argument("sampler period_ns must be positive");
  if (config_.telemetry_period_ns < 0) throw std::invalid_argument("sampler telemetry_period_ns must be >= 0");
  if (config_.telemetry_period_ns == 0) telemetry_.clear();
  for (const auto& p : telemetry_) {
    for (const auto& se : p->series()) tel_series_.push_back(se);
    for (const auto& u : p->unavailable()) tel_unavailable_.push_back(u);
  }
  tel_values_.resize(tel_series_.size());
  for (const auto& s : sources_) {
    first_channel_.push_back(channels_.size());
    for (const auto& c : s->channels()) channels_.push_back(c);
  }
  for (const auto& c : channels_) acc_.emplace_back(c);
  state_ = std::make_unique<ChannelState[]>(channels_.size());
  readings_.resize(channels_.size());
  src_state_.resize(sources_.size());
  if (config_.schedule == SamplerConfig::Schedule::kAdaptive) {
    // 2 ms at 1 kHz: wide enough for the half-period quantization of a located update plus wake-up lateness.
    const int64_t guard = config_.guard_ns > 0 ? config_.guard_ns : std::max<int64_t>(2000000, 2 * config_.period_ns);
    for (size_t i = 0; i < channels_.size(); ++i) {
      if (channels_[i].has_counter) {
        state_[i].counter_track = static_cast<int>(trackers_.size());
        trackers_.emplace_back(config_.period_ns, guard);
      }
      if (channels_[i].has_power) {
        state_[i].power_track = static_cast<int>(trackers_.size());
        trackers_.emplace_back(config_.period_ns, guard);
      }
    }
  }
}

Sampler::~Sampler() { stop(); }

void Sampler::start() {
  if (running_.load(std::memory_order_acquire)) return;
  anchor_ = take_anchor();
  start_ns_ = monotonic_ns();
  poll_all();  // the record starts at start(), not one period later
  for (auto& ss : src_state_) ss.next_ns = start_ns_ + config_.period_ns;
  if (!telemetry_.empty()) {
    poll_telemetry();
    // Half an energy period off the energy grid: a telemetry read (several driver calls, up to ~1 ms on real
    // GPUs) then falls between two energy deadlines instead of right before the next one.
    tel_next_ns_ = start_ns_ + config_.period_ns / 2 + config_.telemetry_period_ns;
  }
  running_.store(true, std::memory_order_release);
  thread_ = std::thread([this] { run(); });
}

void Sampler::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_requested_ = true;
    stop_flag_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
  thread_.join();
  // The thread is gone, so this thread is now the only producer. Telemetry first: the energy poll after it is
  // the stop instant, and every reading lies inside [start, stop].
  if (!telemetry_.empty()) poll_telemetry();
  poll_all();  // the record ends at stop()
  // Release the hardware now (NVML session, open sysfs/MSR files) rather than whenever Python frees the meter.
  telemetry_.clear();
  sources_.clear();
  running_.store(false, std::memory_order_release);
}

std::string Sampler::channel_error(size_t i) const {
  return state_[i].failed.load(std::memory_order_acquire) ? state_[i].error : std::string();
}

SamplerStats Sampler::stats() const {
  SamplerStats s;
  s.polls = polls_.load(std::memory_order_relaxed);
  const int64_t last = last_poll_ns_.load(std::memory_order_acquire);
  s.elapsed_s = last > start_ns_ ? static_cast<double>(last - start_ns_) * 1e-9 : 0.0;
  // polls - 1 intervals between the first poll (at start) and the latest one.
  s.rate_hz = (s.polls > 1 && s.elapsed_s > 0) ? static_cast<double>(s.polls - 1) / s.elapsed_s : 0.0;
  s.jitter_p50_us = lateness_.quantile_us(0.50);
  s.jitter_p99_us = lateness_.quantile_us(0.99);
  s.jitter_max_us = lateness_.max_us();
  s.missed = missed_.load(std::memory_order_relaxed);
  const uint64_t scheduled = deadlines_.load(std::memory_order_relaxed) + s.missed;
  s.missed_share = scheduled > 0 ? static_cast<double>(s.missed) / static_cast<double>(scheduled) : 0.0;
  s.poll_gap_max_ns = poll_gap_max_ns_.load(std::memory_order_relaxed);
  s.dropped = dropped_.load(std::memory_order_relaxed);
  const int policy = sched_policy_.load(std::memory_order_acquire);
  s.sched_policy = policy < 0 ? "" : policy_name(policy);
  s.telemetry_polls = tel_polls_.load(std::memory_order_relaxed);
  s.telemetry_missed = tel_missed_.load(std::memory_order_relaxed);
  s.telemetry_dropped = tel_dropped_.load(std::memory_order_relaxed);
  s.telemetry_read_p99_us = tel_read_ns_.quantile_us(0.99);
  s.telemetry_read_errors = tel_read_errors_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < channels_.size(); ++i) {
    const ChannelState& st = state_[i];
    s.channels.push_back({st.polls.load(std::memory_order_relaxed), st.read_errors.load(std::memory_order_relaxed),
                          st.poll_gap_max_ns.load(std::memory_order_relaxed)});
  }
  if (!trackers_.empty()) {
    std::lock_guard<std::mutex> lock(track_mu_);
    for (size_t i = 0; i < channels_.size(); ++i) {
      std::vector<FieldSchedule> fields;
      const std::pair<const char*, int> tracked[] = {{"counter", state_[i].counter_track},
                                                     {"power", state_[i].power_track}};
      for (const auto& [name, k] : tracked) {
        if (k < 0) continue;
        const UpdateTracker& t = trackers_[static_cast<size_t>(k)];
        fields.push_back({name, t.state(), t.period_ns(), t.misses(), t.relocks()});
      }
      s.schedule.push_back(std::move(fields));
    }
  }
  return s;
}

void Sampler::take_realtime() noexcept {
  if (config_.realtime) {
    sched_param sp{};
    sp.sched_priority = sched_get_priority_min(SCHED_FIFO);
    // EPERM without CAP_SYS_NICE or an RLIMIT_RTPRIO: stay SCHED_OTHER; stats() reports what we got.
    pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
  }
  int policy = 0;
  sched_param cur{};
  if (pthread_getschedparam(pthread_self(), &policy, &cur) == 0) sched_policy_.store(policy, std::memory_order_release);
}

int64_t Sampler::grid_ceil(int64_t t_ns) const noexcept {
  const int64_t p = config_.period_ns;
  if (t_ns <= start_ns_) return start_ns_;
  return start_ns_ + (t_ns - start_ns_ + p - 1) / p * p;
}

int64_t Sampler::source_deadline(size_t s, int64_t after_ns) const noexcept {
  if (trackers_.empty()) return after_ns;
  const size_t base = first_channel_[s];
  const size_t n = sources_[s]->channels().size();
  bool any_locked = false;
  for (size_t i = base; i < base + n; ++i)
    for (int k : {state_[i].counter_track, state_[i].power_track})
      if (k >= 0 && trackers_[static_cast<size_t>(k)].state() == TrackState::kLocked) any_locked = true;
  int64_t need = std::numeric_limits<int64_t>::max();
  for (size_t i = base; i < base + n; ++i) {
    if (state_[i].failed.load(std::memory_order_relaxed)) continue;
    for (int k : {state_[i].counter_track, state_[i].power_track}) {
      if (k < 0) continue;
      const UpdateTracker& t = trackers_[static_cast<size_t>(k)];
      // A quiet field (no news for a while) rides along with a locked sibling's polls instead of keeping the
      // whole source on dense polling; its next change puts it back to learning.
      if (t.state() == TrackState::kQuiet && any_locked) continue;
      need = std::min(need, t.next_poll_ns(after_ns));
    }
  }
  return need == std::numeric_limits<int64_t>::max() ? after_ns : grid_ceil(need);
}

void Sampler::run() noexcept {
  take_realtime();
  // Timer slack defaults to 50 µs; 1 ns lets clock_nanosleep wake as close to the deadline as the kernel can.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  const int64_t period = config_.period_ns;
  int64_t last_wake = last_poll_ns_.load(std::memory_order_relaxed);
  while (!stop_flag_.load(std::memory_order_acquire)) {
    int64_t next = std::numeric_limits<int64_t>::max();
    for (const auto& ss : src_state_) next = std::min(next, ss.next_ns);
    const bool telemetry = !telemetry_.empty();
    wait_until(telemetry ? std::min(next, tel_next_ns_) : next);
    if (stop_flag_.load(std::memory_order_acquire)) break;
    const int64_t woke = monotonic_ns();
    if (next <= woke) {
      lateness_.record(woke - next);
      deadlines_.fetch_add(1, std::memory_order_relaxed);
      for (size_t s = 0; s < sources_.size(); ++s)
        if (src_state_[s].next_ns <= woke) poll_source(s);
      const int64_t t_end = monotonic_ns();
      polls_.fetch_add(1, std::memory_order_relaxed);
      last_poll_ns_.store(t_end, std::memory_order_release);
      raise_to(poll_gap_max_ns_, t_end - last_wake);
      last_wake = t_end;
      // Every source just polled moves to the next grid deadline it needs. Deadlines already in the past were
      // missed (a poll overran whole periods or the thread was starved): count them once, skip to the future
      // (no burst of catch-up polls).
      int64_t earliest = std::numeric_limits<int64_t>::max();
      for (size_t s = 0; s < sources_.size(); ++s) {
        SourceState& ss = src_state_[s];
        if (ss.next_ns <= woke) ss.next_ns = source_deadline(s, ss.next_ns + period);
        earliest = std::min(earliest, ss.next_ns);
      }
      if (t_end >= earliest) {
        const int64_t behind = (t_end - earliest) / period + 1;
        missed_.fetch_add(static_cast<uint64_t>(behind), std::memory_order_relaxed);
        for (auto& ss : src_state_)
          if (ss.next_ns <= t_end) ss.next_ns = grid_ceil(t_end + 1);
      }
    }
    // Telemetry after any energy reads due at the same instant, so it never delays them within a wake-up.
    if (telemetry && tel_next_ns_ <= woke) {
      poll_telemetry();
      const int64_t tp = config_.telemetry_period_ns;
      tel_next_ns_ += tp;
      const int64_t now = monotonic_ns();
      if (tel_next_ns_ <= now) {
        const int64_t behind = (now - tel_next_ns_) / tp + 1;
        tel_missed_.fetch_add(static_cast<uint64_t>(behind), std::memory_order_relaxed);
        tel_next_ns_ += behind * tp;
      }
    }
  }
}

void Sampler::poll_telemetry() noexcept {
  const int64_t t0 = monotonic_ns();
  size_t base = 0;
  for (const auto& p : telemetry_) {
    const int64_t t_a = monotonic_ns();
    p->read(tel_values_.data() + base);
    const int64_t t_b = monotonic_ns();
    const int64_t t = t_a + (t_b - t_a) / 2;  // stamped at the middle of its read, like an energy poll
    const size_t n = p->series().size();
    for (size_t i = base; i < base + n; ++i) {
      if (std::isnan(tel_values_[i])) continue;  // no value this poll: counted in the probe's read_errors
      const TelemetryReading r{t, tel_values_[i], static_cast<uint32_t>(i)};
      if (!tel_ring_.try_push(r)) tel_dropped_.fetch_add(1, std::memory_order_relaxed);
    }
    base += n;
  }
  tel_read_ns_.record(monotonic_ns() - t0);
  // Kept here, not only in the probes: they are released at stop() and stats() stays readable after it.
  uint64_t errors = 0;
  for (const auto& p : telemetry_) errors += p->read_errors();
  tel_read_errors_.store(errors, std::memory_order_relaxed);
  tel_polls_.fetch_add(1, std::memory_order_relaxed);
}

void Sampler::wait_until(int64_t deadline_ns) noexcept {
  const int64_t spin = config_.spin_ns;
  // Below this a sleep uses clock_nanosleep, which stop() cannot interrupt: it bounds how long stop() can wait.
  constexpr int64_t kSleepChunkNs = 2000000;
  for (;;) {
    if (stop_flag_.load(std::memory_order_acquire)) return;
    const int64_t remaining = deadline_ns - monotonic_ns();
    if (remaining <= 0) return;
    if (remaining > spin + kSleepChunkNs) {
      // One wake-up for a long sleep (the adaptive schedule sleeps ~100 ms between bands): wait on the condition
      // variable right up to the spin start. steady_clock is CLOCK_MONOTONIC, and the timer slack set in run()
      // applies to this wait as to clock_nanosleep.
      std::unique_lock<std::mutex> lock(mu_);
      const std::chrono::steady_clock::time_point wake{std::chrono::nanoseconds(deadline_ns - spin)};
      cv_.wait_until(lock, wake, [this] { return stop_requested_; });
    } else if (remaining > spin) {
      const int64_t wake = deadline_ns - spin;
      timespec ts{static_cast<time_t>(wake / 1000000000LL), static_cast<long>(wake % 1000000000LL)};
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
    } else {
      while (monotonic_ns() < deadline_ns) cpu_relax();
      return;
    }
  }
}

void Sampler::poll_all() noexcept {
  for (size_t s = 0; s < sources_.size(); ++s) poll_source(s);
  polls_.fetch_add(1, std::memory_order_relaxed);
  last_poll_ns_.store(monotonic_ns(), std::memory_order_release);
}

void Sampler::fail_channel(size_t i, const std::string& why) noexcept {
  ChannelState& st = state_[i];
  try {
    st.error = why.empty() ? "channel failed" : why;
  } catch (...) {
    st.error = "channel failed";
  }
  st.failed.store(true, std::memory_order_release);
}

void Sampler::observe_fields(size_t i, int64_t t_ns, const Reading& r) noexcept {
  ChannelState& st = state_[i];
  if ((r.flags & kReadCounter) && st.counter_track >= 0) {
    trackers_[static_cast<size_t>(st.counter_track)].observe(t_ns, st.have_counter && r.counter_raw != st.last_counter);
    st.have_counter = true;
    st.last_counter = r.counter_raw;
  }
  if ((r.flags & kReadPower) && st.power_track >= 0) {
    trackers_[static_cast<size_t>(st.power_track)].observe(t_ns, st.have_power && r.power_w != st.last_power_w);
    st.have_power = true;
    st.last_power_w = r.power_w;
  }
}

void Sampler::poll_source(size_t s) noexcept {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Source& src = *sources_[s];
  const size_t base = first_channel_[s];
  const size_t n = src.channels().size();
  const int64_t t_a = monotonic_ns();
  src.read(readings_.data() + base);
  const int64_t t_end = monotonic_ns();
  // A read takes from ~0.1 µs (synthetic) to hundreds of µs (old GPUs): stamp it at its middle.
  const int64_t t = t_a + (t_end - t_a) / 2;
  // Gaps run from the start of one read to the start of the next: a read that hangs counts whole.
  SourceState& ss = src_state_[s];
  const int64_t gap = ss.last_poll_ns > 0 ? t_a - ss.last_poll_ns : 0;
  ss.last_poll_ns = t_a;
  std::unique_lock<std::mutex> track_lock(track_mu_, std::defer_lock);
  if (!trackers_.empty()) track_lock.lock();
  for (size_t i = base; i < base + n; ++i) {
    ChannelState& st = state_[i];
    if (st.failed.load(std::memory_order_relaxed)) continue;
    st.polls.fetch_add(1, std::memory_order_relaxed);
    raise_to(st.poll_gap_max_ns, gap);
    const Reading& r = readings_[i];
    if (r.flags & kReadSkipped) {
      // One bad read (EAGAIN, EIO, garbage): no value this poll; the next good one is differenced against the
      // last good one, so no energy is lost. Only a channel that keeps failing for kFailAfterErrorsNs dies.
      st.read_errors.fetch_add(1, std::memory_order_relaxed);
      if (st.errors_in_row++ == 0) st.first_error_ns = t;
      if (st.errors_in_row >= kFailAfterReadErrors && t - st.first_error_ns >= kFailAfterErrorsNs) {
        std::string why;
        try {
          why = std::to_string(st.errors_in_row) + " reads in a row failed over " +
                std::to_string((t - st.first_error_ns) / 1000000) + " ms; the last: " + src.error_text(r.error_code);
        } catch (...) {
        }
        fail_channel(i, why);
        Sample smp{t, acc_[i].energy_j(), nan, static_cast<uint32_t>(i), kSampleFailed};
        if (!ring_.try_push(smp)) dropped_.fetch_add(1, std::memory_order_relaxed);
      }
      continue;
    }
    st.errors_in_row = 0;
    Sample smp{t, acc_[i].energy_j(), nan, static_cast<uint32_t>(i), 0};
    if (r.flags & kReadFailed) {
      std::string why;
      try {
        why = src.error_text(r.error_code);
      } catch (...) {
        why = "channel failed (error code " + std::to_string(r.error_code) + ")";
      }
      fail_channel(i, why);
      smp.flags = kSampleFailed;
    } else {
      const ChannelAccumulator::Step step = acc_[i].push(t, r);
      smp.energy_j = step.energy_j;
      if (r.flags & kReadPower) smp.power_w = r.power_w;
      smp.flags = (step.counter ? kSampleCounter : 0u) | (step.changed ? kSampleChanged : 0u);
      st.total_j.store(step.energy_j, std::memory_order_release);
      if (!trackers_.empty()) observe_fields(i, t, r);
    }
    if (!ring_.try_push(smp)) dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace fastmeter
