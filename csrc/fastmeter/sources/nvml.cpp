// The NVML source: one channel per selected GPU, read through libnvidia-ml loaded with dlopen.
//
// Options: "gpus" = comma list of NVML indices or UUIDs (absent/empty = all GPUs).
// Library: $FASTMETER_NVML_LIBRARY if set, else libnvidia-ml.so.1 through the dynamic loader.
// Per poll and GPU: one nvmlDeviceGetFieldValues call for the fields that worked when the source opened
// (83 energy counter, 186 instant power, 185 one-second average power); the older single-value calls
// (nvmlDeviceGetTotalEnergyConsumption, nvmlDeviceGetPowerUsage) stand in for whatever the fields lack.
#include <dlfcn.h>

#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "fastmeter/sources/nvml_api.h"
#include "fastmeter/sources/nvml_library.h"
#include "fastmeter/sources/source.h"
#include "fastmeter/telemetry.h"

namespace fastmeter {
namespace {

using namespace nvml;

// The energy counter without rounding through a double when it is an integer type (mJ counters exceed 2^53
// only after ~285 years at 1 kW, but exactness costs nothing).
bool field_as_counter(const FieldValue& f, uint64_t* out) {
  if (f.valueType == kULongLong) return *out = f.value.ullVal, true;
  if (f.valueType == kULong) return *out = f.value.ulVal, true;
  double d = 0;
  if (!field_as_double(f, &d)) return false;
  *out = static_cast<uint64_t>(d);
  return true;
}

struct Gpu {
  Device dev = nullptr;
  unsigned int index = 0;
  std::string name, uuid;
  std::vector<unsigned int> fields;  // requested each poll, in order: subset of 83, 186, 185
  bool energy_call = false;          // counter from nvmlDeviceGetTotalEnergyConsumption
  bool power_call = false;           // power from nvmlDeviceGetPowerUsage
  bool failed = false;               // a permanent error ended this channel; error holds it
  Return error = kSuccess;
};

std::string gpu_label(const Gpu& g) { return std::to_string(g.index) + " (" + g.name + " " + g.uuid + ")"; }

std::string text_of(Return (*fn)(Device, char*, unsigned int), Device dev) {
  char buf[96] = {};
  return fn(dev, buf, sizeof buf) == kSuccess ? std::string(buf) : std::string("unknown");
}

std::vector<size_t> select_gpus(const std::vector<Gpu>& all, const std::string& spec) {
  std::string valid;
  for (const auto& g : all) valid += "\n  " + gpu_label(g);
  std::vector<size_t> chosen;
  std::set<size_t> seen;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t end = spec.find(',', start);
    if (end == std::string::npos) end = spec.size();
    std::string tok = spec.substr(start, end - start);
    tok.erase(0, tok.find_first_not_of(" \t"));
    tok.erase(tok.find_last_not_of(" \t") + 1);
    start = end + 1;
    if (tok.empty()) continue;
    size_t pick = all.size();
    const bool numeric = tok.find_first_not_of("0123456789") == std::string::npos;
    const long long index = numeric && tok.size() <= 9 ? std::stoll(tok) : -1;
    for (size_t i = 0; i < all.size(); ++i)
      if (numeric ? static_cast<long long>(all[i].index) == index : all[i].uuid == tok) pick = i;
    if (pick == all.size())
      throw SourceError("config", "nvml option gpus: no GPU '" + tok + "'; use indices or UUIDs of:" + valid);
    if (!seen.insert(pick).second) throw SourceError("config", "nvml option gpus lists GPU '" + tok + "' twice");
    chosen.push_back(pick);
  }
  if (chosen.empty())
    for (size_t i = 0; i < all.size(); ++i) chosen.push_back(i);
  return chosen;
}

class NvmlSource final : public Source {
 public:
  explicit NvmlSource(const SourceOptions& options) : lib_(std::make_shared<const Library>(env_or(kLibraryEnv, "libnvidia-ml.so.1"))) {
    for (const auto& kv : options)
      if (kv.first != "gpus") throw SourceError("config", "nvml has no option '" + kv.first + "'; valid: gpus");
    const Api& api = lib_->api();
    unsigned int count = 0;
    Return rc = api.DeviceGetCount_v2(&count);
    if (rc != kSuccess) throw SourceError("unavailable", "nvmlDeviceGetCount_v2 failed: " + lib_->describe(rc));
    if (count == 0) throw SourceError("unavailable", "NVML reports no GPUs; check `nvidia-smi`");
    std::vector<Gpu> all(count);
    for (unsigned int i = 0; i < count; ++i) {
      all[i].index = i;
      rc = api.DeviceGetHandleByIndex_v2(i, &all[i].dev);
      if (rc != kSuccess)
        throw SourceError("unavailable", "cannot open GPU " + std::to_string(i) + ": " + lib_->describe(rc) +
                                             "; or leave it out with the nvml option gpus");
      all[i].name = text_of(api.DeviceGetName, all[i].dev);
      all[i].uuid = text_of(api.DeviceGetUUID, all[i].dev);
    }
    for (size_t i : select_gpus(all, option_or(options, "gpus", ""))) gpus_.push_back(all[i]);
    for (auto& g : gpus_) {
      plan(g);
      ChannelInfo c;
      c.name = "gpu" + std::to_string(g.index);
      c.device = g.name + " " + g.uuid;
      c.domain = "gpu";
      c.has_counter = energy_slot(g) >= 0 || g.energy_call;
      c.counter_unit_j = 1e-3;
      c.counter_range = 0;
      c.has_power = g.power_call || power_slot(g, kFieldPowerInstant) >= 0 || power_slot(g, kFieldPowerAverage) >= 0;
      // FACTS.md: instant power (field 186) averages ~25 ms on A100/H100; field 185 and PowerUsage average 1 s.
      c.power_window_ns = power_slot(g, kFieldPowerInstant) >= 0 ? 25'000'000 : 1'000'000'000;
      channels_.push_back(c);
    }
    buf_.resize(3);
  }

