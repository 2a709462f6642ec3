// Ring transfer rate: one producer pushes N fastmeter::Sample records through SpscRing, one consumer drains them
// in bulk (as the meter's drain thread does). Threads are pinned to different CPUs when the machine allows it.
// Prints one JSON line: items, seconds, items_per_ms, producer_full_spins, pinned, checksum_ok.
// Build: g++ -std=c++17 -O2 -pthread -I csrc benchmarks/cpp/bench_ring.cpp -o bench_ring
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "fastmeter/ring.h"
#include "fastmeter/sample.h"

namespace {

bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const long long n_items = argc > 1 ? std::atoll(argv[1]) : 20000000LL;
  const size_t capacity = argc > 2 ? static_cast<size_t>(std::atoll(argv[2])) : (size_t{1} << 16);
  const int ncpu = static_cast<int>(std::thread::hardware_concurrency());
  fastmeter::SpscRing<fastmeter::Sample> ring(capacity);
  std::atomic<bool> go{false};
  std::atomic<int> pinned{0};
  uint64_t full_spins = 0, sum_in = 0, sum_out = 0;

  std::thread consumer([&] {
    if (ncpu > 1 && pin_to(1)) pinned.fetch_add(1);
    std::vector<fastmeter::Sample> buf(4096);
    while (!go.load(std::memory_order_acquire)) {
    }
    long long got = 0;
    while (got < n_items) {
      const size_t n = ring.pop_bulk(buf.data(), buf.size());
      for (size_t i = 0; i < n; ++i) sum_out += static_cast<uint64_t>(buf[i].t_ns);
      got += static_cast<long long>(n);
    }
  });
  if (ncpu > 1 && pin_to(0)) pinned.fetch_add(1);
  const auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (long long i = 0; i < n_items; ++i) {
    fastmeter::Sample s{i, 1.0, 2.0, static_cast<uint32_t>(i & 7), 0};
    while (!ring.try_push(s)) ++full_spins;
    sum_in += static_cast<uint64_t>(i);
  }
  consumer.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "{\"items\": %lld, \"seconds\": %.6f, \"items_per_ms\": %.1f, \"producer_full_spins\": %llu, "
      "\"pinned\": %s, \"checksum_ok\": %s}\n",
      n_items, secs, static_cast<double>(n_items) / (secs * 1e3), static_cast<unsigned long long>(full_spins),
      pinned.load() == 2 ? "true" : "false", sum_in == sum_out ? "true" : "false");
  return sum_in == sum_out ? 0 : 1;
}
