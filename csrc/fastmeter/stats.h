// Lateness histogram of the sampler: written by the sampler thread, read by anyone, lock-free (relaxed atomics).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>

namespace fastmeter {

class LatenessHistogram {
 public:
  // 1 µs bins up to kBins µs; later polls land in the last bin (their exact maximum is kept separately).
  static constexpr int kBins = 20000;

  void record(int64_t late_ns) noexcept {
    if (late_ns < 0) late_ns = 0;
    int64_t bin = late_ns / 1000;
    if (bin >= kBins) bin = kBins - 1;
    bins_[static_cast<size_t>(bin)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    int64_t prev = max_ns_.load(std::memory_order_relaxed);
    while (late_ns > prev && !max_ns_.compare_exchange_weak(prev, late_ns, std::memory_order_relaxed)) {
    }
  }

  // q in [0, 1]; upper edge of the bin holding the q-quantile, in µs. 0 when empty.
  double quantile_us(double q) const noexcept {
    const uint64_t n = count_.load(std::memory_order_relaxed);
    if (n == 0) return 0.0;
    const auto target = static_cast<uint64_t>(q * static_cast<double>(n - 1)) + 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBins; ++i) {
      seen += bins_[static_cast<size_t>(i)].load(std::memory_order_relaxed);
      if (seen >= target) return static_cast<double>(i + 1);
    }
    return static_cast<double>(kBins);
  }
  double max_us() const noexcept { return static_cast<double>(max_ns_.load(std::memory_order_relaxed)) / 1e3; }
  uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kBins> bins_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<int64_t> max_ns_{0};
};

}  // namespace fastmeter
