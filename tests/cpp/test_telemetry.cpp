// The telemetry schedule: a probe polled on its own grid by the sampler thread (start and stop polls included),
// readings on the sampler clock in time order, NaN values left out, and the bounded record's lookups.
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "check.h"
#include "fastmeter/sampler.h"
#include "fastmeter/telemetry.h"

using namespace fastmeter;

namespace {

// Two series: a poll counter, and a value that is NaN on every third poll (a transient failure).
class CountingProbe final : public TelemetryProbe {
 public:
  const std::vector<TelemetrySeries>& series() const noexcept override { return series_; }
  const std::vector<std::string>& unavailable() const noexcept override { return unavailable_; }
  uint64_t read_errors() const noexcept override { return errors_.load(); }
  void read(double* out) noexcept override {
    const uint64_t n = ++polls;
    out[0] = static_cast<double>(n);
    out[1] = n % 3 == 0 ? std::numeric_limits<double>::quiet_NaN() : 1.0;
    if (n % 3 == 0) errors_.fetch_add(1);
  }
  std::atomic<uint64_t> polls{0};

 private:
  std::vector<TelemetrySeries> series_{{"dev0", "count"}, {"dev0", "flaky"}};
  std::vector<std::string> unavailable_{"dev0 missing_metric: not offered"};
  std::atomic<uint64_t> errors_{0};
};

void schedule_polls_on_its_own_grid() {
  std::vector<std::unique_ptr<Source>> sources;
  sources.push_back(make_synthetic_source({}));
  std::vector<std::unique_ptr<TelemetryProbe>> probes;
  probes.push_back(std::make_unique<CountingProbe>());  // released at stop(), like a device session
  SamplerConfig cfg;
  cfg.period_ns = 1'000'000;           // energy at 1 kHz
  cfg.telemetry_period_ns = 20'000'000;  // telemetry at 50 Hz
  cfg.realtime = false;
  Sampler s(std::move(sources), cfg, std::move(probes));
  CHECK(s.telemetry_series().size() == 2 && s.telemetry_unavailable().size() == 1);
  s.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  s.stop();
  const SamplerStats st = s.stats();
  const uint64_t polls = st.telemetry_polls;
  // ~15 grid polls in 300 ms plus start and stop; a loaded host may skip (counted as missed), never add.
  CHECK(polls >= 3 && polls <= 300 / 20 + 3);
  CHECK(st.telemetry_read_errors == polls / 3);
  std::vector<TelemetryReading> r(4096);
  const size_t n = s.telemetry_ring().pop_bulk(r.data(), r.size());
  CHECK(n == polls + (polls - polls / 3));  // every count, the flaky one's NaNs left out
  int64_t last = 0;
  double count = 0;
  for (size_t i = 0; i < n; ++i) {
    CHECK(r[i].t_ns >= last && r[i].t_ns >= s.start_ns() && r[i].t_ns <= s.last_poll_ns());
    last = r[i].t_ns;
    CHECK(!std::isnan(r[i].value));
    if (r[i].series == 0) CHECK(r[i].value == ++count);
  }
  CHECK(count == static_cast<double>(polls));
}

void off_means_never_polled() {
  std::vector<std::unique_ptr<Source>> sources;
  sources.push_back(make_synthetic_source({}));
  std::vector<std::unique_ptr<TelemetryProbe>> probes;
  probes.push_back(std::make_unique<CountingProbe>());
  SamplerConfig cfg;
  cfg.realtime = false;  // telemetry_period_ns = 0
  Sampler s(std::move(sources), cfg, std::move(probes));
  CHECK(s.telemetry_series().empty());
  s.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  s.stop();
  CHECK(s.stats().telemetry_polls == 0);
}

void record_bounds_and_lookups() {
  const size_t max = 10000;
  TelemetryRecord r(std::numeric_limits<int64_t>::max(), max);
  CHECK(r.first_t_ns() == std::numeric_limits<int64_t>::max() && r.lower_bound(0) == 0);
  for (uint64_t k = 0; k < 100000; ++k) {
    r.append({static_cast<int64_t>(k / 4) * 10, static_cast<double>(k), static_cast<uint32_t>(k % 4)});
    if (k % 1000 == 999) r.trim();
  }
  CHECK(r.kept() < max + TelemetryRecord::kChunk && r.kept() >= max);
  CHECK(r.first_seq() + r.kept() == r.end_seq() && r.end_seq() == 100000);
  CHECK(r.at(r.first_seq()).value == static_cast<double>(r.first_seq()));
  const uint64_t i = r.lower_bound(240000);  // the first of the 4 readings stamped 240000: reading 96000
  CHECK(i == 96000 && r.at(i).t_ns == 240000 && r.at(i - 1).t_ns == 239990);
  CHECK(r.lower_bound(0) == r.first_seq() && r.lower_bound(1'000'000'000) == r.end_seq());
  TelemetryRecord timed(100, 1'000'000);  // keep 100 ns of readings
  for (int64_t t = 0; t < 100000; ++t) timed.append({t, 0.0, 0});
  timed.trim();
  CHECK(timed.first_t_ns() >= 100000 - 100 - static_cast<int64_t>(TelemetryRecord::kChunk));
}

}  // namespace

int main() {
  schedule_polls_on_its_own_grid();
  off_means_never_polled();
  record_bounds_and_lookups();
  return 0;
}
