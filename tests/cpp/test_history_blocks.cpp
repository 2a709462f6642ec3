// History blocks: what goes to the file (or to RAM, or to RAM after a failed write) reads back the same; stores
// whose history lives on disk answer queries bit for bit like stores whose history is in RAM.
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
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

static std::vector<uint64_t> block(uint64_t b) {
  std::vector<uint64_t> w(kWords);
  for (size_t i = 0; i < kWords; ++i) w[i] = b * 1'000'003 + i;
  return w;
}

// Each block read back whole and in pieces equals what was put, in file and in RAM mode.
static void check_blocks(const HistoryBlocks& h, const std::vector<uint64_t>& handles) {
  std::vector<uint64_t> got(kWords);
  for (size_t b = 0; b < handles.size(); ++b) {
    CHECK(h.get(handles[b], 0, HistoryBlocks::kBlockBytes, got.data()));
    CHECK(got == block(b));
    uint64_t word = 0;
    CHECK(h.get(handles[b], 8 * 1001, 8, &word) && word == b * 1'000'003 + 1001);
  }
}

static void blocks_round_trip_through_the_file() {
  const std::string dir = temp_dir();
  {
    HistoryBlocks h(dir);
    CHECK(h.spilling());
    std::vector<uint64_t> handles;
    for (uint64_t b = 0; b < 50; ++b) handles.push_back(h.put(block(b).data()));
    CHECK(h.file_bytes() == 50 * HistoryBlocks::kBlockBytes && h.ram_bytes() == 0 && h.error().empty());
    check_blocks(h, handles);
  }
  CHECK(rmdir(dir.c_str()) == 0);  // the file was never linked there
}

// A write that fails (here: the file size limit, as a full disk would) keeps that block and the later ones in RAM
// and says why; the blocks already in the file stay readable.
static void a_failed_write_keeps_the_rest_in_ram() {
  const std::string dir = temp_dir();
  std::signal(SIGXFSZ, SIG_IGN);  // else exceeding the limit kills the process
  rlimit old{};
  CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
  rlimit small = old;
  small.rlim_cur = 3 * HistoryBlocks::kBlockBytes;
  CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
  {
    HistoryBlocks h(dir);
    std::vector<uint64_t> handles;
    for (uint64_t b = 0; b < 6; ++b) handles.push_back(h.put(block(b).data()));
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    CHECK(h.file_bytes() == 3 * HistoryBlocks::kBlockBytes && h.ram_bytes() == 3 * HistoryBlocks::kBlockBytes);
    CHECK(!h.spilling() && h.error().find("kept in RAM") != std::string::npos);
    check_blocks(h, handles);
  }
  CHECK(rmdir(dir.c_str()) == 0);
}

static void ram_blocks_and_a_bad_directory() {
  HistoryBlocks h("");
  CHECK(!h.spilling());
  std::vector<uint64_t> handles;
  for (uint64_t b = 0; b < 7; ++b) handles.push_back(h.put(block(b).data()));
  CHECK(h.ram_bytes() == 7 * HistoryBlocks::kBlockBytes && h.file_bytes() == 0);
  check_blocks(h, handles);
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
  auto disk = std::make_shared<HistoryBlocks>(dir);
  disk_k.use_history(disk);
  disk_b.use_history(disk);
  feed(ram_k, ram_b, duration);
  feed(disk_k, disk_b, duration);
  CHECK(disk->file_bytes() >= 10 * HistoryBlocks::kBlockBytes && disk->ram_bytes() == 0);
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
  blocks_round_trip_through_the_file();
  a_failed_write_keeps_the_rest_in_ram();
  ram_blocks_and_a_bad_directory();
  stores_on_disk_answer_like_stores_in_ram();
  return 0;
}
