// NVML telemetry per GPU (docs/methodology.md, "Telemetry"): one nvmlDeviceGetFieldValues call for the fields
// that answered at open (memory temperature, cumulative throttle time per reason, PCIe byte counters), plus the
// single-value calls NVML has no field for (utilization, clocks, GPU temperature, enforced power limit,
// clocks-event reasons, memory used). Items that answer NOT_SUPPORTED, NO_PERMISSION or are missing from the
// library when the probe opens are listed once in unavailable() and never polled.
#include <atomic>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "fastmeter/sources/nvml_library.h"
#include "fastmeter/telemetry.h"

namespace fastmeter::nvml {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Utilization {
  unsigned int gpu, memory;
};
struct Memory {
  unsigned long long total, free, used;
};

// Field IDs from nvml.h (FACTS.md, "GPU telemetry fields"). The three slowdown counters are numbered 251-253 on
// 580-series drivers; a header that numbers them otherwise is probed away at open, never assumed.
struct FieldSpec {
  unsigned int id;
  const char* metric;
};
constexpr FieldSpec kFields[] = {
    {82, "mem_temp_c"},                  // NVML_FI_DEV_MEMORY_TEMP
    {74, "throttle_power_cap_ns"},       // NVML_FI_DEV_PERF_POLICY_POWER (= CLOCKS_EVENT_REASON_SW_POWER_CAP)
    {75, "throttle_thermal_ns"},         // NVML_FI_DEV_PERF_POLICY_THERMAL
    {76, "throttle_sync_boost_ns"},      // NVML_FI_DEV_PERF_POLICY_SYNC_BOOST
    {251, "throttle_sw_thermal_ns"},     // NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN
    {252, "throttle_hw_thermal_ns"},     // NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN
    {253, "throttle_hw_power_brake_ns"}, // NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN
    {197, "pcie_tx_bytes"},              // NVML_FI_DEV_PCIE_COUNT_TX_BYTES (may wrap)
    {198, "pcie_rx_bytes"},              // NVML_FI_DEV_PCIE_COUNT_RX_BYTES (may wrap)
};

// One single-value item: how it reads, which metrics it fills.
enum class Item { kUtilization, kSmClock, kGraphicsClock, kMemClock, kGpuTemp, kPowerLimit, kReasons, kMemoryUsed };
struct ItemSpec {
  Item item;
  const char* metrics[2];
};
constexpr ItemSpec kItems[] = {
    {Item::kUtilization, {"gpu_util_pct", "mem_util_pct"}},
    {Item::kSmClock, {"sm_clock_mhz", nullptr}},
    {Item::kGraphicsClock, {"graphics_clock_mhz", nullptr}},
    {Item::kMemClock, {"mem_clock_mhz", nullptr}},
    {Item::kGpuTemp, {"gpu_temp_c", nullptr}},
    {Item::kPowerLimit, {"power_limit_w", nullptr}},
    {Item::kReasons, {"clocks_event_reasons", nullptr}},
    {Item::kMemoryUsed, {"memory_used_b", nullptr}},
};

// A probe-time answer that means "this GPU or driver will not give it": list once as unavailable.
bool unavailable_code(Return rc) { return rc == kNotSupported || rc == 4 || rc == kFunctionNotFound; }

struct Calls {
  Return (*utilization)(Device, Utilization*) = nullptr;
  Return (*clock)(Device, int, unsigned int*) = nullptr;
  Return (*temperature)(Device, int, unsigned int*) = nullptr;
  Return (*power_limit)(Device, unsigned int*) = nullptr;
  Return (*reasons)(Device, unsigned long long*) = nullptr;
  Return (*memory)(Device, Memory*) = nullptr;
  Return (*fields)(Device, int, FieldValue*) = nullptr;
};

struct GpuPlan {
  TelemetryGpu gpu;
  std::vector<Item> items;           // single-value items that answered at open
  std::vector<FieldValue> fields;    // request buffer: the fields that answered at open
};

class NvmlTelemetry final : public TelemetryProbe {
 public:
  NvmlTelemetry(std::shared_ptr<const Library> lib, std::vector<TelemetryGpu> gpus) : lib_(std::move(lib)) {
    resolve_calls();
    for (const auto& g : gpus) plan(g);
  }

  const std::vector<TelemetrySeries>& series() const noexcept override { return series_; }
  const std::vector<std::string>& unavailable() const noexcept override { return unavailable_; }
  uint64_t read_errors() const noexcept override { return errors_.load(std::memory_order_relaxed); }

  void read(double* out) noexcept override {
    size_t k = 0;
    for (auto& p : plans_) {
      for (Item it : p.items) {
        double v[2] = {kNaN, kNaN};
        if (read_item(p.gpu.dev, it, v) != kSuccess) errors_.fetch_add(1, std::memory_order_relaxed);
        out[k++] = v[0];
        if (it == Item::kUtilization) out[k++] = v[1];
      }
      if (p.fields.empty()) continue;
      for (auto& f : p.fields) {
        const unsigned int id = f.fieldId;
        f = FieldValue{};
        f.fieldId = id;
      }
      const Return rc = calls_.fields(p.gpu.dev, static_cast<int>(p.fields.size()), p.fields.data());
      for (const auto& f : p.fields) {
        double v = kNaN;
        if (rc != kSuccess || f.nvmlReturn != kSuccess || !field_as_double(f, &v)) {
          v = kNaN;
          errors_.fetch_add(1, std::memory_order_relaxed);
        }
        out[k++] = v;
      }
    }
  }

