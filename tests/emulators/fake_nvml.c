/* NVML emulator: a shared library exporting the NVML functions fastmeter, nvidia-ml-py (pynvml) and an
 * environment fingerprint call, with devices, power waveforms and faults taken from the file named by
 * FAKE_NVML_CONFIG (format: see fake_nvml_model.c). Energy is analytic: the counter is the exact integral of
 * the configured waveform (floored to mJ), so tests can compare what a reader saw against truth.
 * Struct layouts follow nvml.h (and nvidia-ml-py's ctypes mirrors): they are ABI, keep them exact. */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fake_nvml.h"

#define API __attribute__((visibility("default")))

typedef struct fake_gpu* nvmlDevice_t;

typedef union {
  double dVal;
  unsigned int uiVal;
  unsigned long ulVal;
  unsigned long long ullVal;
  long long sllVal;
  int siVal;
  unsigned short usVal;
} nvmlValue_t;

typedef struct {
  unsigned int fieldId, scopeId;
  long long timestamp, latencyUsec;
  int valueType, nvmlReturn;
  nvmlValue_t value;
} nvmlFieldValue_t;
_Static_assert(sizeof(nvmlFieldValue_t) == 40 && offsetof(nvmlFieldValue_t, value) == 32, "nvml.h layout");

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;
_Static_assert(sizeof(nvmlProcessInfo_t) == 24, "nvml.h layout");

enum { FIELD_ENERGY = 83, FIELD_POWER_AVERAGE = 185, FIELD_POWER_INSTANT = 186, FIELD_ENERGY_ALIAS = 191 };

static struct fake_system sys;
static int refcount;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

static int do_init(void) {
  pthread_mutex_lock(&init_lock);
  int rc = R_SUCCESS;
  if (refcount == 0) {
    rc = fake_load_config(&sys);
    if (rc == R_SUCCESS && sys.init_error) rc = sys.init_error;
  }
  if (rc == R_SUCCESS) refcount++;
  pthread_mutex_unlock(&init_lock);
  return rc;
}

API int nvmlInit(void) { return do_init(); }
API int nvmlInit_v2(void) { return do_init(); }
API int nvmlInitWithFlags(unsigned int flags) { return (void)flags, do_init(); }

API int nvmlShutdown(void) {
  pthread_mutex_lock(&init_lock);
  const int rc = refcount > 0 ? (refcount--, R_SUCCESS) : R_UNINITIALIZED;
  pthread_mutex_unlock(&init_lock);
  return rc;
}

API const char* nvmlErrorString(int r) {
  switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 15: return "GPU is lost";
    case 21: return "No data";
    case 27: return "Not Ready";
    default: return "Unknown Error";
  }
}

/* Every device call: the handle must be one of ours, and a GPU past its fail_after_calls budget is gone. */
static int check(nvmlDevice_t d, const void* out) {
  if (refcount == 0) return R_UNINITIALIZED;
  if (d < sys.gpus || d >= sys.gpus + sys.n_gpus || out == NULL) return R_INVALID_ARGUMENT;
  const long calls = __atomic_load_n(&d->calls, __ATOMIC_RELAXED);
  return (d->fail_after_calls >= 0 && calls > d->fail_after_calls) ? d->fail_code : R_SUCCESS;
}

/* A call that reads energy or power: counts toward fail_after_calls, then takes its value at *t_ns. */
static int begin_value_call(nvmlDevice_t d, const void* out, int64_t* t_ns) {
  *t_ns = fake_now_ns();
  if (refcount == 0) return R_UNINITIALIZED;
  if (d >= sys.gpus && d < sys.gpus + sys.n_gpus) __atomic_add_fetch(&d->calls, 1, __ATOMIC_RELAXED);
  return check(d, out);
}

