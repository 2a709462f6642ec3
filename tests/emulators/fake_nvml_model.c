/* NVML emulator: config parser and waveform model.
 *
 * FAKE_NVML_CONFIG names a text file, read at every nvmlInit that starts a session (refcount 0 -> 1).
 * One directive per line; '#' starts a comment; tokens are separated by blanks. Unknown directives are errors.
 *
 * System directives (before the first `gpu`):
 *   driver <text>            nvmlSystemGetDriverVersion (default 550.54.15)
 *   cuda_driver <int>        nvmlSystemGetCudaDriverVersion(_v2), e.g. 12040 (default)
 *   nvml_version <text>      nvmlSystemGetNVMLVersion (default 12.550.54.15)
 *   t0_ns <int>              default waveform origin, CLOCK_MONOTONIC ns (default: the nvmlInit instant)
 *   init_error <code>        nvmlInit returns this nvmlReturn_t (e.g. 9 DRIVER_NOT_LOADED)
 * `gpu` starts a device (index = order of appearance); the directives after it configure that device:
 *   name <text to end of line>   uuid <text>   t0_ns <int>   energy_offset_mj <int> (counter value at t0)
 *   power constant <w>
 *   power square <low_w> <high_w> <period_s> <duty>     (high while frac(s / period_s) < duty)
 *   power steps <t_s> <w> [<t_s> <w> ...]                (w from t_s on; the first w also before the first t_s)
 *   power file <path>        steps `<t_ns> <w>` (CLOCK_MONOTONIC ns) appended live to <path> by a scripted server
 *                            (fake_nvml_file.c); put the GPU's t0_ns before it
 *   counter_refresh_ms <ms>  energy counter = offset + floor(1000 * E(tc)) mJ, tc = t0 + k*refresh the latest
 *                            instant <= now (0 = continuous); E = exact integral of the waveform from t0
 *   power_refresh_ms <ms>    power values are evaluated at the latest t0 + k*refresh <= now (0 = now)
 *   power_phase_ms <ms>      power refreshes at t0 + phase + k*power_refresh_ms, phase after the counter's grid
 *                            (default 0: both refresh together)
 *   power_window_ms <ms>     instant power (field 186) = mean true power over this trailing window (0 = exact)
 *   average_window_ms <ms>   field 185 and nvmlDeviceGetPowerUsage: mean over this window (default 1000)
 *   power_delay_ms <ms>      fields 185/186 and nvmlDeviceGetPowerUsage: the value published at refresh instant r
 *                            is the mean over [r - delay - window, r - delay] (default 0)
 *   counter_delay_ms <ms>    the counter published at refresh instant tc holds E(tc - delay) (default 0)
 *   latency_us <us>          every value call busy-waits this long after taking its value
 *   fail_after_calls <N> <code>  after N field/energy/power calls every device call returns <code> (15 = lost)
 *   stall_at_call <N> <ms>   the N-th field/energy/power call (1-based) sleeps this long before returning: a
 *                            driver call that hangs once, to show the sampler's poll gap and missed deadlines
 *   refresh_jump <at_ms> <shift_ms>  from t0 + at_ms on, the counter and power refresh instants are
 *                            t0 + shift + k*refresh (a phase jump; 0 <= shift < refresh keeps the counter monotone)
 *   no_energy_counter        field 83 and nvmlDeviceGetTotalEnergyConsumption: NOT_SUPPORTED
 *   no_power_fields          fields 185/186: NOT_SUPPORTED (drivers before R535)
 *   no_instant_power         field 186 alone: NOT_SUPPORTED
 *   no_power_usage           nvmlDeviceGetPowerUsage: NOT_SUPPORTED
 *   no_field_values          nvmlDeviceGetFieldValues: NOT_SUPPORTED as a whole
 *   field_types <energy> <power>  valueType of field 83 / fields 185,186: double uint ulong ull sll sint ushort
 *                            (default ull, uint); integer types carry floor(mW), double the exact mW
 *   power_limit_w <w> (default 700)  arch <int> (default 9 = Hopper)  persistence <0|1> (default 1)
 *   mig <current> <pending> | mig unsupported   temperature_c <c>   utilization <gpu%> <mem%>
 *   clocks_mhz <graphics> <sm> <mem>   max_clocks_mhz <graphics> <sm> <mem>   memory_mib <total> <used>
 *   process <pid> <used_bytes>   (repeatable: nvmlDeviceGetComputeRunningProcesses)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_nvml.h"

int64_t fake_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

double fake_refresh_s(const struct fake_gpu* g, int64_t t_ns, int64_t refresh_ns) {
  int64_t dt = t_ns - g->t0_ns;
  if (refresh_ns > 0) {
    const int64_t shift = (g->jump_at_ns > 0 && dt >= g->jump_at_ns) ? g->jump_shift_ns : 0;
    dt = floor_div(dt - shift, refresh_ns) * refresh_ns + shift;
  }
  return (double)dt * 1e-9;
}

/* Integral of a steps waveform from its first step time to s (negative before it). */
static double steps_integral(const struct wave* w, double s) {
  if (s <= w->step_t_s[0]) return w->step_w[0] * (s - w->step_t_s[0]);
  double acc = 0.0;
  for (int i = 0; i < w->n_steps; ++i) {
    if (i + 1 == w->n_steps || s <= w->step_t_s[i + 1]) return acc + w->step_w[i] * (s - w->step_t_s[i]);
    acc += w->step_w[i] * (w->step_t_s[i + 1] - w->step_t_s[i]);
  }
  return acc;
}