  const char* name() const noexcept override { return "nvml"; }
  const std::vector<ChannelInfo>& channels() const noexcept override { return channels_; }

  void read(Reading* out) noexcept override {
    for (size_t k = 0; k < gpus_.size(); ++k) read_gpu(gpus_[k], &out[k]);
  }

  std::string error_text(int code) const override { return lib_->describe(code); }

  std::unique_ptr<TelemetryProbe> open_telemetry() override {
    std::vector<TelemetryGpu> gpus;
    for (const auto& g : gpus_) gpus.push_back({g.dev, g.index});
    return make_telemetry(lib_, std::move(gpus));
  }

 private:
  static int slot_of(const Gpu& g, unsigned int field) {
    for (size_t i = 0; i < g.fields.size(); ++i)
      if (g.fields[i] == field) return static_cast<int>(i);
    return -1;
  }
  static int energy_slot(const Gpu& g) { return slot_of(g, kFieldTotalEnergy); }
  static int power_slot(const Gpu& g, unsigned int field) { return slot_of(g, field); }

  // Decide once, at open, how to read this GPU: which fields answer, and which single calls fill the gaps.
  void plan(Gpu& g) {
    const Api& api = lib_->api();
    const unsigned int wanted[3] = {kFieldTotalEnergy, kFieldPowerInstant, kFieldPowerAverage};
    Return rc = kFunctionNotFound;
    if (api.DeviceGetFieldValues != nullptr) {
      FieldValue probe[3] = {};
      for (int i = 0; i < 3; ++i) probe[i].fieldId = wanted[i];
      rc = api.DeviceGetFieldValues(g.dev, 3, probe);
      double v = 0;
      for (int i = 0; rc == kSuccess && i < 3; ++i)
        if (probe[i].nvmlReturn == kSuccess && field_as_double(probe[i], &v)) g.fields.push_back(wanted[i]);
    }
    if (rc != kSuccess && rc != kNotSupported && rc != kFunctionNotFound) fail_open(g, rc);
    unsigned long long mj = 0;
    unsigned int mw = 0;
    if (energy_slot(g) < 0 && api.DeviceGetTotalEnergyConsumption != nullptr) {
      rc = api.DeviceGetTotalEnergyConsumption(g.dev, &mj);
      if (rc != kSuccess && rc != kNotSupported) fail_open(g, rc);
      g.energy_call = rc == kSuccess;
    }
    if (power_slot(g, kFieldPowerInstant) < 0 && power_slot(g, kFieldPowerAverage) < 0 &&
        api.DeviceGetPowerUsage != nullptr) {
      rc = api.DeviceGetPowerUsage(g.dev, &mw);
      if (rc != kSuccess && rc != kNotSupported) fail_open(g, rc);
      g.power_call = rc == kSuccess;
    }
    if (g.fields.empty() && !g.energy_call && !g.power_call)
      throw SourceError("unavailable", "GPU " + gpu_label(g) +
                                           " reports neither an energy counter nor power through NVML; "
                                           "leave it out with the nvml option gpus");
  }

