// The few NVML types and entry points fastmeter uses, declared by hand from nvml.h so that building needs no
// NVML headers and running needs no link dependency (the library is dlopen'ed). These layouts are ABI.
#pragma once
#include <cstddef>
#include <string>

namespace fastmeter::nvml {

using Return = int;  // nvmlReturn_t
using Device = struct DeviceOpaque*;  // nvmlDevice_t

constexpr Return kSuccess = 0;
constexpr Return kNotSupported = 3;
constexpr Return kFunctionNotFound = 13;

union Value {  // nvmlValue_t
  double dVal;
  unsigned int uiVal;
  unsigned long ulVal;
  unsigned long long ullVal;
  long long sllVal;
  int siVal;
  unsigned short usVal;
};

struct FieldValue {  // nvmlFieldValue_t
  unsigned int fieldId;
  unsigned int scopeId;
  long long timestamp;    // microseconds since 1970
  long long latencyUsec;  // how long the driver took to read it
  int valueType;          // ValueType
  Return nvmlReturn;      // per field: the call succeeds when any field was filled
  Value value;
};
// Same as nvml.h and nvidia-ml-py's ctypes c_nvmlFieldValue_t (40 bytes, value at 32) on LP64.
static_assert(sizeof(FieldValue) == 40 && offsetof(FieldValue, value) == 32, "nvmlFieldValue_t layout");

enum ValueType : int { kDouble = 0, kUInt = 1, kULong = 2, kULongLong = 3, kSLongLong = 4, kSInt = 5, kUShort = 6 };

enum FieldId : unsigned int {
  kFieldTotalEnergy = 83,    // NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, mJ since driver load
  kFieldPowerAverage = 185,  // NVML_FI_DEV_POWER_AVERAGE, mW, 1 s mean
  kFieldPowerInstant = 186,  // NVML_FI_DEV_POWER_INSTANT, mW
};

// Entry points resolved with dlsym. The first group must exist; the second is probed (nullptr when absent).
struct Api {
  Return (*Init_v2)();
  Return (*Shutdown)();
  const char* (*ErrorString)(Return);
  Return (*DeviceGetCount_v2)(unsigned int*);
  Return (*DeviceGetHandleByIndex_v2)(unsigned int, Device*);
  Return (*DeviceGetName)(Device, char*, unsigned int);
  Return (*DeviceGetUUID)(Device, char*, unsigned int);

  Return (*DeviceGetFieldValues)(Device, int, FieldValue*);
  Return (*DeviceGetTotalEnergyConsumption)(Device, unsigned long long*);
  Return (*DeviceGetPowerUsage)(Device, unsigned int*);
};

// Symbolic name of a return code and what a user can do about it (one table, in nvml.cpp).
struct ReturnInfo {
  const char* name;
  const char* advice;
  bool permanent;  // the channel cannot recover during this run
};
const ReturnInfo& return_info(Return r);

}  // namespace fastmeter::nvml