static void spend_latency(nvmlDevice_t d, int64_t start_ns) {
  const int64_t until = start_ns + (int64_t)d->latency_us * 1000;
  while (fake_now_ns() < until) {
  }
  if (d->stall_call >= 0 && __atomic_load_n(&d->calls, __ATOMIC_RELAXED) == d->stall_call) {
    struct timespec ts = {(time_t)(d->stall_ns / 1000000000LL), (long)(d->stall_ns % 1000000000LL)};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
}

static unsigned long long counter_mj(nvmlDevice_t d, int64_t t_ns) {
  const double s = fake_refresh_s(d, t_ns, d->counter_refresh_ns) - d->counter_delay_s;
  const long long v = d->energy_offset_mj + (long long)floor(fake_energy_j(&d->wave, s) * 1000.0);
  return v < 0 ? 0ULL : (unsigned long long)v;
}

/* Mean true power over the trailing window ending power_delay before the latest power refresh instant, which comes
 * power_phase after a counter refresh (window 0: exact). */
static double mean_power_w(nvmlDevice_t d, int64_t t_ns, double window_s) {
  const double phase_s = (double)d->power_phase_ns * 1e-9;
  const double s = fake_refresh_s(d, t_ns - d->power_phase_ns, d->power_refresh_ns) + phase_s - d->power_delay_s;
  if (window_s <= 0) return fake_power_w(&d->wave, s);
  return (fake_energy_j(&d->wave, s) - fake_energy_j(&d->wave, s - window_s)) / window_s;
}

static void put_value(nvmlFieldValue_t* f, int type, double exact) {
  const double v = floor(exact);
  f->valueType = type;
  switch (type) {
    case VT_DOUBLE: f->value.dVal = exact; break;
    case VT_UINT: f->value.uiVal = (unsigned int)v; break;
    case VT_ULONG: f->value.ulVal = (unsigned long)v; break;
    case VT_SLL: f->value.sllVal = (long long)v; break;
    case VT_SINT: f->value.siVal = (int)v; break;
    case VT_USHORT: f->value.usVal = (unsigned short)v; break;
    default: f->value.ullVal = (unsigned long long)v; break;
  }
}

/* A request for telemetry fields only (fake_nvml_telemetry.c) is not an energy/power value call: it must not move
 * fail_after_calls / stall_at_call budgets, which tests set in energy polls. */
static int telemetry_only(int count, const nvmlFieldValue_t* values) {
  unsigned long long v;
  int type;
  if (values == NULL || count <= 0) return 0;
  for (int i = 0; i < count; ++i)
    if (fake_telemetry_field(-1, NULL, values[i].fieldId, 0, &v, &type) == -1) return 0;
  return 1;
}

API int nvmlDeviceGetFieldValues(nvmlDevice_t d, int count, nvmlFieldValue_t* values) {
  int64_t t_ns = fake_now_ns();
  const int tel_only = telemetry_only(count, values);
  const int rc = tel_only ? check(d, values) : begin_value_call(d, values, &t_ns);
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  for (int i = 0; rc != R_UNINITIALIZED && rc != R_INVALID_ARGUMENT && i < count; ++i) {
    nvmlFieldValue_t* f = &values[i];
    f->timestamp = (long long)wall.tv_sec * 1000000LL + wall.tv_nsec / 1000;
    f->latencyUsec = d->latency_us;
    const int is_energy = f->fieldId == FIELD_ENERGY || f->fieldId == FIELD_ENERGY_ALIAS;
    const int is_power = f->fieldId == FIELD_POWER_AVERAGE || f->fieldId == FIELD_POWER_INSTANT;
    if (rc != R_SUCCESS || d->no_field_values) f->nvmlReturn = rc != R_SUCCESS ? rc : R_NOT_SUPPORTED;
    else if (is_energy && !d->no_energy_counter) {
      f->nvmlReturn = R_SUCCESS;
      put_value(f, d->energy_type, (double)counter_mj(d, t_ns));
    } else if (is_power && !d->no_power_fields && f->scopeId == 0 &&
               !(d->no_instant_power && f->fieldId == FIELD_POWER_INSTANT)) {
      const double w = f->fieldId == FIELD_POWER_INSTANT ? d->power_window_s : d->average_window_s;
      f->nvmlReturn = R_SUCCESS;
      put_value(f, d->power_type, mean_power_w(d, t_ns, w) * 1000.0);
    } else {
      unsigned long long v = 0;
      int type = VT_ULL;
      const int trc = fake_telemetry_field((int)(d - sys.gpus), d, f->fieldId, t_ns, &v, &type);
      f->nvmlReturn = trc < 0 ? R_NOT_SUPPORTED : trc;
      if (trc == R_SUCCESS) put_value(f, type, (double)v);
    }
  }
  if (rc == R_SUCCESS && !tel_only) spend_latency(d, t_ns);
  return (rc == R_SUCCESS && d->no_field_values) ? R_NOT_SUPPORTED : rc;
}

API int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long* energy_mj) {
  int64_t t_ns;
  const int rc = begin_value_call(d, energy_mj, &t_ns);
  if (rc != R_SUCCESS) return rc;
  if (d->no_energy_counter) return R_NOT_SUPPORTED;
  *energy_mj = counter_mj(d, t_ns);
  spend_latency(d, t_ns);
  return R_SUCCESS;
}

