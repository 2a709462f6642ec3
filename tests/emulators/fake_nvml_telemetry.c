/* NVML emulator: telemetry beside energy (utilization, clocks, temperatures, clocks-event reasons, cumulative
 * throttle time, PCIe byte counters) and the control calls (locked clocks, power limit).
 *
 * Directives (after a `gpu`; parsed by fake_telemetry_directive, one block in fake_nvml_model.c's apply()):
 *   throttle <start_ms> <end_ms> <reasons>   clocks-event reasons bitmask (0x.. or decimal) in force from
 *                                  t0 + start to t0 + end (repeatable, up to FAKE_MAX_EPISODES; later ones win)
 *   clocks_event_reasons <mask>    the bitmask outside every episode (default 0)
 *   temperature_ramp <to_c> <over_s>  GPU temperature rises linearly from temperature_c at t0 to to_c at
 *                                  t0 + over_s, then stays (floored to whole degrees, as NVML reports them)
 *   memory_temperature_c <c>       field 82 (default 45)
 *   pcie_bytes_per_s <tx> <rx>     fields 197/198 count bytes at these rates from t0 (default 0 0)
 *   unsupported <item>             NOT_SUPPORTED for: utilization clocks temperature memory_temperature
 *                                  power_limit clocks_event_reasons throttle_counters memory pcie
 *   telemetry_fail_every <N> <code>  every N-th telemetry call on this GPU returns <code> (a transient failure)
 *   control denied                 the set/reset calls return NO_PERMISSION
 *   control_log <path>             each successful set/reset call appends one line to <path>:
 *                                  "locked_clocks <gpu> <min> <max>", "reset_locked_clocks <gpu>",
 *                                  "power_limit <gpu> <mW>"
 *   power_limit_range_w <min> <max>  nvmlDeviceGetPowerManagementLimitConstraints (default 100 700)
 *   applications_clocks_mhz <graphics> <sm> <mem>  nvmlDeviceGetApplicationsClock (default: the max clocks)
 *   ecc <current> <pending> | ecc unsupported      nvmlDeviceGetEccMode (default 1 1)
 *   pcie_link <max_gen> <max_width> <cur_gen> <cur_width>  PCIe link queries (default 5 16 5 16)
 * Cumulative throttle time (ns since t0) per field: 74 SW power cap (0x4), 75 thermal (0x20|0x40), 76 sync boost
 * (0x10), 251 SW thermal (0x20), 252 HW thermal (0x40), 253 HW power brake (0x80). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_nvml.h"

#define API __attribute__((visibility("default")))
#define FAKE_MAX_EPISODES 16

struct fake_telemetry {
  int n_episodes;
  int64_t ep_start_ns[FAKE_MAX_EPISODES], ep_end_ns[FAKE_MAX_EPISODES];
  unsigned long long ep_reasons[FAKE_MAX_EPISODES];
  unsigned long long base_reasons;
  int has_ramp;
  double ramp_to_c, ramp_s;
  unsigned mem_temp_c;
  double pcie_tx_bps, pcie_rx_bps;
  unsigned unsupported; /* bit per enum item */
  long fail_every, calls;
  int fail_code;
  int control_denied;
  char control_log[512];
  unsigned limit_min_mw, limit_max_mw;
  unsigned locked_min_mhz, locked_max_mhz;
  int locked;
  unsigned app_clocks_mhz[3]; /* 0 = the GPU's max clock of that type */
  int ecc_supported;
  unsigned ecc_current, ecc_pending;
  unsigned pcie[4]; /* max generation, max width, current generation, current width */
};

static struct fake_telemetry tel[FAKE_MAX_GPUS];
static const char* item_names[] = {"utilization",          "clocks",            "temperature",
                                   "memory_temperature",   "power_limit",       "clocks_event_reasons",
                                   "throttle_counters",    "memory",            "pcie"};

void fake_telemetry_reset(void) {
  memset(tel, 0, sizeof tel);
  for (int i = 0; i < FAKE_MAX_GPUS; ++i) {
    tel[i].mem_temp_c = 45;
    tel[i].limit_min_mw = 100000;
    tel[i].limit_max_mw = 700000;
    tel[i].ecc_supported = 1;
    tel[i].ecc_current = tel[i].ecc_pending = 1;
    tel[i].pcie[0] = tel[i].pcie[2] = 5;
    tel[i].pcie[1] = tel[i].pcie[3] = 16;
  }
}

static int item_of(const char* s) {
  for (int i = 0; i < (int)(sizeof item_names / sizeof item_names[0]); ++i)
    if (strcmp(s, item_names[i]) == 0) return i;
  return -1;
}

