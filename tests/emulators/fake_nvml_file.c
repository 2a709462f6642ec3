/* NVML emulator: the `power file <path>` waveform, power steps appended live by another process.
 *
 * Each line of the file is `<t_ns> <w>`: power w watts from CLOCK_MONOTONIC instant t_ns on (strictly increasing
 * t_ns; the first w also holds before the first t_ns; no line yet: 0 W). A scripted server appends a step before
 * its instant comes, so every value the emulator reports follows the server's own schedule exactly. The file is
 * opened once and followed: each evaluation first reads whatever complete lines were appended since the last
 * (a partial last line waits for its newline). Times become seconds since the GPU's waveform origin, as
 * `power steps` holds them, and the integral is accumulated in the same order, so tests/emulators/nvml.py
 * (FileSteps) reproduces every reported value bit for bit.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_nvml.h"

struct file_wave {
  char path[512];
  FILE* f;
  int64_t origin_ns;
  size_t n, cap;
  double *t_s, *w, *cum; /* cum[i] = integral from t_s[0] to t_s[i] */
  int64_t last_t_ns;
  char partial[256];
  size_t partial_len;
  pthread_mutex_t lock; /* the sampler thread and pynvml may evaluate at once */
};

/* Re-reading the config at every nvmlInit must not open the file again: one follower per path, kept for the
 * process's lifetime (a test process uses a handful). */
#define MAX_FILE_WAVES 64
static struct file_wave* waves[MAX_FILE_WAVES];
static int n_waves;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

static void push_step(struct file_wave* fw, int64_t t_ns, double w) {
  if (fw->n > 0 && t_ns <= fw->last_t_ns) {
    fprintf(stderr, "fake_nvml: %s: step at %lld ns is not after the previous one; ignored\n", fw->path,
            (long long)t_ns);
    return;
  }
  if (fw->n == fw->cap) {
    fw->cap = fw->cap ? 2 * fw->cap : 1024;
    fw->t_s = realloc(fw->t_s, fw->cap * sizeof *fw->t_s);
    fw->w = realloc(fw->w, fw->cap * sizeof *fw->w);
    fw->cum = realloc(fw->cum, fw->cap * sizeof *fw->cum);
    if (!fw->t_s || !fw->w || !fw->cum) abort();
  }
  const size_t i = fw->n++;
  fw->t_s[i] = (double)(t_ns - fw->origin_ns) * 1e-9;
  fw->w[i] = w;
  fw->cum[i] = i ? fw->cum[i - 1] + fw->w[i - 1] * (fw->t_s[i] - fw->t_s[i - 1]) : 0.0;
  fw->last_t_ns = t_ns;
}

static void follow(struct file_wave* fw) {
  char buf[256];
  clearerr(fw->f); /* EOF last time; the writer may have appended since */
  while (fgets(buf, sizeof buf, fw->f)) {
    const size_t len = strlen(buf);
    if (fw->partial_len + len >= sizeof fw->partial) {
      fw->partial_len = 0; /* an overlong line is no step */
      continue;
    }
    memcpy(fw->partial + fw->partial_len, buf, len + 1);
    fw->partial_len += len;
    if (fw->partial[fw->partial_len - 1] != '\n') return; /* the rest of this line is not written yet */
    long long t_ns;
    double w;
    if (sscanf(fw->partial, "%lld %lf", &t_ns, &w) == 2) push_step(fw, (int64_t)t_ns, w);
    fw->partial_len = 0;
  }
}

struct file_wave* fake_file_wave_open(const char* path, int64_t origin_ns) {
  pthread_mutex_lock(&registry_lock);
  struct file_wave* fw = NULL;
  for (int i = 0; i < n_waves && !fw; ++i)
    if (strcmp(waves[i]->path, path) == 0 && waves[i]->origin_ns == origin_ns) fw = waves[i];
  if (!fw && n_waves < MAX_FILE_WAVES) {
    FILE* f = fopen(path, "r");
    if (f) {
      fw = calloc(1, sizeof *fw);
      if (!fw) abort();
      snprintf(fw->path, sizeof fw->path, "%s", path);
      fw->f = f;
      fw->origin_ns = origin_ns;
      pthread_mutex_init(&fw->lock, NULL);
      waves[n_waves++] = fw;
    }
  }
  pthread_mutex_unlock(&registry_lock);
  return fw;
}

/* Integral of the steps from their first step time to s (negative before it), as steps_integral. */
static double integral(const struct file_wave* fw, double s) {
  if (fw->n == 0) return 0.0;
  if (s <= fw->t_s[0]) return fw->w[0] * (s - fw->t_s[0]);
  size_t lo = 0, hi = fw->n; /* last i with t_s[i] < s */
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    if (fw->t_s[mid] < s) lo = mid;
    else hi = mid;
  }
  return fw->cum[lo] + fw->w[lo] * (s - fw->t_s[lo]);
}

double fake_file_power_w(struct file_wave* fw, double s) {
  pthread_mutex_lock(&fw->lock);
  follow(fw);
  double p = fw->n ? fw->w[0] : 0.0;
  for (size_t i = fw->n; i-- > 0;)
    if (s >= fw->t_s[i]) {
      p = fw->w[i];
      break;
    }
  pthread_mutex_unlock(&fw->lock);
  return p;
}

double fake_file_energy_j(struct file_wave* fw, double s) {
  pthread_mutex_lock(&fw->lock);
  follow(fw);
  const double e = integral(fw, s) - integral(fw, 0.0);
  pthread_mutex_unlock(&fw->lock);
  return e;
}
