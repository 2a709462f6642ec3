// Knot storage across chunks and its decimation: queries equal those over every knot; after decimation, unchanged to
// the last bit for a counter slower than the resolution, and within the stated bound for fast channels.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "check.h"
#include "fastmeter/integrate.h"

using namespace fastmeter;

constexpr int64_t kMs = 1'000'000;

// Power of the simulated load at t (W): between 40 and 360 W, never constant for long.
static double power_w(int64_t t_ns) {
  const double t = static_cast<double>(t_ns) * 1e-9;
  return 200.0 + 120.0 * std::sin(t * 7.0) + 40.0 * std::sin(t * 53.0);
}

// Polls every 1 ms for duration_ns. update_ns > 0: an energy counter refreshed every update_ns (and a power reading
// refreshed with it, 30 ms out of phase); 0: a power-integrated channel (trapezoid energy, power every poll).
static KnotBuilder feed(int64_t duration_ns, int64_t update_ns, int64_t resolution_ns) {
  KnotBuilder kb(update_ns > 0 ? 25 * kMs : 0, resolution_ns);
  double counter_j = 0.0, integrated_j = 0.0, held_w = power_w(0);
  int64_t next_update = update_ns, next_power = 30 * kMs;
  for (int64_t t = 0; t <= duration_ns; t += kMs) {
    if (update_ns > 0) {
      bool changed = false;
      while (t >= next_update) {
        counter_j += power_w(next_update) * static_cast<double>(update_ns) * 1e-9;
        next_update += update_ns;
        changed = true;
      }
      while (t >= next_power) {
        held_w = power_w(next_power);
        next_power += update_ns;
      }
      kb.push(t, counter_j, held_w, true, changed);
    } else {
      if (t > 0) integrated_j += 0.5 * (power_w(t - kMs) + power_w(t)) * 1e-3;
      kb.push(t, integrated_j, power_w(t), false, false);
    }
  }
  return kb;
}

static std::vector<int64_t> instants(int64_t duration_ns, int n) {
  std::mt19937_64 rng(12);
  std::uniform_int_distribution<int64_t> d(-50 * kMs, duration_ns + 50 * kMs);
  std::vector<int64_t> q(static_cast<size_t>(n));
  for (auto& t : q) t = d(rng);
  return q;
}

// energy_at over the store (one chunk's span) equals energy_at over every knot in one array, bit for bit.
static void spans_match_the_whole_curve(const KnotBuilder& kb, const std::vector<int64_t>& q) {
  const std::vector<Knot> all = kb.knots().to_vector();
  CHECK(all.size() == kb.knots().size());
  for (size_t i = 1; i < all.size(); ++i) CHECK(all[i].t_ns > all[i - 1].t_ns);
  for (int64_t t : q) CHECK(energy_at(kb.knots(), t) == energy_at(all.data(), all.size(), t));
  for (const Knot& k : all) CHECK(energy_at(kb.knots(), k.t_ns) == energy_at(all.data(), all.size(), k.t_ns));
}

static void slow_counter_is_bit_exact_after_decimation() {
  const int64_t duration = 900'000 * kMs;  // 15 min of a 100 ms counter: ~9000 intervals, several chunks
  KnotBuilder kb = feed(duration, 100 * kMs, 10 * kMs);
  const std::vector<int64_t> q = instants(duration, 20000);
  spans_match_the_whole_curve(kb, q);
  const size_t knots = kb.knots().size();
  CHECK(knots > 3 * KnotStore::kChunk);
  std::vector<double> before;
  for (int64_t t : q) before.push_back(energy_at(kb.knots(), t));
  kb.settle_before(duration - 10'000 * kMs);
  CHECK(kb.knots().size() == knots);  // every interval is longer than the resolution: all kept
  for (size_t i = 0; i < q.size(); ++i) CHECK(energy_at(kb.knots(), q[i]) == before[i]);
  spans_match_the_whole_curve(kb, q);
}

// Fast channels: each query moves by at most the energy of the kept interval around it, which spans at most the
// resolution (or one poll gap), so by at most max power x max(resolution, poll gap).
static void fast_channel_moves_within_bound(int64_t update_ns) {
  const int64_t duration = 60'000 * kMs, resolution = 10 * kMs;
  KnotBuilder kb = feed(duration, update_ns, resolution);
  const std::vector<int64_t> q = instants(duration, 20000);
  spans_match_the_whole_curve(kb, q);
  std::vector<double> before;
  for (int64_t t : q) before.push_back(energy_at(kb.knots(), t));
  const size_t knots = kb.knots().size();
  const int64_t cutoff = duration - 5'000 * kMs;
  kb.settle_before(cutoff);
  CHECK(kb.knots().size() < knots / 4);  // thinned out
  const double bound_j = 360.0 * static_cast<double>(resolution + kMs) * 1e-9;
  bool moved = false;
  for (size_t i = 0; i < q.size(); ++i) {
    const double after = energy_at(kb.knots(), q[i]);
    CHECK(std::fabs(after - before[i]) <= bound_j);
    moved = moved || after != before[i];
    if (q[i] > cutoff) CHECK(after == before[i]);  // the recent window is untouched
  }
  CHECK(moved);
  spans_match_the_whole_curve(kb, q);
}

int main() {
  slow_counter_is_bit_exact_after_decimation();
  fast_channel_moves_within_bound(kMs);  // a RAPL-like counter, refreshed every poll
  fast_channel_moves_within_bound(0);    // a power-integrated channel
  return 0;
}
