// Pure parsers of the CPU telemetry (telemetry_cpu.cpp): text in, numbers out, no I/O, so every rule is testable
// and has a Python twin written from the same specification (fastmeter.reference.cpu_telemetry).
#pragma once
#include <cstdint>
#include <string_view>

namespace fastmeter {

// The aggregate "cpu " line of /proc/stat: busy and total ticks. total = user + nice + system + idle + iowait +
// irq + softirq + steal (guest and guest_nice are already counted inside user and nice); busy = total - idle -
// iowait. At least the first four fields must be present (older kernels have fewer); false on anything else.
struct CpuTicks {
  uint64_t busy = 0, total = 0;
};
bool parse_proc_stat_cpu(std::string_view text, CpuTicks* out) noexcept;

// Busy share in percent between two readings: 100 * (busy delta) / (total delta). NaN when no tick passed or the
// counters went backwards (a reset: no honest value for this interval).
double cpu_busy_pct(const CpuTicks& prev, const CpuTicks& cur) noexcept;

// A cpufreq `scaling_cur_freq` (kHz, one decimal integer and optional whitespace) in MHz; NaN on anything else.
double parse_cpufreq_mhz(std::string_view text) noexcept;

}  // namespace fastmeter
