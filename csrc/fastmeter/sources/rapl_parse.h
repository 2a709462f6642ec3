// Pure parsers shared by the RAPL sources (powercap sysfs and MSR): text and register values in, facts out.
// No I/O here, so every rule is testable on its own.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fastmeter {
namespace rapl {

// Content of a powercap `energy_uj` / `max_energy_range_uj` file: one decimal integer, optional surrounding
// whitespace (the kernel appends '\n'). False on anything else, including overflow.
bool parse_energy_uj(std::string_view text, uint64_t* energy_uj) noexcept;

// Whether a failed read of an energy counter (powercap energy_uj or an MSR), with this errno, means the counter is
// gone for good: the device or driver went away (ENODEV, ENXIO, ENOENT, EBADF) or access was revoked (EACCES,
// EPERM), or the file is not a counter (EISDIR, EOPNOTSUPP). Anything else (EAGAIN, EIO, EBUSY, a garbage read
// reported as EBADMSG) is one bad poll: skip it and read again next period.
bool read_error_is_fatal(int err) noexcept;

// A powercap zone directory name: "intel-rapl:N" (top level), "intel-rapl:N:M" (subzone), and the same with
// the "intel-rapl-mmio" prefix. sub is -1 for a top-level zone.
struct ZoneDir {
  bool mmio = false;
  int index = -1;
  int sub = -1;
};
bool parse_zone_dir(const std::string& dir_name, ZoneDir* out);

// A package zone's `name`: "package-P" or, on parts with several dies per package, "package-P-die-D" (die -1
// when absent). False for any other name ("psys", ...).
struct PackageName {
  int package = -1;
  int die = -1;
};
bool parse_package_name(const std::string& zone_name, PackageName* out);

// A sysfs CPU directory name "cpu<N>" (digits only after "cpu"; "cpufreq", "cpuidle" are not CPUs).
bool parse_cpu_dir(const std::string& dir_name, int* cpu);

// Channel-name prefix of a package: "cpu0", or "cpu0-die1" when the package has several dies.
std::string cpu_prefix(const PackageName& p);

// The "packages" option: comma-separated package ids and/or "psys", e.g. "0,1" or "0,psys". Spaces allowed.
// Throws SourceError("config") on an empty item or one that is neither a non-negative integer nor "psys".
struct PackageSelection {
  std::vector<int> packages;
  bool psys = false;
};
PackageSelection parse_package_selection(const std::string& text);

// Whether a RAPL domain's energy counts toward the machine total, so that each physical quantity counts once:
// core/uncore (and any other subzone) lie inside their package; a psys zone covers the packages and DRAM.
bool domain_in_total(const std::string& domain, bool has_psys);

// Energy Status Units of a RAPL power-unit register (Intel MSR 0x606, AMD 0xC0010299): bits 12:8.
// One counter tick is 2^-ESU joules.
unsigned energy_status_units(uint64_t unit_register);

// Little-endian 64-bit value of 8 bytes as the msr driver returns them.
uint64_t le64(const unsigned char* bytes);

// From /proc/cpuinfo text: "intel" (GenuineIntel), "amd" (AuthenticAMD, HygonGenuine: same RAPL MSRs), or "".
std::string parse_cpu_vendor(const std::string& cpuinfo);
// The first "key : <integer>" field of /proc/cpuinfo text (e.g. "cpu family", "model"); -1 when absent.
int parse_cpuinfo_int(const std::string& cpuinfo, const std::string& key);

// Intel server parts whose DRAM domain counts in a fixed 2^-16 J unit regardless of MSR 0x606 (the kernel's
// list: Haswell-X, Broadwell-X/-DE, Skylake-X, Ice Lake-X/-D, Sapphire/Emerald Rapids, Xeon Phi).
bool intel_dram_fixed_unit(int family, int model);
constexpr unsigned kIntelFixedDramEsu = 16;

}  // namespace rapl
}  // namespace fastmeter