int fake_telemetry_directive(int gpu, const char* key, char** tok, int n) {
  if (gpu < 0) return 1;
  struct fake_telemetry* t = &tel[gpu];
  if (strcmp(key, "throttle") == 0 && n == 3) {
    if (t->n_episodes == FAKE_MAX_EPISODES) return -1;
    t->ep_start_ns[t->n_episodes] = (int64_t)llround(atof(tok[0]) * 1e6);
    t->ep_end_ns[t->n_episodes] = (int64_t)llround(atof(tok[1]) * 1e6);
    t->ep_reasons[t->n_episodes] = strtoull(tok[2], NULL, 0);
    if (t->ep_end_ns[t->n_episodes] <= t->ep_start_ns[t->n_episodes]) return -1;
    t->n_episodes++;
  } else if (strcmp(key, "clocks_event_reasons") == 0 && n == 1) t->base_reasons = strtoull(tok[0], NULL, 0);
  else if (strcmp(key, "temperature_ramp") == 0 && n == 2) {
    t->has_ramp = 1;
    t->ramp_to_c = atof(tok[0]);
    t->ramp_s = atof(tok[1]);
    if (!(t->ramp_s > 0)) return -1;
  } else if (strcmp(key, "memory_temperature_c") == 0 && n == 1) t->mem_temp_c = (unsigned)atoi(tok[0]);
  else if (strcmp(key, "pcie_bytes_per_s") == 0 && n == 2) {
    t->pcie_tx_bps = atof(tok[0]);
    t->pcie_rx_bps = atof(tok[1]);
  } else if (strcmp(key, "unsupported") == 0 && n == 1) {
    const int item = item_of(tok[0]);
    if (item < 0) return -1;
    t->unsupported |= 1u << item;
  } else if (strcmp(key, "telemetry_fail_every") == 0 && n == 2) {
    t->fail_every = atol(tok[0]);
    t->fail_code = atoi(tok[1]);
    if (t->fail_every < 1) return -1;
  } else if (strcmp(key, "control") == 0 && n == 1 && strcmp(tok[0], "denied") == 0) t->control_denied = 1;
  else if (strcmp(key, "control_log") == 0 && n == 1) snprintf(t->control_log, sizeof t->control_log, "%s", tok[0]);
  else if (strcmp(key, "power_limit_range_w") == 0 && n == 2) {
    t->limit_min_mw = (unsigned)llround(atof(tok[0]) * 1e3);
    t->limit_max_mw = (unsigned)llround(atof(tok[1]) * 1e3);
  } else if (strcmp(key, "applications_clocks_mhz") == 0 && n == 3) {
    for (int i = 0; i < 3; ++i) t->app_clocks_mhz[i] = (unsigned)atoi(tok[i]);
  } else if (strcmp(key, "ecc") == 0 && n == 1 && strcmp(tok[0], "unsupported") == 0) t->ecc_supported = 0;
  else if (strcmp(key, "ecc") == 0 && n == 2) {
    t->ecc_current = (unsigned)atoi(tok[0]);
    t->ecc_pending = (unsigned)atoi(tok[1]);
  } else if (strcmp(key, "pcie_link") == 0 && n == 4) {
    for (int i = 0; i < 4; ++i) t->pcie[i] = (unsigned)atoi(tok[i]);
  } else return 1;
  return 0;
}

/* Before any telemetry value: NOT_SUPPORTED for an unsupported item, else every fail_every-th call fails. */
int fake_telemetry_check(int gpu, const char* item) {
  struct fake_telemetry* t = &tel[gpu];
  const int k = item_of(item);
  if (k >= 0 && (t->unsupported & (1u << k))) return R_NOT_SUPPORTED;
  const long calls = __atomic_add_fetch(&t->calls, 1, __ATOMIC_RELAXED);
  if (t->fail_every > 0 && calls % t->fail_every == 0) return t->fail_code;
  return R_SUCCESS;
}

unsigned long long fake_clocks_event_reasons(int gpu, const struct fake_gpu* g, int64_t t_ns) {
  const struct fake_telemetry* t = &tel[gpu];
  unsigned long long r = t->base_reasons;
  const int64_t dt = t_ns - g->t0_ns;
  for (int i = 0; i < t->n_episodes; ++i)
    if (dt >= t->ep_start_ns[i] && dt < t->ep_end_ns[i]) r = t->ep_reasons[i];
  return r;
}

/* Nanoseconds since t0 during which an episode with any of `bits` was in force, up to t_ns. */
static unsigned long long throttled_ns(int gpu, const struct fake_gpu* g, int64_t t_ns, unsigned long long bits) {
  const struct fake_telemetry* t = &tel[gpu];
  const int64_t dt = t_ns - g->t0_ns;
  unsigned long long sum = 0;
  for (int i = 0; i < t->n_episodes; ++i) {
    if (!(t->ep_reasons[i] & bits)) continue;
    const int64_t a = t->ep_start_ns[i] > 0 ? t->ep_start_ns[i] : 0;
    const int64_t b = t->ep_end_ns[i] < dt ? t->ep_end_ns[i] : dt;
    if (b > a) sum += (unsigned long long)(b - a);
  }
  return sum;
}