double fake_power_w(const struct wave* w, double s) {
  switch (w->kind) {
    case WAVE_SQUARE: {
      const double x = s / w->period_s;
      return (x - floor(x) < w->duty) ? w->b_w : w->a_w;
    }
    case WAVE_FILE:
      return fake_file_power_w(w->file, s);
    case WAVE_STEPS: {
      double p = w->step_w[0];
      for (int i = 0; i < w->n_steps && s >= w->step_t_s[i]; ++i) p = w->step_w[i];
      return p;
    }
    default:
      return w->a_w;
  }
}

double fake_energy_j(const struct wave* w, double s) {
  switch (w->kind) {
    case WAVE_SQUARE: {
      const double cycles = floor(s / w->period_s);
      const double rem = s - cycles * w->period_s;
      const double on = w->duty * w->period_s;
      return w->a_w * s + (w->b_w - w->a_w) * (cycles * on + (rem < on ? rem : on));
    }
    case WAVE_STEPS:
      return steps_integral(w, s) - steps_integral(w, 0.0);
    case WAVE_FILE:
      return fake_file_energy_j(w->file, s);
    default:
      return w->a_w * s;
  }
}

static void gpu_defaults(struct fake_gpu* g, int index, int64_t t0_ns) {
  memset(g, 0, sizeof *g);
  snprintf(g->name, sizeof g->name, "NVIDIA H200");
  snprintf(g->uuid, sizeof g->uuid, "GPU-00000000-0000-0000-0000-%012d", index);
  g->t0_ns = t0_ns;
  g->wave.kind = WAVE_CONSTANT;
  g->wave.a_w = 100.0;
  g->average_window_s = 1.0;
  g->fail_after_calls = -1;
  g->stall_call = -1;
  g->energy_type = VT_ULL;
  g->power_type = VT_UINT;
  g->power_limit_mw = 700000;
  g->arch = 9;
  g->persistence = 1;
  g->mig_supported = 1;
  g->temperature_c = 40;
  g->clocks_mhz[0] = g->clocks_mhz[1] = 1980;
  g->clocks_mhz[2] = 3201;
  memcpy(g->max_clocks_mhz, g->clocks_mhz, sizeof g->clocks_mhz);
  g->memory_total_b = 143771ULL << 20;
  g->memory_used_b = 512ULL << 20;
}

static int value_type(const char* s) {
  static const char* names[] = {"double", "uint", "ulong", "ull", "sll", "sint", "ushort"};
  for (int i = 0; i < 7; ++i)
    if (s && strcmp(s, names[i]) == 0) return i;
  return -1;
}

static int64_t ms_to_ns(const char* s) { return (int64_t)llround(atof(s) * 1e6); }

