// The whole Meter under concurrency (built with ThreadSanitizer by .ci/native-tests.sh): start/stop/close racing
// from many threads, queries racing stop, destruction while running, and bad configuration refused up front.
#include <atomic>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "fastmeter/clock.h"
#include "fastmeter/meter.h"

using namespace fastmeter;

static SamplerConfig config(int64_t period_ns) {
  SamplerConfig cfg;
  cfg.period_ns = period_ns;
  cfg.spin_ns = 0;
  cfg.ring_capacity = 1 << 14;
  return cfg;
}

static Meter* make(int64_t period_ns = 1000000) {
  return new Meter({{"synthetic", {{"base_w", "100"}, {"amp_w", "0"}}}}, config(period_ns));
}

template <typename F>
static void on_threads(int n, F f) {
  std::atomic<int> ready{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i)
    ts.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < n) std::this_thread::yield();  // release them together
      f(i);
    });
  for (auto& t : ts) t.join();
}

static void concurrent_start_and_stop() {
  for (int round = 0; round < 20; ++round) {
    Meter* m = make();
    std::atomic<int> started{0}, refused{0};
    on_threads(4, [&](int) {
      try {
        m->start();
        started.fetch_add(1);
      } catch (const MeterError&) {
        refused.fetch_add(1);
      }
    });
    CHECK(started.load() == 1 && refused.load() == 3);  // exactly one start wins; the rest get a clear error
    CHECK(m->running());
    on_threads(4, [&](int i) {
      if (i % 2) m->stop(); else m->close();
    });
    CHECK(m->stopped() && !m->running());
    CHECK(m->stop_ns() >= m->start_ns());
    delete m;
  }
}

static void queries_race_stop() {
  for (int round = 0; round < 10; ++round) {
    Meter* m = make(500000);
    m->start();
    const int64_t t0 = monotonic_ns();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::atomic<int> spans{0};
    on_threads(5, [&](int i) {
      if (i == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        m->stop();
        return;
      }
      for (int k = 0; k < 20; ++k) {
        const int64_t t1 = monotonic_ns();
        // A window racing stop is cut at the stop instant, never refused.
        const SpanEnergy e = m->energy_between(t0, t1, 50000000, true);
        CHECK(e.t1_ns <= t1 && e.t0_ns == t0);
        CHECK(e.status[0] == SpanStatus::kUnknown || e.energy_j[0] >= 0.0);
        const int64_t ts[2] = {t0, t1};
        double v[2], b[2];
        m->cumulative_at(0, ts, 2, v, b);
        (void)m->sample_count();
        (void)m->failed_at_ns();
        (void)m->stats();
        spans.fetch_add(1);
      }
    });
    CHECK(spans.load() == 80);
    CHECK(m->stopped());
    // After the stop, nothing past the record is extrapolated.
    const int64_t after = m->stop_ns() + 1000000;
    double v, b;
    m->cumulative_at(0, &after, 1, &v, &b);
    CHECK(std::isnan(v) && std::isnan(b));
    delete m;
  }
}

static void destroy_while_running() {
  for (int round = 0; round < 10; ++round) {
    Meter* m = make(200000);
    m->start();
    std::thread q([m] {
      for (int k = 0; k < 5; ++k) (void)m->sample_count();
    });
    q.join();
    delete m;  // joins its threads at once
  }
}

static void bad_config_is_refused() {
  for (int64_t bad : {int64_t{0}, int64_t{-5}}) CHECK_THROWS(make(bad), MeterError);
  SamplerConfig c = config(1000000);
  c.spin_ns = -1;
  CHECK_THROWS(Meter({{"synthetic", {}}}, c), MeterError);
  Meter m({{"synthetic", {}}}, config(1000000));
  m.stop();  // stopping a new meter: it can no longer start
  CHECK(m.stopped());
  CHECK_THROWS(m.start(), MeterError);
}

int main() {
  concurrent_start_and_stop();
  queries_race_stop();
  destroy_while_running();
  bad_config_is_refused();
  std::printf("test_meter_lifecycle: ok\n");
  return 0;
}