 private:
  template <typename Fn>
  void opt(const char* a, const char* b, Fn*& fn) {
    fn = reinterpret_cast<Fn*>(lib_->symbol(a));
    if (fn == nullptr && b != nullptr) fn = reinterpret_cast<Fn*>(lib_->symbol(b));
  }
  void resolve_calls() {
    opt("nvmlDeviceGetUtilizationRates", nullptr, calls_.utilization);
    opt("nvmlDeviceGetClockInfo", nullptr, calls_.clock);
    opt("nvmlDeviceGetTemperature", nullptr, calls_.temperature);
    opt("nvmlDeviceGetEnforcedPowerLimit", nullptr, calls_.power_limit);
    // Renamed in CUDA 12.2-era headers; older drivers export only the throttle name.
    opt("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons", calls_.reasons);
    opt("nvmlDeviceGetMemoryInfo", nullptr, calls_.memory);
    opt("nvmlDeviceGetFieldValues", nullptr, calls_.fields);
  }

  Return read_item(Device dev, Item it, double* v) const noexcept {
    Return rc = kFunctionNotFound;
    unsigned int u = 0;
    switch (it) {
      case Item::kUtilization: {
        Utilization x{};
        if (calls_.utilization && (rc = calls_.utilization(dev, &x)) == kSuccess) v[0] = x.gpu, v[1] = x.memory;
        return rc;
      }
      case Item::kSmClock:
      case Item::kGraphicsClock:
      case Item::kMemClock: {
        // NVML_CLOCK_GRAPHICS 0, NVML_CLOCK_SM 1, NVML_CLOCK_MEM 2
        const int type = it == Item::kGraphicsClock ? 0 : (it == Item::kSmClock ? 1 : 2);
        if (calls_.clock && (rc = calls_.clock(dev, type, &u)) == kSuccess) v[0] = u;
        return rc;
      }
      case Item::kGpuTemp:
        if (calls_.temperature && (rc = calls_.temperature(dev, 0, &u)) == kSuccess) v[0] = u;
        return rc;
      case Item::kPowerLimit:
        if (calls_.power_limit && (rc = calls_.power_limit(dev, &u)) == kSuccess) v[0] = u * 1e-3;
        return rc;
      case Item::kReasons: {
        unsigned long long r = 0;
        if (calls_.reasons && (rc = calls_.reasons(dev, &r)) == kSuccess) v[0] = static_cast<double>(r);
        return rc;
      }
      case Item::kMemoryUsed: {
        Memory m{};
        if (calls_.memory && (rc = calls_.memory(dev, &m)) == kSuccess) v[0] = static_cast<double>(m.used);
        return rc;
      }
    }
    return rc;
  }

  void plan(const TelemetryGpu& g) {
    const std::string ch = "gpu" + std::to_string(g.index);
    GpuPlan p{g, {}, {}};
    for (const auto& spec : kItems) {
      double v[2] = {kNaN, kNaN};
      const Return rc = read_item(g.dev, spec.item, v);
      if (unavailable_code(rc)) {
        for (const char* m : spec.metrics)
          if (m != nullptr) unavailable_.push_back(ch + " " + m + ": " + lib_->describe(rc));
        continue;
      }
      p.items.push_back(spec.item);
      for (const char* m : spec.metrics)
        if (m != nullptr) series_.push_back({ch, m});
    }
    std::vector<FieldValue> probe;
    for (const auto& f : kFields) {
      FieldValue fv{};
      fv.fieldId = f.id;
      probe.push_back(fv);
    }
    const Return rc = calls_.fields ? calls_.fields(g.dev, static_cast<int>(probe.size()), probe.data())
                                    : kFunctionNotFound;
    for (size_t i = 0; i < probe.size(); ++i) {
      const Return frc = rc != kSuccess ? rc : probe[i].nvmlReturn;
      if (unavailable_code(frc)) {
        unavailable_.push_back(ch + " " + kFields[i].metric + " (field " + std::to_string(kFields[i].id) +
                               "): " + lib_->describe(frc));
        continue;
      }
      FieldValue fv{};
      fv.fieldId = kFields[i].id;
      p.fields.push_back(fv);
    }
    // Series order must match read(): single items first, then fields.
    for (const auto& fv : p.fields)
      for (const auto& f : kFields)
        if (f.id == fv.fieldId) series_.push_back({ch, f.metric});
    plans_.push_back(std::move(p));
  }

  std::shared_ptr<const Library> lib_;
  Calls calls_;
  std::vector<GpuPlan> plans_;
  std::vector<TelemetrySeries> series_;
  std::vector<std::string> unavailable_;
  std::atomic<uint64_t> errors_{0};
};

}  // namespace

std::unique_ptr<TelemetryProbe> make_telemetry(std::shared_ptr<const Library> lib, std::vector<TelemetryGpu> gpus) {
  return std::make_unique<NvmlTelemetry>(std::move(lib), std::move(gpus));
}

}  // namespace fastmeter::nvml