/* Like Ampere and newer: the mean over the last average_window_ms (default 1 s), floored to mW. */
API int nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int* power_mw) {
  int64_t t_ns;
  const int rc = begin_value_call(d, power_mw, &t_ns);
  if (rc != R_SUCCESS) return rc;
  if (d->no_power_usage) return R_NOT_SUPPORTED;
  *power_mw = (unsigned int)floor(mean_power_w(d, t_ns, d->average_window_s) * 1000.0);
  spend_latency(d, t_ns);
  return R_SUCCESS;
}

static int copy_text(const char* text, char* out, unsigned int len) {
  if (out == NULL) return R_INVALID_ARGUMENT;
  if (strlen(text) + 1 > len) return R_INSUFFICIENT_SIZE;
  memcpy(out, text, strlen(text) + 1);
  return R_SUCCESS;
}

API int nvmlSystemGetDriverVersion(char* out, unsigned int len) {
  return refcount ? copy_text(sys.driver, out, len) : R_UNINITIALIZED;
}
API int nvmlSystemGetNVMLVersion(char* out, unsigned int len) {
  return refcount ? copy_text(sys.nvml_version, out, len) : R_UNINITIALIZED;
}
API int nvmlSystemGetCudaDriverVersion(int* v) {
  if (!refcount) return R_UNINITIALIZED;
  if (!v) return R_INVALID_ARGUMENT;
  *v = sys.cuda_driver;
  return R_SUCCESS;
}
API int nvmlSystemGetCudaDriverVersion_v2(int* v) { return nvmlSystemGetCudaDriverVersion(v); }

API int nvmlDeviceGetCount_v2(unsigned int* n) {
  if (!refcount) return R_UNINITIALIZED;
  if (!n) return R_INVALID_ARGUMENT;
  *n = (unsigned int)sys.n_gpus;
  return R_SUCCESS;
}
API int nvmlDeviceGetCount(unsigned int* n) { return nvmlDeviceGetCount_v2(n); }

API int nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t* d) {
  if (!refcount) return R_UNINITIALIZED;
  if (!d || i >= (unsigned int)sys.n_gpus) return R_INVALID_ARGUMENT;
  *d = &sys.gpus[i];
  return R_SUCCESS;
}
API int nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t* d) { return nvmlDeviceGetHandleByIndex_v2(i, d); }

API int nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* d) {
  if (!refcount) return R_UNINITIALIZED;
  if (!uuid || !d) return R_INVALID_ARGUMENT;
  for (int i = 0; i < sys.n_gpus; ++i)
    if (strcmp(uuid, sys.gpus[i].uuid) == 0) return *d = &sys.gpus[i], R_SUCCESS;
  return R_NOT_FOUND;
}

/* Getters of one configured value: check the handle, then store. */
#define GETTER(fn, type, expr)                 \
  API int fn(nvmlDevice_t d, type* out) {      \
    const int rc = check(d, out);              \
    if (rc == R_SUCCESS) *out = (type)(expr);  \
    return rc;                                 \
  }
