// The loaded NVML library and one NVML session (dlopen + nvmlInit_v2, nvmlShutdown + dlclose), shared by the
// nvml energy source and its telemetry probe (one session per source: both read the same device handles).
#pragma once
#include <dlfcn.h>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fastmeter/sources/nvml_api.h"
#include "fastmeter/sources/source.h"

namespace fastmeter {
class TelemetryProbe;
namespace nvml {

inline constexpr const char* kLibraryEnv = "FASTMETER_NVML_LIBRARY";

template <typename Fn>
void resolve(void* lib, const char* symbol, Fn*& fn) {
  fn = reinterpret_cast<Fn*>(dlsym(lib, symbol));
}

// The loaded library and an NVML session: dlopen + nvmlInit_v2 on construction, nvmlShutdown + dlclose after.
class Library {
 public:
  explicit Library(std::string path) : path_(std::move(path)) {
    lib_ = dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib_ == nullptr) {
      const char* why = dlerror();
      throw SourceError("unavailable", "cannot load the NVML library '" + path_ + "' (" +
                                           (why ? why : "unknown reason") +
                                           "): install the NVIDIA driver, or set " + kLibraryEnv +
                                           " to the full path of libnvidia-ml.so.1");
    }
    try {
      resolve_all();
      const Return rc = api_.Init_v2();
      if (rc != kSuccess)
        throw SourceError(rc == 4 ? "permission" : "unavailable", "nvmlInit_v2 failed: " + describe(rc));
    } catch (...) {
      dlclose(lib_);
      throw;
    }
  }
  ~Library() {
    api_.Shutdown();
    dlclose(lib_);
  }
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  const Api& api() const noexcept { return api_; }
  // An optional entry point (telemetry, control); nullptr when this library lacks it.
  void* symbol(const char* name) const noexcept { return dlsym(lib_, name); }

  // "NVML error 15 GPU_IS_LOST (GPU is lost): <what to do>"
  std::string describe(Return rc) const {
    const ReturnInfo& info = return_info(rc);
    const char* text = api_.ErrorString ? api_.ErrorString(rc) : nullptr;
    std::string s = "NVML error " + std::to_string(rc) + " " + info.name;
    if (text != nullptr && *text != '\0') s += std::string(" (") + text + ")";
    if (*info.advice != '\0') s += std::string(": ") + info.advice;
    return s;
  }

 private:
  template <typename Fn>
  void require(const char* symbol, Fn*& fn) {
    resolve(lib_, symbol, fn);
    if (fn == nullptr)
      throw SourceError("unavailable", "'" + path_ + "' has no " + symbol +
                                           ": it is not NVML or its driver is too old; upgrade the NVIDIA driver "
                                           "or point " + kLibraryEnv + " at libnvidia-ml.so.1");
  }
  void resolve_all() {
    require("nvmlInit_v2", api_.Init_v2);
    require("nvmlShutdown", api_.Shutdown);
    require("nvmlErrorString", api_.ErrorString);
    require("nvmlDeviceGetCount_v2", api_.DeviceGetCount_v2);
    require("nvmlDeviceGetHandleByIndex_v2", api_.DeviceGetHandleByIndex_v2);
    require("nvmlDeviceGetName", api_.DeviceGetName);
    require("nvmlDeviceGetUUID", api_.DeviceGetUUID);
    resolve(lib_, "nvmlDeviceGetFieldValues", api_.DeviceGetFieldValues);
    resolve(lib_, "nvmlDeviceGetTotalEnergyConsumption", api_.DeviceGetTotalEnergyConsumption);
    resolve(lib_, "nvmlDeviceGetPowerUsage", api_.DeviceGetPowerUsage);
  }

  std::string path_;
  void* lib_ = nullptr;
  Api api_{};
};

// A field value as a double, whatever its valueType; false for a type NVML does not define.
inline bool field_as_double(const FieldValue& f, double* out) {
  switch (f.valueType) {
    case kDouble: *out = f.value.dVal; break;
    case kUInt: *out = static_cast<double>(f.value.uiVal); break;
    case kULong: *out = static_cast<double>(f.value.ulVal); break;
    case kULongLong: *out = static_cast<double>(f.value.ullVal); break;
    case kSLongLong: *out = static_cast<double>(f.value.sllVal); break;
    case kSInt: *out = static_cast<double>(f.value.siVal); break;
    case kUShort: *out = static_cast<double>(f.value.usVal); break;
    default: return false;
  }
  return std::isfinite(*out) && *out >= 0;
}

// A GPU the telemetry probe reads: its handle and its NVML index (the channel is "gpu<index>").
struct TelemetryGpu {
  Device dev;
  unsigned int index;
};
// NVML telemetry for these GPUs, sharing the source's session (nvml_telemetry.cpp).
std::unique_ptr<TelemetryProbe> make_telemetry(std::shared_ptr<const Library> lib, std::vector<TelemetryGpu> gpus);

}  // namespace nvml
}  // namespace fastmeter
