// The "rapl-msr" source: CPU energy counters read straight from the RAPL model-specific registers through the
// msr driver, for kernels/containers without powercap. Needs root or CAP_SYS_RAWIO and `modprobe msr`.
//
// Paths (each overridable, so tests point the real code at a fake tree):
//   $FASTMETER_MSR_ROOT        default /dev/cpu                   -> <root>/<cpu>/msr
//   $FASTMETER_SYSFS_CPU_ROOT  default /sys/devices/system/cpu    -> cpu<N>/topology/physical_package_id
//   $FASTMETER_CPUINFO         default /proc/cpuinfo              -> vendor, family, model
// One CPU per package (the lowest-numbered) is read. Each msr file is opened once; a register is read with
// pread(fd, 8 bytes, offset = register), little-endian. A register that reads as unsupported at open (EIO from
// the msr driver, or a short read) is left out.
// Intel: unit 0x606, package 0x611, DRAM 0x619, PP0 "core" 0x639, PP1 "uncore" 0x641, PSYS 0x64D (platform-wide:
// read on the first package only). AMD (and Hygon): unit 0xC0010299, package 0xC001029B, core 0xC001029A.
// AMD's core counter is per core; like the kernel's powercap "core" zone on AMD, "cpu<P>-core" is the energy of
// the package's first core only (in_total is false for core either way).
// Counters are 32-bit (counter_range 2^32) in units of 2^-ESU J, ESU = bits 12:8 of the unit register. On the
// Intel server parts listed in rapl_parse.h, DRAM counts in a fixed 2^-16 J.
// Options: "packages" (as for "rapl"), "vendor" = intel|amd (default: from cpuinfo), "dram_esu" (override the
// DRAM unit exponent).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>

#include <unistd.h>

#include "fastmeter/sources/posix_file.h"
#include "fastmeter/sources/rapl_parse.h"
#include "fastmeter/sources/source.h"