/* Applies one directive; returns 0 on success, -1 when the line is malformed. */
static int apply(struct fake_system* sys, char* key, char* rest, char** tok, int n) {
  struct fake_gpu* g = sys->n_gpus > 0 ? &sys->gpus[sys->n_gpus - 1] : NULL;
  if (strcmp(key, "driver") == 0 && n == 1) snprintf(sys->driver, sizeof sys->driver, "%s", tok[0]);
  else if (strcmp(key, "nvml_version") == 0 && n == 1)
    snprintf(sys->nvml_version, sizeof sys->nvml_version, "%s", tok[0]);
  else if (strcmp(key, "cuda_driver") == 0 && n == 1) sys->cuda_driver = atoi(tok[0]);
  else if (strcmp(key, "init_error") == 0 && n == 1) sys->init_error = atoi(tok[0]);
  else if (strcmp(key, "t0_ns") == 0 && n == 1 && !g) {
    for (int i = 0; i < FAKE_MAX_GPUS; ++i) sys->gpus[i].t0_ns = atoll(tok[0]);
  } else if (strcmp(key, "gpu") == 0 && n == 0) {
    if (sys->n_gpus == FAKE_MAX_GPUS) return -1;
    const int64_t t0 = sys->gpus[sys->n_gpus].t0_ns;
    gpu_defaults(&sys->gpus[sys->n_gpus], sys->n_gpus, t0);
    sys->n_gpus++;
  } else if (!g) return -1;
  else if (strcmp(key, "name") == 0 && n >= 1) snprintf(g->name, sizeof g->name, "%s", rest);
  else if (strcmp(key, "uuid") == 0 && n == 1) snprintf(g->uuid, sizeof g->uuid, "%s", tok[0]);
  else if (strcmp(key, "t0_ns") == 0 && n == 1) g->t0_ns = atoll(tok[0]);
  else if (strcmp(key, "energy_offset_mj") == 0 && n == 1) g->energy_offset_mj = atoll(tok[0]);
  else if (strcmp(key, "power") == 0 && n == 2 && strcmp(tok[0], "constant") == 0) {
    g->wave.kind = WAVE_CONSTANT;
    g->wave.a_w = atof(tok[1]);
  } else if (strcmp(key, "power") == 0 && n == 5 && strcmp(tok[0], "square") == 0) {
    g->wave.kind = WAVE_SQUARE;
    g->wave.a_w = atof(tok[1]);
    g->wave.b_w = atof(tok[2]);
    g->wave.period_s = atof(tok[3]);
    g->wave.duty = atof(tok[4]);
    if (!(g->wave.period_s > 0)) return -1;
  } else if (strcmp(key, "power") == 0 && n >= 3 && n % 2 == 1 && strcmp(tok[0], "steps") == 0) {
    g->wave.kind = WAVE_STEPS;
    g->wave.n_steps = (n - 1) / 2;
    if (g->wave.n_steps > FAKE_MAX_STEPS) return -1;
    for (int i = 0; i < g->wave.n_steps; ++i) {
      g->wave.step_t_s[i] = atof(tok[1 + 2 * i]);
      g->wave.step_w[i] = atof(tok[2 + 2 * i]);
      if (i > 0 && !(g->wave.step_t_s[i] > g->wave.step_t_s[i - 1])) return -1;
    }
  } else if (strcmp(key, "power") == 0 && n == 2 && strcmp(tok[0], "file") == 0) {
    /* --- power file (activity attribution's ground truth) --- */
    g->wave.kind = WAVE_FILE;
    g->wave.file = fake_file_wave_open(tok[1], g->t0_ns);
    if (!g->wave.file) return -1;
    /* --- end power file --- */
  } else if (strcmp(key, "counter_refresh_ms") == 0 && n == 1) g->counter_refresh_ns = ms_to_ns(tok[0]);
  else if (strcmp(key, "power_refresh_ms") == 0 && n == 1) g->power_refresh_ns = ms_to_ns(tok[0]);
  else if (strcmp(key, "power_phase_ms") == 0 && n == 1) g->power_phase_ns = ms_to_ns(tok[0]);
  else if (strcmp(key, "power_window_ms") == 0 && n == 1) g->power_window_s = atof(tok[0]) * 1e-3;
  else if (strcmp(key, "average_window_ms") == 0 && n == 1) g->average_window_s = atof(tok[0]) * 1e-3;
  else if (strcmp(key, "power_delay_ms") == 0 && n == 1) g->power_delay_s = atof(tok[0]) * 1e-3;
  else if (strcmp(key, "counter_delay_ms") == 0 && n == 1) g->counter_delay_s = atof(tok[0]) * 1e-3;
  else if (strcmp(key, "latency_us") == 0 && n == 1) g->latency_us = atol(tok[0]);
  else if (strcmp(key, "fail_after_calls") == 0 && n == 2) {
    g->fail_after_calls = atol(tok[0]);
    g->fail_code = atoi(tok[1]);
  } else if (strcmp(key, "refresh_jump") == 0 && n == 2) {
    g->jump_at_ns = ms_to_ns(tok[0]);
    g->jump_shift_ns = ms_to_ns(tok[1]);
  } else if (strcmp(key, "stall_at_call") == 0 && n == 2) {
    g->stall_call = atol(tok[0]);
    g->stall_ns = ms_to_ns(tok[1]);
  } else if (strcmp(key, "no_energy_counter") == 0 && n == 0) g->no_energy_counter = 1;
  else if (strcmp(key, "no_power_fields") == 0 && n == 0) g->no_power_fields = 1;
  else if (strcmp(key, "no_instant_power") == 0 && n == 0) g->no_instant_power = 1;
  else if (strcmp(key, "no_power_usage") == 0 && n == 0) g->no_power_usage = 1;
  else if (strcmp(key, "no_field_values") == 0 && n == 0) g->no_field_values = 1;
  else if (strcmp(key, "field_types") == 0 && n == 2) {
    g->energy_type = value_type(tok[0]);
    g->power_type = value_type(tok[1]);
    if (g->energy_type < 0 || g->power_type < 0) return -1;
  } else if (strcmp(key, "power_limit_w") == 0 && n == 1) g->power_limit_mw = (unsigned)llround(atof(tok[0]) * 1e3);
  else if (strcmp(key, "arch") == 0 && n == 1) g->arch = (unsigned)atoi(tok[0]);
  else if (strcmp(key, "persistence") == 0 && n == 1) g->persistence = (unsigned)atoi(tok[0]);
  else if (strcmp(key, "mig") == 0 && n == 1 && strcmp(tok[0], "unsupported") == 0) g->mig_supported = 0;
  else if (strcmp(key, "mig") == 0 && n == 2) {
    g->mig_current = (unsigned)atoi(tok[0]);
    g->mig_pending = (unsigned)atoi(tok[1]);
  } else if (strcmp(key, "temperature_c") == 0 && n == 1) g->temperature_c = (unsigned)atoi(tok[0]);
  else if (strcmp(key, "utilization") == 0 && n == 2) {
    g->util_gpu = (unsigned)atoi(tok[0]);
    g->util_mem = (unsigned)atoi(tok[1]);
  } else if ((strcmp(key, "clocks_mhz") == 0 || strcmp(key, "max_clocks_mhz") == 0) && n == 3) {
    unsigned* c = key[0] == 'c' ? g->clocks_mhz : g->max_clocks_mhz;
    for (int i = 0; i < 3; ++i) c[i] = (unsigned)atoi(tok[i]);
  } else if (strcmp(key, "memory_mib") == 0 && n == 2) {
    g->memory_total_b = (unsigned long long)atoll(tok[0]) << 20;
    g->memory_used_b = (unsigned long long)atoll(tok[1]) << 20;
  } else if (strcmp(key, "process") == 0 && n == 2 && g->n_procs < FAKE_MAX_PROCS) {
    g->proc_pid[g->n_procs] = (unsigned)atoi(tok[0]);
    g->proc_used_b[g->n_procs] = (unsigned long long)atoll(tok[1]);
    g->n_procs++;
  } else return -1;
  return 0;
}

