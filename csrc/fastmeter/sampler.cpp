#include "fastmeter/sampler.h"

#include <sys/prctl.h>

#include <cmath>
#include <limits>

namespace fastmeter {
namespace {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
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

Sampler::Sampler(std::vector<std::unique_ptr<Source>> sources, SamplerConfig config)
    : sources_(std::move(sources)), config_(config), ring_(config.ring_capacity) {
  for (const auto& s : sources_) {
    first_channel_.push_back(channels_.size());
    for (const auto& c : s->channels()) channels_.push_back(c);
  }
  for (const auto& c : channels_) acc_.emplace_back(c);
  state_ = std::make_unique<ChannelState[]>(channels_.size());
  readings_.resize(channels_.size());
}

Sampler::~Sampler() { stop(); }

void Sampler::start() {
  if (running_.load(std::memory_order_acquire)) return;
  anchor_ = take_anchor();
  start_ns_ = monotonic_ns();
  poll();  // the record starts at start(), not one period later
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
  poll();  // the record ends at stop(); the thread is gone, so this thread is now the only producer
  // Release the hardware now (NVML session, open sysfs/MSR files) rather than whenever Python frees the meter.
  sources_.clear();
  running_.store(false, std::memory_order_release);
}

std::string Sampler::channel_error(size_t i) const {
  return state_[i].failed.load(std::memory_order_acquire) ? state_[i].error : std::string();
}

SamplerStats Sampler::stats() const noexcept {
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
  s.dropped = dropped_.load(std::memory_order_relaxed);
  return s;
}

void Sampler::run() noexcept {
  // Timer slack defaults to 50 µs; 1 ns lets clock_nanosleep wake as close to the deadline as the kernel can.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  const int64_t period = config_.period_ns;
  int64_t next = start_ns_ + period;
  while (!stop_flag_.load(std::memory_order_acquire)) {
    wait_until(next);
    if (stop_flag_.load(std::memory_order_acquire)) break;
    lateness_.record(monotonic_ns() - next);
    poll();
    next += period;
    const int64_t now = monotonic_ns();
    if (now >= next) {
      // Overran at least one whole period: skip to the next deadline in the future (no burst of catch-up polls).
      const int64_t behind = (now - next) / period + 1;
      missed_.fetch_add(static_cast<uint64_t>(behind), std::memory_order_relaxed);
      next += behind * period;
    }
  }
}

void Sampler::wait_until(int64_t deadline_ns) noexcept {
  const int64_t spin = config_.spin_ns;
  constexpr int64_t kSleepChunkNs = 2000000;  // bound on how long stop() can wait for the thread to notice
  for (;;) {
    if (stop_flag_.load(std::memory_order_acquire)) return;
    const int64_t remaining = deadline_ns - monotonic_ns();
    if (remaining <= 0) return;
    if (remaining > spin + kSleepChunkNs) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::nanoseconds(remaining - spin - kSleepChunkNs / 2),
                   [this] { return stop_requested_; });
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

void Sampler::poll() noexcept {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  int64_t t_end = 0;
  for (size_t s = 0; s < sources_.size(); ++s) {
    Source& src = *sources_[s];
    const size_t base = first_channel_[s];
    const size_t n = src.channels().size();
    const int64_t t_a = monotonic_ns();
    src.read(readings_.data() + base);
    t_end = monotonic_ns();
    // A read takes from ~0.1 µs (synthetic) to hundreds of µs (old GPUs): stamp it at its middle.
    const int64_t t = t_a + (t_end - t_a) / 2;
    for (size_t i = base; i < base + n; ++i) {
      ChannelState& st = state_[i];
      if (st.failed.load(std::memory_order_relaxed)) continue;
      const Reading& r = readings_[i];
      Sample smp{t, acc_[i].energy_j(), nan, static_cast<uint32_t>(i), 0};
      if (r.flags & kReadFailed) {
        try {
          st.error = src.error_text(r.error_code);
        } catch (...) {
          st.error = "channel failed (error code " + std::to_string(r.error_code) + ")";
        }
        st.failed.store(true, std::memory_order_release);
        smp.flags = kSampleFailed;
      } else {
        const ChannelAccumulator::Step step = acc_[i].push(t, r);
        smp.energy_j = step.energy_j;
        if (r.flags & kReadPower) smp.power_w = r.power_w;
        smp.flags = (step.counter ? kSampleCounter : 0u) | (step.changed ? kSampleChanged : 0u);
        st.total_j.store(step.energy_j, std::memory_order_release);
      }
      if (!ring_.try_push(smp)) dropped_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  polls_.fetch_add(1, std::memory_order_relaxed);
  last_poll_ns_.store(t_end, std::memory_order_release);
}

}  // namespace fastmeter
