// CPU telemetry: whole-system utilization from the first line of /proc/stat and the current frequency of each
// cpufreq policy. Files are opened once and re-read with pread, as the RAPL source does.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <atomic>

#include "fastmeter/sources/posix_file.h"
#include "fastmeter/telemetry.h"

namespace fastmeter {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Re-reads an open file from offset 0 into buf; the text length, or -1.
ssize_t reread(const Fd& fd, char* buf, size_t cap) {
  ssize_t n;
  do n = pread(fd.get(), buf, cap - 1, 0);
  while (n < 0 && errno == EINTR);
  if (n >= 0) buf[n] = '\0';
  return n;
}

class CpuTelemetry final : public TelemetryProbe {
 public:
  CpuTelemetry() {
    const std::string proc = env_or("FASTMETER_PROCFS_ROOT", "/proc");
    const std::string cpu_root = env_or("FASTMETER_SYSFS_CPU_ROOT", "/sys/devices/system/cpu");
    int err = 0;
    stat_ = open_readonly(proc + "/stat", &err);
    if (stat_.ok()) series_.push_back({"cpu", "util_pct"});
    else unavailable_.push_back("cpu util_pct: cannot read " + proc + "/stat (" + errno_text(err) + ")");
    std::vector<std::string> names;
    const std::string freq_dir = cpu_root + "/cpufreq";
    if (!list_dir(freq_dir, &names, &err)) {
      unavailable_.push_back("cpu freq_mhz: no " + freq_dir + " (" + errno_text(err) + "); no cpufreq driver here");
      return;
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      if (n.rfind("policy", 0) != 0) continue;
      const std::string path = freq_dir + "/" + n + "/scaling_cur_freq";
      Fd fd = open_readonly(path, &err);
      if (!fd.ok()) {
        unavailable_.push_back("cpu-" + n + " freq_mhz: cannot read " + path + " (" + errno_text(err) + ")");
        continue;
      }
      freq_.push_back(std::move(fd));
      series_.push_back({"cpu-" + n, "freq_mhz"});
    }
    if (freq_.empty() && names.size() == 0)
      unavailable_.push_back("cpu freq_mhz: " + freq_dir + " lists no policy; no cpufreq driver here");
  }

  const std::vector<TelemetrySeries>& series() const noexcept override { return series_; }
  const std::vector<std::string>& unavailable() const noexcept override { return unavailable_; }
  uint64_t read_errors() const noexcept override { return errors_.load(std::memory_order_relaxed); }

  void read(double* out) noexcept override {
    size_t k = 0;
    char buf[512];
    if (stat_.ok()) out[k++] = utilization(buf, sizeof buf);
    for (const Fd& fd : freq_) {
      char* end = nullptr;
      const double khz = reread(fd, buf, sizeof buf) > 0 ? std::strtod(buf, &end) : kNaN;
      const bool ok = end != nullptr && end != buf && std::isfinite(khz) && khz >= 0;
      if (!ok) errors_.fetch_add(1, std::memory_order_relaxed);
      out[k++] = ok ? khz * 1e-3 : kNaN;
    }
  }

 private:
  // Busy share of all CPU time since the previous poll: (total - idle - iowait) / total over the "cpu" line's
  // counters. NaN on the first poll (no previous) and when no tick passed.
  double utilization(char* buf, size_t cap) noexcept {
    if (reread(stat_, buf, cap) < 5 || buf[0] != 'c' || buf[1] != 'p' || buf[2] != 'u' || buf[3] != ' ') {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return kNaN;
    }
    const char* p = buf + 4;
    unsigned long long v[10] = {};
    int n = 0;
    for (; n < 10; ++n) {
      char* end = nullptr;
      v[n] = std::strtoull(p, &end, 10);
      if (end == p) break;
      p = end;
    }
    if (n < 4) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return kNaN;
    }
    // user nice system idle iowait irq softirq steal (guest and guest_nice are already inside user and nice).
    unsigned long long total = 0;
    for (int i = 0; i < std::min(n, 8); ++i) total += v[i];
    const unsigned long long idle = v[3] + (n > 4 ? v[4] : 0);
    const double out = have_prev_ && total > prev_total_
                           ? 100.0 * (1.0 - static_cast<double>(idle - prev_idle_) /
                                                static_cast<double>(total - prev_total_))
                           : kNaN;
    have_prev_ = true;
    prev_total_ = total;
    prev_idle_ = idle;
    return out;
  }

  Fd stat_;
  std::vector<Fd> freq_;
  std::vector<TelemetrySeries> series_;
  std::vector<std::string> unavailable_;
  std::atomic<uint64_t> errors_{0};
  bool have_prev_ = false;
  unsigned long long prev_total_ = 0, prev_idle_ = 0;
};

}  // namespace

std::unique_ptr<TelemetryProbe> make_cpu_telemetry() { return std::make_unique<CpuTelemetry>(); }

}  // namespace fastmeter
