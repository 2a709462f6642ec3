/* Shared state of the NVML emulator (fake_nvml.c exports the API, fake_nvml_model.c parses the config and
 * evaluates the power waveforms). The config format is documented at the top of fake_nvml_model.c. */
#ifndef FAKE_NVML_H
#define FAKE_NVML_H

#include <stdint.h>

#define FAKE_MAX_GPUS 16
#define FAKE_MAX_STEPS 64
#define FAKE_MAX_PROCS 8

/* nvmlReturn_t values used here (see the NVML header). */
enum {
  R_SUCCESS = 0, R_UNINITIALIZED = 1, R_INVALID_ARGUMENT = 2, R_NOT_SUPPORTED = 3, R_NO_PERMISSION = 4,
  R_NOT_FOUND = 6, R_INSUFFICIENT_SIZE = 7, R_DRIVER_NOT_LOADED = 9, R_GPU_IS_LOST = 15, R_UNKNOWN = 999
};

/* nvmlValueType_t */
enum { VT_DOUBLE = 0, VT_UINT = 1, VT_ULONG = 2, VT_ULL = 3, VT_SLL = 4, VT_SINT = 5, VT_USHORT = 6 };

enum wave_kind { WAVE_CONSTANT, WAVE_SQUARE, WAVE_STEPS, WAVE_FILE };

struct file_wave; /* fake_nvml_file.c: `power file`, steps appended live */

struct wave {
  enum wave_kind kind;
  double a_w, b_w, period_s, duty; /* constant: a_w; square: low a_w, high b_w */
  int n_steps;
  double step_t_s[FAKE_MAX_STEPS], step_w[FAKE_MAX_STEPS];
  struct file_wave* file; /* WAVE_FILE */
};

struct fake_gpu {
  char name[96], uuid[96];
  int64_t t0_ns;
  struct wave wave;
  long long energy_offset_mj;
  int64_t counter_refresh_ns, power_refresh_ns;
  int64_t power_phase_ns; /* power refreshes at t0 + phase + k * power_refresh (the counter's grid has phase 0) */
  double counter_delay_s, power_delay_s; /* calibrate: a published value describes the past by this much */
  double power_window_s, average_window_s;
  long latency_us;
  long fail_after_calls; /* < 0: never */
  int fail_code;
  long calls; /* field/energy/power calls so far */
  long stall_call; /* this value call (1-based) sleeps stall_ns before returning; < 0: never */
  int64_t jump_at_ns, jump_shift_ns; /* from t0 + jump_at_ns on, refresh instants move by jump_shift_ns */
  int64_t stall_ns;
  int no_energy_counter, no_power_fields, no_instant_power, no_power_usage, no_field_values;
  int energy_type, power_type;
  unsigned power_limit_mw, arch, persistence, mig_current, mig_pending, mig_supported;
  unsigned clocks_mhz[3], max_clocks_mhz[3], temperature_c, util_gpu, util_mem;
  unsigned long long memory_total_b, memory_used_b;
  int n_procs;
  unsigned proc_pid[FAKE_MAX_PROCS];
  unsigned long long proc_used_b[FAKE_MAX_PROCS];
};

struct fake_system {
  char driver[80], nvml_version[80];
  int cuda_driver;
  int init_error;
  int n_gpus;
  struct fake_gpu gpus[FAKE_MAX_GPUS];
};

/* Reads the file named by FAKE_NVML_CONFIG into *sys; returns an nvmlReturn_t (errors go to stderr). */
int fake_load_config(struct fake_system* sys);

int64_t fake_now_ns(void);
/* Seconds since the GPU's waveform origin of the most recent refresh instant at or before t_ns. */
double fake_refresh_s(const struct fake_gpu* g, int64_t t_ns, int64_t refresh_ns);
double fake_power_w(const struct wave* w, double s);  /* true power at s seconds after the origin */
double fake_energy_j(const struct wave* w, double s); /* exact integral of the power from 0 to s */

/* `power file` (fake_nvml_file.c): the follower of one file, shared by every config load naming it. NULL when the
 * file cannot be opened. */
struct file_wave* fake_file_wave_open(const char* path, int64_t origin_ns);
double fake_file_power_w(struct file_wave* fw, double s);
double fake_file_energy_j(struct file_wave* fw, double s);

#endif
