// The bounded raw-sample record: absolute sequence numbers, the count and time bounds, copies across chunks.
#include <cstdint>
#include <limits>
#include <vector>

#include "check.h"
#include "fastmeter/record.h"

using fastmeter::Sample;
using fastmeter::SampleRecord;

static Sample sample(uint64_t seq) {
  // t_ns = seq, so a copy shows which sample landed where.
  return {static_cast<int64_t>(seq), static_cast<double>(seq) * 0.5, -static_cast<double>(seq),
          static_cast<uint32_t>(seq % 7), 0};
}

static void check_copy(const SampleRecord& r, uint64_t from, uint64_t to) {
  const size_t n = static_cast<size_t>(to - from);
  std::vector<int64_t> t(n);
  std::vector<uint32_t> ch(n);
  std::vector<double> e(n), p(n);
  r.copy(from, to, t.data(), ch.data(), e.data(), p.data());
  for (size_t i = 0; i < n; ++i) {
    const uint64_t seq = from + i;
    CHECK(t[i] == static_cast<int64_t>(seq) && ch[i] == seq % 7);
    CHECK(e[i] == static_cast<double>(seq) * 0.5 && p[i] == -static_cast<double>(seq));
  }
}

static void count_bound() {
  const size_t max = 10000;
  SampleRecord r(std::numeric_limits<int64_t>::max(), max);
  size_t bytes_steady = 0;
  for (uint64_t s = 0; s < 200000; ++s) {
    r.append(sample(s));
    if (s % 1000 == 999) {
      r.trim();
      CHECK(r.kept() < max + SampleRecord::kChunk);            // the bound, one chunk of slack
      CHECK(r.kept() >= std::min<uint64_t>(max, r.end_seq()));  // never fewer than asked for
      CHECK(r.first_seq() + r.kept() == r.end_seq());
      if (s > 100000) {
        if (bytes_steady == 0) bytes_steady = r.bytes();
        CHECK(r.bytes() <= bytes_steady + sizeof(int64_t) * SampleRecord::kChunk * 4);  // no growth
      }
    }
  }
  CHECK(r.end_seq() == 200000);
  check_copy(r, r.first_seq(), r.end_seq());
  check_copy(r, r.end_seq() - 3, r.end_seq());
  check_copy(r, r.first_seq() + SampleRecord::kChunk - 5, r.first_seq() + SampleRecord::kChunk + 5);  // straddles
}

static void time_bound() {
  const int64_t keep_ns = 20000;  // with t_ns = seq: the newest 20000 samples by time
  SampleRecord r(keep_ns, std::numeric_limits<size_t>::max() / 2);
  for (uint64_t s = 0; s < 100000; ++s) r.append(sample(s));
  r.trim();
  const auto newest = static_cast<int64_t>(r.end_seq() - 1);
  CHECK(static_cast<int64_t>(r.first_seq()) <= newest - keep_ns);                     // the window is kept
  CHECK(static_cast<int64_t>(r.first_seq()) > newest - keep_ns - static_cast<int64_t>(SampleRecord::kChunk));
  check_copy(r, r.first_seq(), r.end_seq());
}

static void keep_none() {
  SampleRecord r(0, 0);
  for (uint64_t s = 0; s < 5000; ++s) r.append(sample(s));
  r.trim();
  CHECK(r.end_seq() == 5000 && r.kept() == 0 && r.first_seq() == 5000 && r.bytes() == 0);
}

int main() {
  count_bound();
  time_bound();
  keep_none();
  return 0;
}
