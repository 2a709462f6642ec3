// The sampler and native meter on the synthetic source: deadlines, stop latency, energy vs the exact integral.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>

#include "check.h"
#include "fastmeter/clock.h"
#include "fastmeter/meter.h"
#include "fastmeter/schedule.h"
#include "fastmeter/sources/rapl_parse.h"

using namespace fastmeter;

static Meter make(int64_t period_ns, const std::string& base_w, size_t ring = 1 << 16) {
  SamplerConfig cfg;
  cfg.period_ns = period_ns;
  cfg.spin_ns = Sampler::default_spin_ns(period_ns);
  cfg.ring_capacity = ring;
  return Meter({{"synthetic", {{"base_w", base_w}, {"amp_w", "0"}}}}, cfg);
}

static void constant_power_energy() {
  Meter m = make(1000000, "250");
  m.start();
  const int64_t t0 = monotonic_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const int64_t t1 = monotonic_ns();
  const SpanEnergy e = m.energy_between(t0, t1, 100000000);
  m.stop();
  const double truth = 250.0 * static_cast<double>(t1 - t0) * 1e-9;
  CHECK(std::fabs(e.energy_j[0] - truth) < 0.002 * truth);
  CHECK(e.status[0] == SpanStatus::kFinal);
  const SamplerStats s = m.stats();
  CHECK(s.polls > 100 && s.dropped == 0);
  CHECK(m.sample_count() == s.polls);
  CHECK_THROWS(m.start(), MeterError);                           // use after stop
  CHECK_THROWS(m.energy_between(t0, monotonic_ns(), 0), MeterError);  // after the record
  CHECK_THROWS(m.energy_between(t1, t0, 0), MeterError);             // reversed
}

static void stop_is_prompt_with_long_period() {
  Meter m = make(2000000000, "100");  // 2 s period
  m.start();
  const auto a = std::chrono::steady_clock::now();
  m.stop();
  CHECK(std::chrono::steady_clock::now() - a < std::chrono::milliseconds(100));
  CHECK(m.stats().polls == 2);  // the start poll and the stop poll
}

static void fast_period_no_drift() {
  Meter m = make(100000, "100");  // 10 kHz
  m.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  m.stop();
  const SamplerStats s = m.stats();
  // Absolute deadlines: polls + missed deadlines account for the whole elapsed time, whatever the lateness.
  const double expected = s.elapsed_s / 1e-4;
  CHECK(std::fabs(static_cast<double>(s.polls + s.missed) - expected) < 0.02 * expected + 3);
}

static void read_errors_fatal_or_transient() {
  for (int e : {ENODEV, ENXIO, ENOENT, EBADF, EACCES, EPERM}) CHECK(rapl::read_error_is_fatal(e));
  for (int e : {EAGAIN, EIO, EBUSY, EBADMSG, ERANGE, ETIMEDOUT}) CHECK(!rapl::read_error_is_fatal(e));
}

static void tracker_locks_on_a_periodic_field() {
  constexpr int64_t ms = 1000000;
  std::vector<int64_t> updates;
  for (int64_t t = 37 * ms; t < 3000 * ms; t += 100 * ms) updates.push_back(t);
  const ScheduleRun r = simulate_schedule(updates, 0, 3000 * ms, ms, 2 * ms);
  CHECK(r.states.back() == static_cast<int>(TrackState::kLocked));
  CHECK(r.period_ns == 100 * ms && r.misses == 0);
  CHECK(r.poll_t_ns.size() < 1500);  // ~1 s dense, then a few polls per update
}

// The adaptive schedule on a source whose counter and power change at every poll: continuous, never locked,
// so the sampler keeps every deadline. stats() runs concurrently with the sampler (a TSan target).
static void adaptive_keeps_continuous_fields_on_every_deadline() {
  SamplerConfig cfg;
  cfg.period_ns = 1000000;
  cfg.schedule = SamplerConfig::Schedule::kAdaptive;
  Meter m({{"synthetic", {{"base_w", "100"}, {"amp_w", "50"}}}}, cfg);
  m.start();
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done.load()) (void)m.stats();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  done = true;
  reader.join();
  m.stop();
  const SamplerStats s = m.stats();
  CHECK(!s.sched_policy.empty());
  CHECK(s.schedule.size() == 1 && s.schedule[0].size() == 2);  // counter and power
  for (const FieldSchedule& f : s.schedule[0]) CHECK(f.state != TrackState::kLocked);
  CHECK(s.channels[0].polls == s.polls);
  CHECK(s.missed_share >= 0.0 && s.missed_share <= 1.0);
}

int main() {
  constant_power_energy();
  stop_is_prompt_with_long_period();
  fast_period_no_drift();
  read_errors_fatal_or_transient();
  tracker_locks_on_a_periodic_field();
  adaptive_keeps_continuous_fields_on_every_deadline();
  std::printf("test_sampler: ok\n");
  return 0;
}
