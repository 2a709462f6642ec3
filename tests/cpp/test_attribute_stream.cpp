// The streaming attribution kernel against the in-memory one on a long random run fed in small pieces: the same
// results bit for bit, with the curve buffer trimmed many times (under ASan/UBSan, also that every index it reads
// is inside the buffer it holds).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.h"
#include "fastmeter/attribute.h"
#include "fastmeter/attribute_stream.h"

using namespace fastmeter;

namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

struct Run {
  std::vector<int64_t> t;
  std::vector<double> e, bound;
  std::vector<int64_t> start, end, first, offsets{0}, chunk_t, chunk_tokens;
  std::vector<uint8_t> has_first;
};

Run make_run(uint32_t seed, size_t n_points, size_t n_requests) {
  std::mt19937_64 rng(seed);
  Run r;
  double e = 0;
  for (size_t i = 0; i < n_points; ++i) {
    r.t.push_back(static_cast<int64_t>(i) * 1000 + static_cast<int64_t>(rng() % 500));
    e += static_cast<double>(rng() % 1000) * 1e-3;
    r.e.push_back(e);
    r.bound.push_back(rng() % 7 == 0 ? std::nan("") : static_cast<double>(rng() % 100) * 1e-3);
  }
  const int64_t span = r.t.back();
  int64_t s = -5000;
  for (size_t q = 0; q < n_requests; ++q) {
    s += static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * span / static_cast<int64_t>(n_requests)));
    const int64_t end = s + static_cast<int64_t>(rng() % 200000);
    r.start.push_back(s);
    r.end.push_back(end);
    const size_t k = rng() % 5;
    int64_t c = s;
    for (size_t j = 0; j < k; ++j) {
      c += static_cast<int64_t>(rng() % static_cast<uint64_t>((end - s) / 5 + 1));
      r.chunk_t.push_back(c);
      r.chunk_tokens.push_back(static_cast<int64_t>(rng() % 3));
    }
    r.offsets.push_back(static_cast<int64_t>(r.chunk_t.size()));
    r.has_first.push_back(k > 0);
    r.first.push_back(k > 0 ? r.chunk_t[r.chunk_t.size() - k] : 0);
  }
  return r;
}

void check_method(const Run& r, AttributionMethod method, double period_s) {
  const size_t n = r.start.size();
  AttributionInput in;
  in.t_ns = r.t.data();
  in.energy_j = r.e.data();
  in.bound_j = r.bound.data();
  in.n_points = r.t.size();
  in.start_ns = r.start.data();
  in.end_ns = r.end.data();
  in.first_token_ns = r.first.data();
  in.has_first_token = r.has_first.data();
  in.n_requests = n;
  in.chunk_offsets = r.offsets.data();
  in.chunk_t_ns = r.chunk_t.data();
  in.chunk_tokens = r.chunk_tokens.data();
  in.n_chunks = r.chunk_t.size();
  in.method = method;
  in.update_period_s = period_s;
  std::vector<double> energy(n), prefill(n), share(n), unc(n);
  AttributionOutput out{energy.data(), prefill.data(), share.data(), unc.data()};
  attribute(in, out);

  AttributionStream s(method, period_s);
  StreamResults got;
  size_t next_point = 0;
  for (size_t lo = 0; lo < n; lo += 37) {  // request batches of 37, curve in pieces of 1000 as needed
    const size_t hi = std::min(n, lo + 37);
    std::vector<int64_t> off;
    for (size_t q = lo; q <= hi; ++q) off.push_back(r.offsets[q] - r.offsets[lo]);
    s.add_requests(&r.start[lo], &r.end[lo], &r.first[lo], &r.has_first[lo], hi - lo, off.data(),
                   r.chunk_t.data() + r.offsets[lo], r.chunk_tokens.data() + r.offsets[lo]);
    while (next_point < r.t.size() && r.t[next_point - (next_point ? 1 : 0)] <= s.curve_needed_until_ns()) {
      const size_t m = std::min<size_t>(1000, r.t.size() - next_point);
      s.add_curve(&r.t[next_point], &r.e[next_point], &r.bound[next_point], m);
      next_point += m;
    }
    s.advance(got);
    CHECK(s.curve_points_held() < 2 * 65536 + 4000);
  }
  s.end_requests();
  if (next_point < r.t.size())
    s.add_curve(&r.t[next_point], &r.e[next_point], &r.bound[next_point], r.t.size() - next_point);
  s.end_curve();
  s.advance(got);
  CHECK(s.done());
  CHECK(got.first_index == 0 && got.energy_j.size() == n);
  for (size_t q = 0; q < n; ++q) {
    CHECK(same_bits(got.energy_j[q], energy[q]));
    CHECK(same_bits(got.prefill_energy_j[q], prefill[q]));
    CHECK(same_bits(got.attributed_s[q], share[q]));
    CHECK(same_bits(got.uncertainty_j[q], unc[q]));
  }
  CHECK(same_bits(s.idle_j(), out.idle_j) && same_bits(s.idle_s(), out.idle_s));
  CHECK(same_bits(s.total_j(), out.total_j) && same_bits(s.span_s(), out.span_s));
}

}  // namespace

int main() {
  const Run r = make_run(11, 400000, 3000);
  check_method(r, AttributionMethod::kTimeShare, 2e-6);
  check_method(r, AttributionMethod::kTokenWeighted, 2e-6);
  check_method(r, AttributionMethod::kTokenWeighted, std::nan(""));  // unknown period: no edge power is read
  check_method(r, AttributionMethod::kTimeShare, 0.0);
  // Out of start order is refused; so is a curve point going back in time.
  AttributionStream s(AttributionMethod::kTimeShare, 0.0);
  const int64_t zero[2] = {0, 0}, later[1] = {10}, earlier[1] = {5};
  const uint8_t no[1] = {0};
  s.add_requests(later, later, zero, no, 1, zero, nullptr, nullptr);
  CHECK_THROWS(s.add_requests(earlier, earlier, zero, no, 1, zero, nullptr, nullptr), std::invalid_argument);
  const int64_t t[2] = {3, 3};
  const double e[2] = {0.0, 1.0};
  CHECK_THROWS(s.add_curve(t, e, nullptr, 2), std::invalid_argument);
  std::puts("test_attribute_stream: ok");
  return 0;
}
