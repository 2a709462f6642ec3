// The error bound's change points thinned for long runs: memory bounded by the window plus the thinned history, the
// thinned points exactly the subset one pass over all old points keeps, searches across chunks equal to a search of
// every point, and every range still holds what the unthinned range held (it only widens), by at most the power
// limit times the resolution.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "check.h"
#include "fastmeter/bound.h"

using namespace fastmeter;

constexpr int64_t kMs = 1'000'000;
constexpr size_t kChunk = ChangePointStore::kChunk;
constexpr size_t kChunkBytes = kChunk * sizeof(ChangePoint) + sizeof(size_t);

// A RAPL-like counter: 1 mJ ticks, refreshed at every 1 ms poll, power between 50 and 250 W.
static void feed(BoundBuilder& b, int64_t from_ms, int64_t to_ms, double& energy_j) {
  for (int64_t i = from_ms; i < to_ms; ++i) {
    const double p_w = 150.0 + 100.0 * std::sin(static_cast<double>(i) * 0.013);
    energy_j += std::floor(p_w) * 1e-3;
    b.push(i * kMs, energy_j, p_w, true, i > 0);
  }
}

// The specification of thinning: one pass in time order keeps a point when it is at least resolution_ns after the
// previous kept one (the first always).
static std::vector<ChangePoint> thin_once(const std::vector<ChangePoint>& pts, int64_t resolution_ns) {
  std::vector<ChangePoint> out;
  for (const ChangePoint& p : pts)
    if (out.empty() || p.hi_ns - out.back().hi_ns >= resolution_ns) out.push_back(p);
  return out;
}

static bool same(const ChangePoint* a, const ChangePoint* b) {
  if (!a || !b) return a == b;
  return a->lo_ns == b->lo_ns && a->hi_ns == b->hi_ns && a->energy_j == b->energy_j;
}

// around() by looking at every point.
static ChangePointStore::Around brute_around(const std::vector<ChangePoint>& v, int64_t t_ns) {
  size_t i = 0;
  while (i < v.size() && v[i].hi_ns <= t_ns) ++i;
  const ChangePoint* before = i > 0 ? &v[i - 1] : nullptr;
  const ChangePoint* at = i < v.size() ? &v[i] : nullptr;
  const ChangePoint* after = i + 1 < v.size() ? &v[i + 1] : nullptr;
  return {before, at, after};
}

