// Telemetry beside energy: slow-changing device state (utilization, clocks, temperatures, power limit, throttle
// reasons, CPU load and frequency) read by the sampler thread on its own, lower-rate schedule. Energy sources stay
// on their own interface (sources/source.h): telemetry never feeds the energy curve.
//
// A probe owns a fixed list of series (channel, metric) decided when it opens; items the hardware does not offer
// are listed once in unavailable(), never failed per poll. Each poll fills one double per series (NaN: no value
// this poll, e.g. a transient error or the first poll of a rate).
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "fastmeter/sources/source.h"

namespace fastmeter {

struct TelemetrySeries {
  std::string channel;  // "gpu0", "cpu", "cpu-policy0"
  std::string metric;   // unit in the name: "sm_clock_mhz", "gpu_temp_c", "util_pct"
};

// One value of one series at one poll, on the sampler clock.
struct TelemetryReading {
  int64_t t_ns;
  double value;
  uint32_t series;  // index into the sampler's telemetry_series()
};
static_assert(std::is_trivially_copyable_v<TelemetryReading>, "TelemetryReading crosses threads by memcpy");

class TelemetryProbe {
 public:
  virtual ~TelemetryProbe() = default;
  TelemetryProbe() = default;
  TelemetryProbe(const TelemetryProbe&) = delete;
  TelemetryProbe& operator=(const TelemetryProbe&) = delete;

  virtual const std::vector<TelemetrySeries>& series() const noexcept = 0;
  // Items this probe cannot read here, one line each ("gpu0 pcie_tx_bytes: NVML error 3 NOT_SUPPORTED ...").
  virtual const std::vector<std::string>& unavailable() const noexcept = 0;
  // Sampler thread only: out[k] for every series k; NaN where this poll has no value. Must not throw.
  virtual void read(double* out) noexcept = 0;
  // Transient read failures so far (each a poll of one item that gave no value); any thread.
  virtual uint64_t read_errors() const noexcept = 0;
};

// NVML telemetry for the GPUs an nvml source with these options selects. Throws SourceError like that source.
std::unique_ptr<TelemetryProbe> make_nvml_telemetry(const SourceOptions& options);
// CPU utilization (/proc/stat) and per-policy frequency (cpufreq sysfs); $FASTMETER_PROCFS_ROOT and
// $FASTMETER_SYSFS_CPU_ROOT point it at a fake tree. Never throws: what it cannot read is unavailable().
std::unique_ptr<TelemetryProbe> make_cpu_telemetry();

// The Meter's in-RAM window of telemetry readings, addressed by absolute sequence numbers like SampleRecord:
// bounded by keep_ns (relative to the newest reading) and by max_count, in fixed chunks that are recycled.
// Not thread-safe: the Meter guards it with its mutex.
class TelemetryRecord {
 public:
  static constexpr size_t kChunk = 4096;  // 96 KiB a chunk

  TelemetryRecord(int64_t keep_ns, size_t max_count) noexcept : keep_ns_(keep_ns), max_count_(max_count) {}
  void append(const TelemetryReading& r);
  void trim();  // after a batch of appends
  uint64_t end_seq() const noexcept { return end_seq_; }
  uint64_t first_seq() const noexcept { return first_seq_; }
  size_t kept() const noexcept { return static_cast<size_t>(end_seq_ - first_seq_); }
  // First sequence number at or after first_seq() whose t_ns >= t (end_seq() if none). Readings are in time order.
  uint64_t lower_bound(int64_t t_ns) const noexcept;
  const TelemetryReading& at(uint64_t seq) const noexcept;
  // Oldest t_ns still in RAM; INT64_MAX when empty.
  int64_t first_t_ns() const noexcept;

 private:
  struct Chunk {
    TelemetryReading r[kChunk];
  };
  const int64_t keep_ns_;
  const size_t max_count_;
  std::deque<std::unique_ptr<Chunk>> chunks_;  // chunks_[0] starts at first_seq_ rounded down to kChunk
  std::unique_ptr<Chunk> spare_;
  uint64_t first_seq_ = 0, end_seq_ = 0;
  int64_t newest_t_ns_ = 0;
};

}  // namespace fastmeter
