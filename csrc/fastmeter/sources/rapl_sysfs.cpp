// The "rapl" source: CPU energy counters from the Linux powercap sysfs tree.
//
// Root: $FASTMETER_POWERCAP_ROOT, default /sys/class/powercap (tests point it at a fake tree). Zones:
//   intel-rapl:N      top level, `name` "package-P" (or "package-P-die-D") or "psys"
//   intel-rapl:N:M    subzone of intel-rapl:N, `name` "core", "uncore" or "dram"
//   intel-rapl-mmio:* the same packages through MMIO; used only for packages intel-rapl does not already show.
// Channels: "cpu<P>-package", "cpu<P>-core", "cpu<P>-uncore", "cpu<P>-dram", "psys" ("cpu<P>-die<D>-..." on
// multi-die parts); domain = zone kind, device = zone directory name. Each energy_uj file is opened once and
// re-read with pread(fd, ..., 0) every poll: sysfs regenerates the text on each read at offset 0.
// A zone's `enabled` file is deliberately ignored: it reports the PL1 power *limit* enable bit, and the energy
// counter of a zone with enabled=0 (common for dram and core) counts all the same.
// Option "packages": comma list of package ids and/or "psys" selecting what to read (default: everything).
// Option "skip_denied" = "1" (auto mode): a zone whose energy_uj this user may not read is left out and named in
// left_out() instead of failing the whole source, so e.g. dram is still measured when the package zone is denied.
// A failed poll is classified by rapl::read_error_is_fatal: a transient one (EAGAIN, EIO, garbage, a value above
// max_energy_range_uj, which would otherwise be added as a huge delta) is skipped and counted by the sampler.
#include <algorithm>
#include <cerrno>
#include <map>
#include <set>
#include <tuple>

#include <unistd.h>

#include "fastmeter/sources/posix_file.h"
#include "fastmeter/sources/rapl_parse.h"
#include "fastmeter/sources/source.h"