static void ranges_only_widen() {
  const int64_t duration_ms = 120'000, resolution = 10 * kMs;
  BoundBuilder full(1e-3), thin(1e-3);
  double e_full = 0.0, e_thin = 0.0;
  for (int64_t t = 0; t < duration_ms; t += 1000) {  // one drain per simulated second, as the Meter does
    feed(full, t, t + 1000, e_full);
    feed(thin, t, t + 1000, e_thin);
    thin.thin_before((t + 1000 - 10'000) * kMs, resolution);  // a 10 s raw window
  }
  CHECK(full.points() == static_cast<size_t>(duration_ms));
  // The window, the chunk straddling its start and the one being filled, one point per 10 ms before it.
  CHECK(thin.points() <= 10'000 + 2 * kChunk + static_cast<size_t>(duration_ms * kMs / resolution) + 1);
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int64_t> d(-5 * kMs, duration_ms * kMs);
  const double widen_j = full.max_power_w() * static_cast<double>(2 * (resolution + 2 * kMs)) * 1e-9 + 1e-9;
  bool wider = false;
  for (int i = 0; i < 20000; ++i) {
    const int64_t t = d(rng);
    const EnergyRange a = full.range_at(t), b = thin.range_at(t);
    CHECK(b.lo_j <= a.lo_j && a.hi_j <= b.hi_j);  // still holds everything the full range held
    if (std::isfinite(a.lo_j) && std::isfinite(a.hi_j)) CHECK(b.hi_j - b.lo_j <= a.hi_j - a.lo_j + 2 * widen_j);
    wider = wider || b.hi_j - b.lo_j > a.hi_j - a.lo_j;
    if (t > (duration_ms - 9'000) * kMs) CHECK(a.lo_j == b.lo_j && a.hi_j == b.hi_j);  // the recent window as is
  }
  CHECK(wider);
  CHECK(full.settled_at(0) == thin.settled_at(0) && full.updated_since(5 * kMs) == thin.updated_since(5 * kMs));
}

static void store_thins_whole_chunks_as_one_pass_would() {
  // Change points at irregular instants (1-3 ms apart), thinned to 5 ms behind a 7 s window as time goes on.
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int64_t> gap(1 * kMs, 3 * kMs);
  const int64_t window = 7'000 * kMs, resolution = 5 * kMs;
  std::vector<ChangePoint> all;
  ChangePointStore s;
  int64_t t = 0, cutoff = 0;
  double e = 0.0;
  for (int i = 0; i < 40'000; ++i) {
    const int64_t lo = t;
    t += gap(rng);
    e += 0.25;
    all.push_back({i == 0 ? INT64_MIN : lo, t, e});
    s.push(all.back());
    if (i % 500 == 499) {
      cutoff = t - window;
      s.thin_before(cutoff, resolution);
    }
  }
  // What must have been thinned by the last call: every whole chunk before its cutoff, never the newest one.
  size_t m = 0;
  while (m + kChunk < all.size() && all[m + kChunk - 1].hi_ns < cutoff) m += kChunk;
  CHECK(m > 5 * kChunk);
  std::vector<ChangePoint> want = thin_once({all.begin(), all.begin() + static_cast<std::ptrdiff_t>(m)}, resolution);
  want.insert(want.end(), all.begin() + static_cast<std::ptrdiff_t>(m), all.end());
  const std::vector<ChangePoint> got = s.to_vector();
  CHECK(got.size() == want.size() && s.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(same(&got[i], &want[i]));
  CHECK(same(&s.back(), &all.back()));

  // around() across chunk boundaries (history, recent, and between them) equals a search of every point.
  std::vector<int64_t> probes = {INT64_MIN, -1, 0, INT64_MAX};
  for (const ChangePoint& p : got) {
    probes.push_back(p.hi_ns - 1);
    probes.push_back(p.hi_ns);
    probes.push_back(p.hi_ns + 1);
  }
  std::uniform_int_distribution<int64_t> anywhere(-kMs, t + kMs);
  for (int i = 0; i < 5000; ++i) probes.push_back(anywhere(rng));
  for (int64_t probe : probes) {
    const ChangePointStore::Around a = s.around(probe), b = brute_around(got, probe);
    CHECK(same(a.before, b.before) && same(a.at, b.at) && same(a.after, b.after));
  }
  // resolution 0 keeps every point.
  ChangePointStore keep;
  for (const ChangePoint& p : all) keep.push(p);
  keep.thin_before(INT64_MAX, 0);
  CHECK(keep.size() == all.size());
}

static void memory_is_the_window_plus_the_thinned_history() {
  // Ten simulated minutes of a counter that changes at every 1 ms poll, a 10 s window and 10 ms resolution, as the
  // Meter drains (every 100 ms): the recent points' memory must not grow once the window is full, and the thinned
  // history (in history blocks) only by one point per resolution.
  const int64_t window_ms = 10'000, resolution = 10 * kMs;
  BoundBuilder b(1e-3);
  double e = 0.0;
  size_t bytes_full = 0, most = 0;
  for (int64_t t = 0; t < 600'000; t += 100) {
    feed(b, t, t + 100, e);
    b.thin_before((t + 100 - window_ms) * kMs, resolution);
    // At most: the window's points and those of the thinned history (one per 10 ms) in full chunks, plus the
    // history's last chunk, the chunk straddling the cutoff, the one being filled (two partly), and the spare.
    const size_t history = static_cast<size_t>(std::max<int64_t>(t + 100 - window_ms, 0) / 10) + 1;
    const size_t limit = (static_cast<size_t>(window_ms) + 1 + history) * kChunkBytes / kChunk + 5 * kChunkBytes;
    CHECK(b.bytes() + b.history_bytes() <= limit);
    CHECK(b.history_bytes() <= history * kChunkBytes / kChunk + kChunkBytes);
    if (t + 100 == 2 * window_ms) bytes_full = b.bytes();
    most = std::max(most, b.bytes());
  }
  // After the window filled (t = 20 s: one more window for the thinning to catch up), the recent points' memory is
  // flat to the rounding of the window to whole chunks.
  CHECK(bytes_full > 0);
  CHECK(most - bytes_full <= 2 * kChunkBytes);
}

int main() {
  ranges_only_widen();
  store_thins_whole_chunks_as_one_pass_would();
  memory_is_the_window_plus_the_thinned_history();
  return 0;
}
