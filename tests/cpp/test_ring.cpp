// SPSC ring: edge cases, and a two-thread stress test whose checksum proves no item is lost, duplicated or torn.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

#include "check.h"
#include "fastmeter/ring.h"
#include "fastmeter/sample.h"

using fastmeter::Sample;
using fastmeter::SpscRing;

static void edge_cases() {
  CHECK_THROWS(SpscRing<int>(0), std::invalid_argument);
  CHECK_THROWS(SpscRing<int>(SIZE_MAX), std::length_error);

  SpscRing<int> r(3);
  CHECK(r.capacity() == 3);
  int v = -1;
  CHECK(!r.try_pop(v));  // empty
  CHECK(r.try_push(1) && r.try_push(2) && r.try_push(3));
  CHECK(!r.try_push(4));  // full: refuses, never blocks or overwrites
  CHECK(r.size_guess() == 3);
  CHECK(r.try_pop(v) && v == 1);
  CHECK(r.try_push(4));  // wraps around the end of the buffer
  int out[8] = {};
  CHECK(r.pop_bulk(out, 8) == 3);
  CHECK(out[0] == 2 && out[1] == 3 && out[2] == 4);
  CHECK(r.size_guess() == 0);
  CHECK(r.pop_bulk(out, 8) == 0);

  SpscRing<int> one(1);  // smallest ring
  CHECK(one.try_push(7) && !one.try_push(8));
  CHECK(one.try_pop(v) && v == 7 && !one.try_pop(v));
}

static void stress() {
  // Fewer items under sanitizers (FASTMETER_STRESS_ITEMS) keeps their 10-50x slowdown affordable.
  const char* env = std::getenv("FASTMETER_STRESS_ITEMS");
  const uint64_t kItems = env ? std::strtoull(env, nullptr, 10) : 5'000'000;
  SpscRing<Sample> ring(1024);
  uint64_t pushed_sum = 0, drops = 0;  // producer-owned until join
  std::atomic<bool> producer_done{false};
  std::thread producer([&] {
    for (uint64_t i = 1; i <= kItems; ++i) {
      Sample s{static_cast<int64_t>(i), static_cast<double>(i), -static_cast<double>(i),
               static_cast<uint32_t>(i & 0xffff), static_cast<uint32_t>(i >> 16)};
      // Most items are retried until they fit, so millions cross between threads; every 8th is tried once and
      // dropped when the ring is full, exactly as the sampler does.
      bool ok = ring.try_push(s);
      while (!ok && i % 8 != 0) {
        std::this_thread::yield();  // on a loaded machine the consumer may share this core
        ok = ring.try_push(s);
      }
      if (ok)
        pushed_sum += i;
      else
        ++drops;
    }
    producer_done.store(true, std::memory_order_release);
  });
  uint64_t popped_sum = 0, popped = 0;
  int64_t last = 0;
  std::vector<Sample> buf(256);
  for (;;) {
    // Read the flag before popping: once it is set and a pop finds nothing, nothing more can arrive.
    const bool finished = producer_done.load(std::memory_order_acquire);
    const size_t n = ring.pop_bulk(buf.data(), buf.size());
    for (size_t k = 0; k < n; ++k) {
      const Sample& s = buf[k];
      const auto i = static_cast<uint64_t>(s.t_ns);
      CHECK(s.t_ns > last);  // FIFO order
      CHECK(s.energy_j == static_cast<double>(i) && s.power_w == -static_cast<double>(i));  // not torn
      CHECK(s.channel == (i & 0xffff) && s.flags == static_cast<uint32_t>(i >> 16));
      last = s.t_ns;
      popped_sum += i;
      ++popped;
    }
    if (n == 0 && finished) break;
  }
  producer.join();
  CHECK(popped_sum == pushed_sum);
  CHECK(popped + drops == kItems);
  std::printf("stress: %llu items, %llu delivered, %llu dropped\n", static_cast<unsigned long long>(kItems),
              static_cast<unsigned long long>(popped), static_cast<unsigned long long>(drops));
}

int main() {
  edge_cases();
  stress();
  std::printf("test_ring: ok\n");
  return 0;
}
