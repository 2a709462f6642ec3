// History blocks: data written to the file-backed blocks survives dropping them from the process, leaves RSS when
// dropped, crosses mapping regions; stores whose history lives on disk answer queries bit for bit like RAM ones.
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "fastmeter/bound.h"
#include "fastmeter/history_blocks.h"
#include "fastmeter/integrate.h"

using namespace fastmeter;

constexpr int64_t kMs = 1'000'000;
constexpr size_t kWords = HistoryBlocks::kBlockBytes / sizeof(uint64_t);

static std::string temp_dir() {
  char name[] = "/tmp/fastmeter-history-test-XXXXXX";
  CHECK(mkdtemp(name) != nullptr);
  return name;
}

// Resident bytes of this process's mappings of files under dir (/proc/self/smaps), so sanitizer shadow memory and
// the allocator do not blur the count.
static long mapped_resident_bytes(const std::string& dir) {
  FILE* f = std::fopen("/proc/self/smaps", "r");
  CHECK(f != nullptr);
  char line[4096];
  bool ours = false;
  long total_kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long lo = 0, hi = 0;
    int name_at = 0;
    if (std::sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &name_at) == 2 && name_at > 0) {
      ours = std::strncmp(line + name_at, dir.c_str(), dir.size()) == 0;
    } else if (ours && std::strncmp(line, "Rss:", 4) == 0) {
      total_kb += std::strtol(line + 4, nullptr, 10);
    }
  }
  std::fclose(f);
  return total_kb * 1024;
}

static void file_blocks_keep_their_data_outside_rss() {
  const std::string dir = temp_dir();
  const size_t n = 200;  // 19.2 MB, 67 regions of 3 blocks
  {
    HistoryBlocks h(dir, 3);
    CHECK(h.spilling());
    std::vector<uint64_t*> blocks;
    for (size_t b = 0; b < n; ++b) {
      auto* p = static_cast<uint64_t*>(h.allocate());
      for (size_t i = 0; i < kWords; ++i) p[i] = b * 1'000'003 + i;
      blocks.push_back(p);
    }
    CHECK(h.file_bytes() == n * HistoryBlocks::kBlockBytes && h.ram_bytes() == 0 && h.error().empty());
    // Each allocate() dropped what was written before it: only the last block can still be resident.
    CHECK(mapped_resident_bytes(dir) <= static_cast<long>(HistoryBlocks::kBlockBytes));
    for (size_t b = 0; b < n; ++b)
      for (size_t i = 0; i < kWords; i += 97) CHECK(blocks[b][i] == b * 1'000'003 + i);
    for (size_t b = 0; b < n; ++b) CHECK(blocks[b][kWords - 1] == b * 1'000'003 + kWords - 1);
    CHECK(mapped_resident_bytes(dir) > 12 * 1024 * 1024);  // reading faulted them back in
    h.release_resident();
    CHECK(mapped_resident_bytes(dir) == 0);
  }
  CHECK(rmdir(dir.c_str()) == 0);  // the file was never linked there
}

static void ram_blocks_and_a_bad_directory() {
  HistoryBlocks h("", 2);
  CHECK(!h.spilling());
  for (size_t b = 0; b < 7; ++b) static_cast<uint64_t*>(h.allocate())[kWords - 1] = b;
  CHECK(h.ram_bytes() == 7 * HistoryBlocks::kBlockBytes && h.file_bytes() == 0);
  bool threw = false;
  try {
    HistoryBlocks bad("/nonexistent/fastmeter");
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()).find("history_dir") != std::string::npos;
  }
  CHECK(threw);
}

// A RAPL-like counter refreshed at every 1 ms poll under a varying load: every knot and change point is history
// material once older than the cutoff.
static void feed(KnotBuilder& kb, BoundBuilder& b, int64_t duration_ns) {
  double e = 0.0;
  for (int64_t t = 0; t <= duration_ns; t += kMs) {
    const double w = 200.0 + 120.0 * std::sin(static_cast<double>(t) * 7e-9);
    e += w * 1e-3;
    kb.push(t, e, w, true, true);
    b.push(t, e, w, true, true);
    if (t % (100 * kMs) == 0) {  // as the Meter drains: settle what left the 5 s window
      kb.settle_before(t - 5'000 * kMs);
      b.thin_before(t - 5'000 * kMs, 10 * kMs);
    }
  }
}

static void stores_on_disk_answer_like_stores_in_ram() {
  const std::string dir = temp_dir();
  const int64_t duration = 300'000 * kMs;
  KnotBuilder ram_k(0, 10 * kMs), disk_k(0, 10 * kMs);
  BoundBuilder ram_b(1e-6), disk_b(1e-6);
  auto disk = std::make_shared<HistoryBlocks>(dir, 4);
  disk_k.use_history(disk);
  disk_b.use_history(disk);
  feed(ram_k, ram_b, duration);
  feed(disk_k, disk_b, duration);
  CHECK(disk->file_bytes() >= 10 * HistoryBlocks::kBlockBytes && disk->ram_bytes() == 0);
  disk->release_resident();
  const std::vector<Knot> a = ram_k.knots().to_vector(), d = disk_k.knots().to_vector();
  CHECK(a.size() == d.size());
  for (size_t i = 0; i < a.size(); ++i)
    CHECK(std::memcmp(&a[i], &d[i], sizeof(Knot)) == 0);  // bit for bit, NaN slopes included
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> at(-kMs, duration + kMs);
  for (int i = 0; i < 20000; ++i) {
    const int64_t t = at(rng);
    CHECK(energy_at(ram_k.knots(), t) == energy_at(disk_k.knots(), t));
    const EnergyRange r = ram_b.range_at(t), q = disk_b.range_at(t);
    CHECK(r.lo_j == q.lo_j && r.hi_j == q.hi_j);
  }
  CHECK(rmdir(dir.c_str()) == 0);
}

int main() {
  file_blocks_keep_their_data_outside_rss();
  ram_blocks_and_a_bad_directory();
  stores_on_disk_answer_like_stores_in_ram();
  return 0;
}
