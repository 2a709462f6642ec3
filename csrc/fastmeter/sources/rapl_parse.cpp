#include "fastmeter/sources/rapl_parse.h"

#include <cctype>
#include <cerrno>
#include <limits>

#include "fastmeter/sources/source.h"

namespace fastmeter {
namespace rapl {
namespace {

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim_view(std::string_view s) noexcept {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string trim(const std::string& s) { return std::string(trim_view(s)); }

// Digits only, no sign, no overflow.
bool parse_u64_exact(std::string_view s, uint64_t* out) noexcept {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool parse_int_exact(const std::string& s, int* out) {
  uint64_t v = 0;
  if (!parse_u64_exact(s, &v) || v > static_cast<uint64_t>(std::numeric_limits<int>::max())) return false;
  *out = static_cast<int>(v);
  return true;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Value of the first "key<spaces/tabs>: value" line of /proc/cpuinfo text, "" when absent.
std::string cpuinfo_field(const std::string& cpuinfo, const std::string& key) {
  size_t pos = 0;
  while (pos < cpuinfo.size()) {
    size_t eol = cpuinfo.find('\n', pos);
    if (eol == std::string::npos) eol = cpuinfo.size();
    const std::string line = cpuinfo.substr(pos, eol - pos);
    const size_t colon = line.find(':');
    if (colon != std::string::npos && trim(line.substr(0, colon)) == key) return trim(line.substr(colon + 1));
    pos = eol + 1;
  }
  return "";
}

}  // namespace

bool parse_energy_uj(std::string_view text, uint64_t* energy_uj) noexcept {
  return parse_u64_exact(trim_view(text), energy_uj);
}

bool read_error_is_fatal(int err) noexcept {
  switch (err) {
    case ENODEV:
    case ENXIO:
    case ENOENT:
    case EBADF:
    case EACCES:
    case EPERM:
    case EISDIR:
    case EOPNOTSUPP:
      return true;
    default:
      return false;
  }
}

bool parse_zone_dir(const std::string& dir_name, ZoneDir* out) {
  ZoneDir z;
  std::string rest;
  if (starts_with(dir_name, "intel-rapl-mmio:")) {
    z.mmio = true;
    rest = dir_name.substr(16);
  } else if (starts_with(dir_name, "intel-rapl:")) {
    rest = dir_name.substr(11);
  } else {
    return false;
  }
  const size_t colon = rest.find(':');
  if (!parse_int_exact(rest.substr(0, colon), &z.index)) return false;
  if (colon != std::string::npos && !parse_int_exact(rest.substr(colon + 1), &z.sub)) return false;
  *out = z;
  return true;
}

bool parse_package_name(const std::string& zone_name, PackageName* out) {
  const std::string name = trim(zone_name);
  if (!starts_with(name, "package-")) return false;
  const std::string rest = name.substr(8);
  const size_t die = rest.find("-die-");
  PackageName p;
  if (!parse_int_exact(rest.substr(0, die), &p.package)) return false;
  if (die != std::string::npos && !parse_int_exact(rest.substr(die + 5), &p.die)) return false;
  *out = p;
  return true;
}

bool parse_cpu_dir(const std::string& dir_name, int* cpu) {
  return starts_with(dir_name, "cpu") && parse_int_exact(dir_name.substr(3), cpu);
}

std::string cpu_prefix(const PackageName& p) {
  std::string s = "cpu" + std::to_string(p.package);
  if (p.die >= 0) s += "-die" + std::to_string(p.die);
  return s;
}

PackageSelection parse_package_selection(const std::string& text) {
  PackageSelection sel;
  size_t pos = 0;
  while (true) {
    const size_t comma = text.find(',', pos);
    const std::string item = trim(text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    int id = -1;
    if (item == "psys") {
      sel.psys = true;
    } else if (parse_int_exact(item, &id)) {
      sel.packages.push_back(id);
    } else {
      throw SourceError("config", "packages option '" + text + "': item '" + item +
                                      "' is not a package id (0, 1, ...) or 'psys'; example: packages=\"0,1\"");
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return sel;
}

bool domain_in_total(const std::string& domain, bool has_psys) {
  if (domain == "psys") return true;
  if (domain == "package" || domain == "dram") return !has_psys;
  return false;
}

unsigned energy_status_units(uint64_t unit_register) { return static_cast<unsigned>((unit_register >> 8) & 0x1f); }

uint64_t le64(const unsigned char* bytes) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | bytes[i];
  return v;
}

std::string parse_cpu_vendor(const std::string& cpuinfo) {
  const std::string v = cpuinfo_field(cpuinfo, "vendor_id");
  if (v == "GenuineIntel") return "intel";
  if (v == "AuthenticAMD" || v == "HygonGenuine") return "amd";
  return "";
}

int parse_cpuinfo_int(const std::string& cpuinfo, const std::string& key) {
  int v = -1;
  return parse_int_exact(cpuinfo_field(cpuinfo, key), &v) ? v : -1;
}

bool intel_dram_fixed_unit(int family, int model) {
  if (family != 6) return false;
  switch (model) {
    case 0x3F:  // Haswell-X
    case 0x4F:  // Broadwell-X
    case 0x56:  // Broadwell-DE
    case 0x55:  // Skylake-X / Cascade Lake / Cooper Lake
    case 0x6A:  // Ice Lake-X
    case 0x6C:  // Ice Lake-D
    case 0x8F:  // Sapphire Rapids
    case 0xCF:  // Emerald Rapids
    case 0xAD:  // Granite Rapids-X
    case 0xAF:  // Sierra Forest
    case 0x57:  // Xeon Phi Knights Landing
    case 0x85:  // Xeon Phi Knights Mill
      return true;
    default:
      return false;
  }
}

}  // namespace rapl
}  // namespace fastmeter