GETTER(nvmlDeviceGetIndex, unsigned int, d - sys.gpus)
GETTER(nvmlDeviceGetPowerManagementLimit, unsigned int, d->power_limit_mw)
GETTER(nvmlDeviceGetPowerManagementDefaultLimit, unsigned int, d->power_limit_mw)
GETTER(nvmlDeviceGetPersistenceMode, int, d->persistence)
GETTER(nvmlDeviceGetArchitecture, unsigned int, d->arch)
GETTER(nvmlDeviceGetPerformanceState, int, 0)

API int nvmlDeviceGetName(nvmlDevice_t d, char* out, unsigned int len) {
  const int rc = check(d, out);
  return rc == R_SUCCESS ? copy_text(d->name, out, len) : rc;
}
API int nvmlDeviceGetUUID(nvmlDevice_t d, char* out, unsigned int len) {
  const int rc = check(d, out);
  return rc == R_SUCCESS ? copy_text(d->uuid, out, len) : rc;
}

API int nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int* current, unsigned int* pending) {
  const int rc = check(d, pending ? current : NULL);
  if (rc != R_SUCCESS) return rc;
  if (!d->mig_supported) return R_NOT_SUPPORTED;
  *current = d->mig_current;
  *pending = d->mig_pending;
  return R_SUCCESS;
}

static int clock_of(nvmlDevice_t d, int type, unsigned int* mhz, const unsigned int* table) {
  const int rc = check(d, mhz);
  if (rc != R_SUCCESS) return rc;
  if (type < 0 || type > 2) return R_INVALID_ARGUMENT;
  *mhz = table == d->clocks_mhz ? fake_clock_mhz((int)(d - sys.gpus), d, type) : table[type];
  return R_SUCCESS;
}
API int nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int* mhz) {
  const int rc = check(d, mhz);
  if (rc != R_SUCCESS) return rc;
  const int trc = fake_telemetry_check((int)(d - sys.gpus), "clocks");
  return trc != R_SUCCESS ? trc : clock_of(d, type, mhz, d->clocks_mhz);
}
API int nvmlDeviceGetMaxClockInfo(nvmlDevice_t d, int type, unsigned int* mhz) {
  return clock_of(d, type, mhz, d ? d->max_clocks_mhz : NULL);
}

API int nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int* c) {
  const int rc = check(d, c);
  if (rc != R_SUCCESS) return rc;
  if (sensor != 0) return R_INVALID_ARGUMENT;
  const int trc = fake_telemetry_check((int)(d - sys.gpus), "temperature");
  if (trc != R_SUCCESS) return trc;
  *c = fake_temperature_c((int)(d - sys.gpus), d, fake_now_ns());
  return R_SUCCESS;
}

API int nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t* u) {
  int rc = check(d, u);
  if (rc == R_SUCCESS) rc = fake_telemetry_check((int)(d - sys.gpus), "utilization");
  if (rc == R_SUCCESS) u->gpu = d->util_gpu, u->memory = d->util_mem;
  return rc;
}

API int nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t* m) {
  int rc = check(d, m);
  if (rc == R_SUCCESS) rc = fake_telemetry_check((int)(d - sys.gpus), "memory");
  if (rc != R_SUCCESS) return rc;
  m->total = d->memory_total_b;
  m->used = d->memory_used_b;
  m->free = d->memory_total_b - d->memory_used_b;
  return R_SUCCESS;
}

/* NVML's two-call protocol: too small a buffer (or none) -> INSUFFICIENT_SIZE with *count = what is needed. */
API int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int* count, nvmlProcessInfo_t* infos) {
  const int rc = check(d, count);
  if (rc != R_SUCCESS) return rc;
  const unsigned int have = *count, need = (unsigned int)d->n_procs;
  *count = need;
  if (need == 0) return R_SUCCESS;
  if (have < need || infos == NULL) return R_INSUFFICIENT_SIZE;
  for (unsigned int i = 0; i < need; ++i) {
    memset(&infos[i], 0, sizeof infos[i]);
    infos[i].pid = d->proc_pid[i];
    infos[i].usedGpuMemory = d->proc_used_b[i];
    infos[i].gpuInstanceId = infos[i].computeInstanceId = 0xFFFFFFFFu;
  }
  return R_SUCCESS;
}
API int nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned int* count, nvmlProcessInfo_t* infos) {
  return nvmlDeviceGetComputeRunningProcesses_v3(d, count, infos);
}