  [[noreturn]] void fail_open(const Gpu& g, Return rc) const {
    throw SourceError(rc == 4 ? "permission" : "unavailable",
                      "GPU " + gpu_label(g) + ": " + lib_->describe(rc) + "; or leave it out with the nvml option gpus");
  }

  void read_gpu(Gpu& g, Reading* r) noexcept {
    *r = Reading{};
    if (g.failed) {
      r->flags = kReadFailed;
      r->error_code = g.error;
      return;
    }
    const Api& api = lib_->api();
    Return err = kSuccess;
    if (!g.fields.empty()) {
      const int n = static_cast<int>(g.fields.size());
      for (int i = 0; i < n; ++i) {
        buf_[i] = FieldValue{};
        buf_[i].fieldId = g.fields[i];
      }
      const Return rc = api.DeviceGetFieldValues(g.dev, n, buf_.data());
      if (rc != kSuccess) err = rc;
      double instant_w = -1, average_w = -1;
      for (int i = 0; rc == kSuccess && i < n; ++i) {
        const FieldValue& f = buf_[i];
        double v = 0;
        if (f.nvmlReturn != kSuccess) {
          if (return_info(f.nvmlReturn).permanent) err = f.nvmlReturn;
        } else if (f.fieldId == kFieldTotalEnergy) {
          if (field_as_counter(f, &r->counter_raw)) r->flags |= kReadCounter;
        } else if (field_as_double(f, &v)) {
          (f.fieldId == kFieldPowerInstant ? instant_w : average_w) = v * 1e-3;
        }
      }
      // Instant power when this poll has it; the one-second average otherwise.
      if (instant_w >= 0 || average_w >= 0) {
        r->power_w = instant_w >= 0 ? instant_w : average_w;
        r->flags |= kReadPower;
      }
    }
    if (err == kSuccess && g.energy_call) {
      unsigned long long mj = 0;
      err = api.DeviceGetTotalEnergyConsumption(g.dev, &mj);
      if (err == kSuccess) r->counter_raw = mj, r->flags |= kReadCounter;
    }
    if (err == kSuccess && g.power_call) {
      unsigned int mw = 0;
      err = api.DeviceGetPowerUsage(g.dev, &mw);
      if (err == kSuccess) r->power_w = mw * 1e-3, r->flags |= kReadPower;
    }
    if (err == kSuccess) return;
    r->error_code = err;
    if (!return_info(err).permanent) return;  // a missed poll: the reading carries what it has
    g.failed = true;
    g.error = err;
    *r = Reading{};
    r->flags = kReadFailed;
    r->error_code = err;
  }

  std::shared_ptr<const Library> lib_;  // shared with the telemetry probe
  std::vector<Gpu> gpus_;
  std::vector<ChannelInfo> channels_;
  std::vector<FieldValue> buf_;  // scratch for read(), sampler thread only
};

}  // namespace

std::unique_ptr<Source> make_nvml_source(const SourceOptions& options) {
  return std::make_unique<NvmlSource>(options);
}

}  // namespace fastmeter