namespace fastmeter {
namespace {

struct Register {
  uint32_t address;
  const char* domain;
};

constexpr uint32_t kIntelUnit = 0x606;
constexpr Register kIntelRegs[] = {{0x611, "package"}, {0x639, "core"}, {0x641, "uncore"}, {0x619, "dram"},
                                   {0x64D, "psys"}};
constexpr uint32_t kAmdUnit = 0xC0010299;
constexpr Register kAmdRegs[] = {{0xC001029B, "package"}, {0xC001029A, "core"}};

// 0 on success, else an errno; a short read (past the end of a plain file) reads as EIO, like an unsupported MSR.
int read_msr(int fd, uint32_t address, uint64_t* value) noexcept {
  unsigned char b[8];
  ssize_t n;
  do {
    n = ::pread(fd, b, sizeof b, static_cast<off_t>(address));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  if (n != static_cast<ssize_t>(sizeof b)) return EIO;
  *value = rapl::le64(b);
  return 0;
}

int parse_option_int(const SourceOptions& o, const std::string& key, int lo, int hi) {
  const std::string v = option_or(o, key, "");
  if (v.empty()) return -1;
  uint64_t x = 0;
  if (!rapl::parse_energy_uj(v, &x) || x < static_cast<uint64_t>(lo) || x > static_cast<uint64_t>(hi))
    throw SourceError("config", "rapl-msr option " + key + "='" + v + "' must be an integer in " +
                                    std::to_string(lo) + ".." + std::to_string(hi));
  return static_cast<int>(x);
}

// Package id -> lowest CPU number in it, from sysfs topology.
std::map<int, int> package_cpus(const std::string& cpu_root) {
  std::vector<std::string> names;
  int err = 0;
  std::map<int, int> out;
  if (!list_dir(cpu_root, &names, &err)) return out;
  for (const auto& n : names) {
    int cpu = -1;
    uint64_t pkg = 0;
    if (!rapl::parse_cpu_dir(n, &cpu)) continue;
    std::string text;
    if (!read_text_file(cpu_root + "/" + n + "/topology/physical_package_id", &text, &err) ||
        !rapl::parse_energy_uj(text, &pkg))
      continue;  // offline CPUs have no topology
    const auto it = out.find(static_cast<int>(pkg));
    if (it == out.end() || cpu < it->second) out[static_cast<int>(pkg)] = cpu;
  }
  return out;
}

class RaplMsrSource final : public Source {
 public:
  explicit RaplMsrSource(const SourceOptions& options) {
    const std::string msr_root = env_or("FASTMETER_MSR_ROOT", "/dev/cpu");
    const std::string cpu_root = env_or("FASTMETER_SYSFS_CPU_ROOT", "/sys/devices/system/cpu");
    const std::string cpuinfo_path = env_or("FASTMETER_CPUINFO", "/proc/cpuinfo");

    std::string cpuinfo;
    int err = 0;
    read_text_file(cpuinfo_path, &cpuinfo, &err);  // optional when "vendor" is given
    std::string vendor = option_or(options, "vendor", "");
    if (vendor.empty()) vendor = rapl::parse_cpu_vendor(cpuinfo);
    if (vendor != "intel" && vendor != "amd")
      throw SourceError(vendor.empty() ? "unavailable" : "config",
                        vendor.empty() ? "rapl-msr: cannot tell the CPU vendor from " + cpuinfo_path +
                                             " (RAPL MSRs exist on Intel and AMD only); pass vendor=intel or "
                                             "vendor=amd if this is one of them"
                                       : "rapl-msr option vendor='" + vendor + "' must be intel or amd");
    const bool intel = vendor == "intel";
    int dram_esu = parse_option_int(options, "dram_esu", 0, 31);
    if (dram_esu < 0 && intel &&
        rapl::intel_dram_fixed_unit(rapl::parse_cpuinfo_int(cpuinfo, "cpu family"),
                                    rapl::parse_cpuinfo_int(cpuinfo, "model")))
      dram_esu = static_cast<int>(rapl::kIntelFixedDramEsu);

    std::map<int, int> pkgs = package_cpus(cpu_root);
    if (pkgs.empty())
      throw SourceError("unavailable", "rapl-msr: no CPU topology under " + cpu_root +
                                           " (cpu<N>/topology/physical_package_id)");
    const std::string sel_text = option_or(options, "packages", "");
    rapl::PackageSelection sel;
    if (!sel_text.empty()) sel = rapl::parse_package_selection(sel_text);
    for (int p : sel.packages)
      if (!pkgs.count(p))
        throw SourceError("config", "rapl-msr: package " + std::to_string(p) + " not found under " + cpu_root);
    const bool want_psys = sel_text.empty() || sel.psys;

    std::vector<std::pair<int, ChannelInfo>> found;  // (index into fds_, channel) before in_total is known
    for (const auto& [pkg, cpu] : pkgs) {
      const bool want_pkg = sel_text.empty() || std::count(sel.packages.begin(), sel.packages.end(), pkg) > 0;
      const bool psys_here = want_psys && pkg == pkgs.begin()->first;  // PSYS is platform-wide: read it once
      if (!want_pkg && !psys_here) continue;
      const std::string path = msr_root + "/" + std::to_string(cpu) + "/msr";
      Fd fd = open_readonly(path, &err);
      if (!fd.ok() && (err == EACCES || err == EPERM))
        throw SourceError("permission", "cannot open " + path + ": " + errno_text(err) +
                                            ". Reading RAPL MSRs needs root or CAP_SYS_RAWIO: run as root, or "
                                            "`sudo setcap cap_sys_rawio=ep <python>` and give read access to "
                                            "/dev/cpu/*/msr; the powercap source \"rapl\" needs less privilege");
      if (!fd.ok())
        throw SourceError("unavailable", "cannot open " + path + ": " + errno_text(err) +
                                             ". Load the msr driver with `sudo modprobe msr`");
      uint64_t unit = 0;
      const uint32_t unit_reg = intel ? kIntelUnit : kAmdUnit;
      if (read_msr(fd.get(), unit_reg, &unit) != 0)
        throw SourceError("unavailable", "rapl-msr: the RAPL unit register " + hex(unit_reg) +
                                             " is not readable on cpu" + std::to_string(cpu) +
                                             ": this CPU has no RAPL (or the vendor is wrong)");
      const unsigned esu = rapl::energy_status_units(unit);
      const std::string prefix = "cpu" + std::to_string(pkg);
      for (const Register& r : intel ? std::vector<Register>(std::begin(kIntelRegs), std::end(kIntelRegs))
                                     : std::vector<Register>(std::begin(kAmdRegs), std::end(kAmdRegs))) {
        const bool psys = std::strcmp(r.domain, "psys") == 0;
        if (psys ? !psys_here : !want_pkg) continue;
        uint64_t v = 0;
        if (read_msr(fd.get(), r.address, &v) != 0) continue;  // not implemented on this CPU
        ChannelInfo c;
        c.domain = r.domain;
        c.name = psys ? "psys" : prefix + "-" + r.domain;
        c.device = "msr " + hex(r.address) + " on cpu" + std::to_string(cpu);
        c.has_counter = true;
        const bool fixed_dram = std::strcmp(r.domain, "dram") == 0 && dram_esu >= 0;
        c.counter_unit_j = std::ldexp(1.0, -static_cast<int>(fixed_dram ? static_cast<unsigned>(dram_esu) : esu));
        c.counter_range = uint64_t{1} << 32;
        found.push_back({static_cast<int>(fds_.size()), c});
        regs_.push_back(r.address);
      }
      fds_.push_back(std::move(fd));
    }
    bool has_psys = false;
    for (const auto& f : found) has_psys = has_psys || f.second.domain == "psys";
    for (auto& f : found) {
      f.second.in_total = rapl::domain_in_total(f.second.domain, has_psys);
      channels_.push_back(f.second);
      channel_fd_.push_back(f.first);
    }
    if (channels_.empty())
      throw SourceError("unavailable", "rapl-msr: no RAPL energy register is readable on the selected packages");
  }

  const char* name() const noexcept override { return "rapl-msr"; }
  const std::vector<ChannelInfo>& channels() const noexcept override { return channels_; }

  void read(Reading* out) noexcept override {
    for (size_t i = 0; i < channels_.size(); ++i) {
      uint64_t v = 0;
      const int err = read_msr(fds_[static_cast<size_t>(channel_fd_[i])].get(), regs_[i], &v);
      out[i].power_w = 0.0;
      out[i].counter_raw = err == 0 ? (v & 0xFFFFFFFFu) : 0;  // the energy field is bits 31:0
      // A short read or EIO is one bad poll (skipped, counted); only a vanished device or revoked access is fatal.
      out[i].flags = err == 0 ? kReadCounter : rapl::read_error_is_fatal(err) ? kReadFailed : kReadSkipped;
      out[i].error_code = err;
    }
  }

  std::string error_text(int error_code) const override {
    return "reading a RAPL MSR failed: " + errno_text(error_code);
  }

 private:
  static std::string hex(uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "0x%X", v);
    return b;
  }

  std::vector<ChannelInfo> channels_;
  std::vector<Fd> fds_;          // one per package CPU
  std::vector<int> channel_fd_;  // channel -> index into fds_
  std::vector<uint32_t> regs_;   // channel -> register address
};

}  // namespace

std::unique_ptr<Source> make_msr_source(const SourceOptions& options) {
  return std::make_unique<RaplMsrSource>(options);
}

}  // namespace fastmeter
