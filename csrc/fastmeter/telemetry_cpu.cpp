// CPU telemetry: whole-system utilization from the first line of /proc/stat and the current frequency of each
// cpufreq policy. Files are opened once and re-read with pread, as the RAPL source does.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <limits>
#include <string_view>

#include "fastmeter/sources/posix_file.h"
#include "fastmeter/telemetry.h"
#include "fastmeter/telemetry_parse.h"

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
      const ssize_t n = reread(fd, buf, sizeof buf);
      const double mhz = n > 0 ? parse_cpufreq_mhz(std::string_view(buf, static_cast<size_t>(n))) : kNaN;
      if (std::isnan(mhz)) errors_.fetch_add(1, std::memory_order_relaxed);
      out[k++] = mhz;
    }
  }

 private:
  // Busy share of all CPU time since the previous poll (telemetry_parse.h). NaN on the first poll (no previous)
  // and when no tick passed, which is not a read error.
  double utilization(char* buf, size_t cap) noexcept {
    const ssize_t n = reread(stat_, buf, cap);
    CpuTicks cur;
    if (n <= 0 || !parse_proc_stat_cpu(std::string_view(buf, static_cast<size_t>(n)), &cur)) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return kNaN;
    }
    const double out = have_prev_ ? cpu_busy_pct(prev_, cur) : kNaN;
    have_prev_ = true;
    prev_ = cur;
    return out;
  }

  Fd stat_;
  std::vector<Fd> freq_;
  std::vector<TelemetrySeries> series_;
  std::vector<std::string> unavailable_;
  std::atomic<uint64_t> errors_{0};
  bool have_prev_ = false;
  CpuTicks prev_;
};

}  // namespace

std::unique_ptr<TelemetryProbe> make_cpu_telemetry() { return std::make_unique<CpuTelemetry>(); }

}  // namespace fastmeter
