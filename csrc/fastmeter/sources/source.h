// The one small interface every power/energy source implements.
// A source reports raw values in its own units; turning them into joules happens in integrate.h.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastmeter {

class TelemetryProbe;  // telemetry.h

struct ChannelInfo {
  std::string name;    // "gpu0", "cpu0-package", "cpu0-core", "cpu0-dram", "psys", "synthetic0"
  std::string device;  // human-readable device: "NVIDIA H200 GPU-8f3e...", "intel-rapl:0"
  std::string domain;  // "gpu", "package", "core", "uncore", "dram", "psys", "synthetic"
  bool has_counter = false;     // the source reads a cumulative energy counter for this channel
  double counter_unit_j = 0.0;  // joules per raw counter tick (1e-3 for NVML mJ, 1e-6 for powercap uJ)
  uint64_t counter_range = 0;   // raw counter wraps to 0 at this value; 0 = does not wrap in practice
  bool has_power = false;       // the source reads instantaneous power for this channel
  // A power reading is the mean over this trailing window (NVML instant power: ~25 ms); 0 = truly instantaneous.
  int64_t power_window_ns = 0;
  bool in_total = true;  // false when another channel already covers this energy (subzones, packages under psys)
};

enum ReadingFlags : uint32_t {
  kReadCounter = 1u << 0,  // counter_raw is valid
  kReadPower = 1u << 1,    // power_w is valid
  kReadFailed = 1u << 2,   // the channel failed permanently; error_code says why
  // This poll's read failed transiently (EAGAIN, EIO, a short or garbage read, a value out of range): the poll
  // gives no value and is counted in the channel's read_errors; the channel stays alive.
  kReadSkipped = 1u << 3,
};

struct Reading {
  uint64_t counter_raw = 0;
  double power_w = 0.0;
  uint32_t flags = 0;
  int error_code = 0;  // source-specific (an nvmlReturn_t, an errno)
};

// Why a source cannot be opened. kind: "unavailable" (no hardware/library), "permission", "config".
class SourceError : public std::runtime_error {
 public:
  SourceError(std::string kind, const std::string& what) : std::runtime_error(what), kind_(std::move(kind)) {}
  const std::string& kind() const noexcept { return kind_; }

 private:
  std::string kind_;
};

// Free-form options per source, e.g. {"gpus": "0,2"} for nvml, {"base_w": "150"} for synthetic.
using SourceOptions = std::map<std::string, std::string>;

class Source {
 public:
  virtual ~Source() = default;
  Source() = default;
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;

  virtual const char* name() const noexcept = 0;
  virtual const std::vector<ChannelInfo>& channels() const noexcept = 0;
  // Called from the sampler thread only, once per period: fill out[i] for every channel i.
  // Must not throw and must not block beyond the device's own latency.
  virtual void read(Reading* out) noexcept = 0;
  // Text for an error_code this source put in a Reading. Must be callable from any thread.
  virtual std::string error_text(int error_code) const = 0;
  // What the source left out when it opened (e.g. RAPL zones this user may not read), one line each; empty when
  // it reads everything it found.
  virtual std::vector<std::string> left_out() const { return {}; }
  // Telemetry of the same devices read on the sampler's slower schedule (telemetry.h); nullptr when the source has
  // none. Called once, before the sampler starts; the probe may share the source's device session.
  virtual std::unique_ptr<TelemetryProbe> open_telemetry();  // default (registry.cpp): none
};

// Factories: throw SourceError when the source cannot run here (with the reason and the fix).
std::unique_ptr<Source> make_synthetic_source(const SourceOptions& options);
std::unique_ptr<Source> make_nvml_source(const SourceOptions& options);
std::unique_ptr<Source> make_rapl_source(const SourceOptions& options);
std::unique_ptr<Source> make_msr_source(const SourceOptions& options);

// Registry by name: "nvml", "rapl", "rapl-msr", "synthetic".
const std::vector<std::string>& source_names();
std::unique_ptr<Source> open_source(const std::string& name, const SourceOptions& options);

// Small helpers shared by sources.
std::string option_or(const SourceOptions& options, const std::string& key, const std::string& fallback);
std::string env_or(const char* var, const std::string& fallback);

}  // namespace fastmeter