int fake_load_config(struct fake_system* sys) {
  memset(sys, 0, sizeof *sys);
  snprintf(sys->driver, sizeof sys->driver, "550.54.15");
  snprintf(sys->nvml_version, sizeof sys->nvml_version, "12.550.54.15");
  sys->cuda_driver = 12040;
  const int64_t now = fake_now_ns();
  for (int i = 0; i < FAKE_MAX_GPUS; ++i) sys->gpus[i].t0_ns = now;
  const char* path = getenv("FAKE_NVML_CONFIG");
  if (!path || !*path) {
    fprintf(stderr, "fake_nvml: set FAKE_NVML_CONFIG to a config file\n");
    return R_DRIVER_NOT_LOADED;
  }
  FILE* f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "fake_nvml: cannot open FAKE_NVML_CONFIG=%s\n", path);
    return R_DRIVER_NOT_LOADED;
  }
  char line[2048];
  int lineno = 0, rc = R_SUCCESS;
  while (rc == R_SUCCESS && fgets(line, sizeof line, f)) {
    ++lineno;
    char* hash = strchr(line, '#');
    if (hash) *hash = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    const char* end = line + strlen(line);
    char* key = strtok(line, " \t");
    if (!key) continue;
    const char* rest = key + strlen(key) < end ? key + strlen(key) + 1 : "";
    char restbuf[2048];
    snprintf(restbuf, sizeof restbuf, "%s", rest);
    while (restbuf[0] == ' ' || restbuf[0] == '\t') memmove(restbuf, restbuf + 1, strlen(restbuf));
    char* tok[2 * FAKE_MAX_STEPS + 2];
    int n = 0;
    for (char* t = strtok(NULL, " \t"); t; t = strtok(NULL, " \t")) {
      if (n == (int)(sizeof tok / sizeof tok[0])) {
        n = -1;
        break;
      }
      tok[n++] = t;
    }
    if (n < 0 || apply(sys, key, restbuf, tok, n) != 0) {
      fprintf(stderr, "fake_nvml: %s:%d: bad directive '%s'\n", path, lineno, key);
      rc = R_UNKNOWN;
    }
  }
  fclose(f);
  return rc;
}