unsigned fake_temperature_c(int gpu, const struct fake_gpu* g, int64_t t_ns) {
  const struct fake_telemetry* t = &tel[gpu];
  if (!t->has_ramp) return g->temperature_c;
  double x = (double)(t_ns - g->t0_ns) * 1e-9 / t->ramp_s;
  x = x < 0 ? 0 : (x > 1 ? 1 : x);
  return (unsigned)floor((double)g->temperature_c + (t->ramp_to_c - (double)g->temperature_c) * x);
}

/* A telemetry field of nvmlDeviceGetFieldValues: -1 when `field` is not one; else its nvmlReturn, with the value
 * in *out and its valueType in *type. */
int fake_telemetry_field(int gpu, const struct fake_gpu* g, unsigned field, int64_t t_ns, unsigned long long* out,
                         int* type) {
  unsigned long long bits = 0;
  const char* item = "throttle_counters";
  switch (field) {
    case 74: bits = 0x4; break;
    case 75: bits = 0x20 | 0x40; break;
    case 76: bits = 0x10; break;
    case 251: bits = 0x20; break;
    case 252: bits = 0x40; break;
    case 253: bits = 0x80; break;
    case 82: item = "memory_temperature"; break;
    case 197: case 198: item = "pcie"; break;
    default: return -1;
  }
  if (g == NULL) return R_SUCCESS; /* asked only whether `field` is a telemetry field */
  const int rc = fake_telemetry_check(gpu, item);
  if (rc != R_SUCCESS) return rc;
  const double s = (double)(t_ns - g->t0_ns) * 1e-9;
  *type = VT_ULL;
  if (field == 82) {
    *type = VT_UINT;
    *out = tel[gpu].mem_temp_c;
  } else if (field == 197 || field == 198) {
    *out = (unsigned long long)floor((field == 197 ? tel[gpu].pcie_tx_bps : tel[gpu].pcie_rx_bps) * (s > 0 ? s : 0));
  } else {
    *out = throttled_ns(gpu, g, t_ns, bits);
  }
  return R_SUCCESS;
}

/* --- control ------------------------------------------------------------------------------------------------- */
static void log_control(int gpu, const char* line) {
  if (!tel[gpu].control_log[0]) return;
  FILE* f = fopen(tel[gpu].control_log, "a");
  if (!f) return;
  fprintf(f, "%s\n", line);
  fclose(f);
}

/* The clocks a GPU reports: the locked clock (clamped into [min, max]) while locked, else the configured one. */
unsigned fake_clock_mhz(int gpu, const struct fake_gpu* g, int type) {
  const struct fake_telemetry* t = &tel[gpu];
  if (t->locked && type != 2) return t->locked_max_mhz < g->max_clocks_mhz[type] ? t->locked_max_mhz : g->max_clocks_mhz[type];
  return g->clocks_mhz[type];
}

int fake_set_locked_clocks(int gpu, unsigned min_mhz, unsigned max_mhz) {
  char line[96];
  if (tel[gpu].control_denied) return R_NO_PERMISSION;
  if (min_mhz > max_mhz) return R_INVALID_ARGUMENT;
  tel[gpu].locked = 1;
  tel[gpu].locked_min_mhz = min_mhz;
  tel[gpu].locked_max_mhz = max_mhz;
  snprintf(line, sizeof line, "locked_clocks %d %u %u", gpu, min_mhz, max_mhz);
  log_control(gpu, line);
  return R_SUCCESS;
}

int fake_reset_locked_clocks(int gpu) {
  char line[64];
  if (tel[gpu].control_denied) return R_NO_PERMISSION;
  tel[gpu].locked = 0;
  snprintf(line, sizeof line, "reset_locked_clocks %d", gpu);
  log_control(gpu, line);
  return R_SUCCESS;
}

int fake_set_power_limit(int gpu, struct fake_gpu* g, unsigned mw) {
  char line[64];
  if (tel[gpu].control_denied) return R_NO_PERMISSION;
  if (mw < tel[gpu].limit_min_mw || mw > tel[gpu].limit_max_mw) return R_INVALID_ARGUMENT;
  g->power_limit_mw = mw;
  snprintf(line, sizeof line, "power_limit %d %u", gpu, mw);
  log_control(gpu, line);
  return R_SUCCESS;
}

void fake_power_limit_range(int gpu, unsigned* min_mw, unsigned* max_mw) {
  *min_mw = tel[gpu].limit_min_mw;
  *max_mw = tel[gpu].limit_max_mw;
}

int fake_clocks_locked(int gpu) { return tel[gpu].locked; }

/* --- fingerprint getters --------------------------------------------------------------------------------------- */
unsigned fake_applications_clock_mhz(int gpu, const struct fake_gpu* g, int type) {
  return tel[gpu].app_clocks_mhz[type] ? tel[gpu].app_clocks_mhz[type] : g->max_clocks_mhz[type];
}

int fake_ecc_mode(int gpu, unsigned* current, unsigned* pending) {
  if (!tel[gpu].ecc_supported) return R_NOT_SUPPORTED;
  *current = tel[gpu].ecc_current;
  *pending = tel[gpu].ecc_pending;
  return R_SUCCESS;
}

unsigned fake_pcie(int gpu, int which) { return tel[gpu].pcie[which]; }