/* --- telemetry and control (state and model in fake_nvml_telemetry.c) --- */
API int nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int* mw) {
  int rc = check(d, mw);
  if (rc == R_SUCCESS) rc = fake_telemetry_check((int)(d - sys.gpus), "power_limit");
  if (rc == R_SUCCESS) *mw = d->power_limit_mw;
  return rc;
}

API int nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long* reasons) {
  int rc = check(d, reasons);
  if (rc == R_SUCCESS) rc = fake_telemetry_check((int)(d - sys.gpus), "clocks_event_reasons");
  if (rc == R_SUCCESS) *reasons = fake_clocks_event_reasons((int)(d - sys.gpus), d, fake_now_ns());
  return rc;
}
API int nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long* reasons) {
  return nvmlDeviceGetCurrentClocksEventReasons(d, reasons);
}

API int nvmlDeviceSetGpuLockedClocks(nvmlDevice_t d, unsigned int min_mhz, unsigned int max_mhz) {
  const int rc = check(d, d);
  return rc != R_SUCCESS ? rc : fake_set_locked_clocks((int)(d - sys.gpus), min_mhz, max_mhz);
}
API int nvmlDeviceResetGpuLockedClocks(nvmlDevice_t d) {
  const int rc = check(d, d);
  return rc != R_SUCCESS ? rc : fake_reset_locked_clocks((int)(d - sys.gpus));
}
API int nvmlDeviceSetPowerManagementLimit(nvmlDevice_t d, unsigned int mw) {
  const int rc = check(d, d);
  return rc != R_SUCCESS ? rc : fake_set_power_limit((int)(d - sys.gpus), d, mw);
}
API int nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t d, unsigned int* min_mw, unsigned int* max_mw) {
  const int rc = check(d, max_mw ? min_mw : NULL);
  if (rc == R_SUCCESS) fake_power_limit_range((int)(d - sys.gpus), min_mw, max_mw);
  return rc;
}

API int nvmlDeviceGetApplicationsClock(nvmlDevice_t d, int type, unsigned int* mhz) {
  const int rc = check(d, mhz);
  if (rc != R_SUCCESS) return rc;
  if (type < 0 || type > 2) return R_INVALID_ARGUMENT;
  *mhz = fake_applications_clock_mhz((int)(d - sys.gpus), d, type);
  return R_SUCCESS;
}
API int nvmlDeviceGetDefaultApplicationsClock(nvmlDevice_t d, int type, unsigned int* mhz) {
  return clock_of(d, type, mhz, d ? d->max_clocks_mhz : NULL);
}
API int nvmlDeviceGetEccMode(nvmlDevice_t d, unsigned int* current, unsigned int* pending) {
  const int rc = check(d, pending ? current : NULL);
  return rc != R_SUCCESS ? rc : fake_ecc_mode((int)(d - sys.gpus), current, pending);
}
#define PCIE_GETTER(fn, which)                                \
  API int fn(nvmlDevice_t d, unsigned int* out) {             \
    const int rc = check(d, out);                             \
    if (rc == R_SUCCESS) *out = fake_pcie((int)(d - sys.gpus), which); \
    return rc;                                                \
  }
PCIE_GETTER(nvmlDeviceGetMaxPcieLinkGeneration, 0)
PCIE_GETTER(nvmlDeviceGetMaxPcieLinkWidth, 1)
PCIE_GETTER(nvmlDeviceGetCurrPcieLinkGeneration, 2)
PCIE_GETTER(nvmlDeviceGetCurrPcieLinkWidth, 3)