namespace fastmeter {
namespace {

struct Zone {
  std::string dir;   // "intel-rapl:0:1"
  rapl::ZoneDir id;  // parsed dir name
  std::string name;  // content of `name`
  std::string prefix;  // "cpu0" for package zones and their subzones, "" for psys
  int package = -1;    // package id, -1 for psys
};

std::string read_name(const std::string& dir) {
  std::string text;
  int err = 0;
  if (!read_text_file(dir + "/name", &text, &err)) return "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// All zones under root, ordered intel-rapl before intel-rapl-mmio, then by index; duplicates and unknown
// top-level zones left out; subzones carry the prefix of their package.
std::vector<Zone> discover(const std::string& root) {
  std::vector<std::string> names;
  int err = 0;
  std::vector<Zone> all;
  if (list_dir(root, &names, &err)) {
    for (const auto& n : names) {
      Zone z;
      if (!rapl::parse_zone_dir(n, &z.id)) continue;
      z.dir = n;
      z.name = read_name(root + "/" + n);
      all.push_back(z);
    }
  }
  std::sort(all.begin(), all.end(), [](const Zone& a, const Zone& b) {
    return std::make_tuple(a.id.mmio, a.id.index, a.id.sub) < std::make_tuple(b.id.mmio, b.id.index, b.id.sub);
  });
  std::map<std::pair<bool, int>, const Zone*> parents;  // (mmio, index) -> kept top-level zone
  std::set<std::string> package_names;                  // "package-0" seen through intel-rapl already
  std::vector<Zone> kept;
  for (auto& z : all) {
    if (z.id.sub >= 0) continue;
    rapl::PackageName p;
    if (z.name == "psys") {
      z.prefix.clear();
    } else if (rapl::parse_package_name(z.name, &p)) {
      if (!package_names.insert(z.name).second) continue;  // an MMIO view of a package already read
      z.prefix = rapl::cpu_prefix(p);
      z.package = p.package;
    } else {
      continue;  // not a RAPL energy domain we know how to place in the totals
    }
    kept.push_back(z);
  }
  for (const auto& z : kept) parents[{z.id.mmio, z.id.index}] = &z;
  std::vector<Zone> out = kept;
  for (auto& z : all) {
    if (z.id.sub < 0 || z.name.empty()) continue;
    const auto it = parents.find({z.id.mmio, z.id.index});
    if (it == parents.end() || it->second->package < 0) continue;
    z.prefix = it->second->prefix;
    z.package = it->second->package;
    out.push_back(z);
  }
  std::stable_sort(out.begin(), out.end(), [](const Zone& a, const Zone& b) {
    return std::make_tuple(a.package < 0, a.package, a.id.sub) < std::make_tuple(b.package < 0, b.package, b.id.sub);
  });
  return out;
}

class RaplSysfsSource final : public Source {
 public:
  explicit RaplSysfsSource(const SourceOptions& options) {
    const std::string root = env_or("FASTMETER_POWERCAP_ROOT", "/sys/class/powercap");
    std::vector<Zone> zones = discover(root);
    if (zones.empty())
      throw SourceError("unavailable", "no powercap RAPL zones (intel-rapl:*) under " + root +
                                           ": the kernel's intel_rapl driver is not loaded (sudo modprobe "
                                           "intel_rapl_msr) or, inside a container, /sys/class/powercap is often "
                                           "hidden; run on the host or bind-mount /sys/devices/virtual/powercap");
    const std::string sel_text = option_or(options, "packages", "");
    if (!sel_text.empty()) zones = select(zones, rapl::parse_package_selection(sel_text), root);

    bool has_psys = false;
    for (const auto& z : zones) has_psys = has_psys || z.package < 0;
    int psys_count = 0;
    const bool skip_denied = option_or(options, "skip_denied", "") == "1";
    std::string first_denied;
    for (const auto& z : zones) {
      std::string denied = open_zone(root, z, has_psys, &psys_count);
      if (denied.empty()) continue;
      if (!skip_denied) throw SourceError("permission", denied);
      if (first_denied.empty()) first_denied = denied;
      left_out_.push_back(z.dir + " (" + z.name + "): " + denied);
    }
    if (channels_.empty() && !first_denied.empty()) throw SourceError("permission", first_denied);
    if (channels_.empty())
      throw SourceError("unavailable", "powercap RAPL zones under " + root + " have no readable energy_uj counter");
  }

  const char* name() const noexcept override { return "rapl"; }
  const std::vector<ChannelInfo>& channels() const noexcept override { return channels_; }

  void read(Reading* out) noexcept override {
    for (size_t i = 0; i < fds_.size(); ++i) {
      uint64_t v = 0;
      int err = read_counter(fds_[i].get(), &v);
      const uint64_t range = channels_[i].counter_range;
      if (err == 0 && range > 0 && v > range) err = ERANGE;
      out[i].power_w = 0.0;
      out[i].counter_raw = err == 0 ? v : 0;
      out[i].error_code = err;
      out[i].flags = err == 0 ? kReadCounter : rapl::read_error_is_fatal(err) ? kReadFailed : kReadSkipped;
    }
  }

  std::string error_text(int error_code) const override {
    if (error_code == ERANGE) return "a powercap energy_uj value above its max_energy_range_uj";
    if (error_code == EBADMSG) return "a powercap energy_uj read that is not a number (short or garbage)";
    return "reading a powercap energy_uj file failed: " + errno_text(error_code);
  }

  std::vector<std::string> left_out() const override { return left_out_; }

 private:
  // 0 on success, else an errno (EBADMSG when the text is not a number).
  static int read_counter(int fd, uint64_t* v) noexcept {
    char buf[32];
    ssize_t n;
    do {
      n = ::pread(fd, buf, sizeof buf - 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno;
    return rapl::parse_energy_uj(std::string_view(buf, static_cast<size_t>(n)), v) ? 0 : EBADMSG;
  }

  static std::vector<Zone> select(const std::vector<Zone>& zones, const rapl::PackageSelection& sel,
                                  const std::string& root) {
    std::vector<Zone> out;
    std::set<int> present;
    bool psys_present = false;
    for (const auto& z : zones) {
      if (z.package >= 0) present.insert(z.package);
      psys_present = psys_present || z.package < 0;
    }
    std::string avail;
    for (int p : present) avail += (avail.empty() ? "" : ", ") + std::to_string(p);
    if (psys_present) avail += std::string(avail.empty() ? "" : ", ") + "psys";
    for (int p : sel.packages)
      if (!present.count(p))
        throw SourceError("config", "rapl package " + std::to_string(p) + " not found under " + root +
                                        "; available: " + avail);
    if (sel.psys && !psys_present)
      throw SourceError("config", "rapl: no psys zone under " + root + "; available: " + avail);
    for (const auto& z : zones) {
      const bool want = z.package < 0 ? sel.psys
                                      : std::find(sel.packages.begin(), sel.packages.end(), z.package) !=
                                            sel.packages.end();
      if (want) out.push_back(z);
    }
    return out;
  }

  // Opens one zone's counter and adds its channel. Returns the permission message when this user may not read
  // it (the caller decides whether that fails the source), "" otherwise.
  std::string open_zone(const std::string& root, const Zone& z, bool has_psys, int* psys_count) {
    const std::string dir = root + "/" + z.dir;
    const std::string file = dir + "/energy_uj";
    int err = 0;
    Fd fd = open_readonly(file, &err);
    if (!fd.ok() && (err == EACCES || err == EPERM))
      return "cannot read " + file + ": " + errno_text(err) +
             ". Since CVE-2020-8694 the kernel makes RAPL energy_uj readable by root only. Fix: run "
             "as root, or grant read access with `sudo chmod o+r " + file +
             "` (for every intel-rapl zone; resets at boot, so make it permanent with a udev rule "
             "or a systemd-tmpfiles entry)";
    if (!fd.ok()) return "";  // this zone has no energy counter (some MMIO zones only carry power limits)
    uint64_t first = 0;
    if (read_counter(fd.get(), &first) != 0) return "";  // the counter exists but this CPU does not implement it
    std::string range_text;
    uint64_t range = 0;
    if (!read_text_file(dir + "/max_energy_range_uj", &range_text, &err) ||
        !rapl::parse_energy_uj(range_text, &range))
      throw SourceError("unavailable", "cannot read " + dir + "/max_energy_range_uj, needed to undo counter "
                                       "wraparound; the powercap tree under " + root + " looks incomplete");
    ChannelInfo c;
    if (z.package < 0) {
      c.domain = "psys";
      c.name = *psys_count == 0 ? "psys" : "psys" + std::to_string(*psys_count);
      ++*psys_count;
    } else {
      c.domain = z.id.sub < 0 ? "package" : z.name;
      c.name = z.prefix + "-" + c.domain;
    }
    c.device = z.dir;
    c.has_counter = true;
    c.counter_unit_j = 1e-6;
    // energy_uj runs over [0, max_energy_range_uj]; after a wrap, delta = cur + max_energy_range_uj - prev
    // (integrate.cpp counter_delta). The true modulus is one raw tick (~15-61 uJ) more: negligible per wrap.
    c.counter_range = range;
    c.in_total = rapl::domain_in_total(c.domain, has_psys);
    channels_.push_back(c);
    fds_.push_back(std::move(fd));
    return "";
  }

  std::vector<ChannelInfo> channels_;
  std::vector<Fd> fds_;
  std::vector<std::string> left_out_;  // "intel-rapl:0 (package-0): cannot read ..."
};

}  // namespace

std::unique_ptr<Source> make_rapl_source(const SourceOptions& options) {
  return std::make_unique<RaplSysfsSource>(options);
}

}  // namespace fastmeter
