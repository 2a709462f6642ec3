// A fixed-size histogram of non-negative int64 nanosecond values with ~1% relative resolution: O(1) to record,
// O(1) (a scan of a fixed number of buckets) to read a quantile, and its memory never grows with the run.
// Values below 128 ns are counted exactly; above, each power of two is split into 64 buckets (HDR-histogram style),
// so a bucket is at most 1/64 of its lower edge wide. Values of 2^40 ns (~18 min) and more share the last bucket.
// Twin of the bucket arithmetic: python/fastmeter/reference/integrate.py (`bucket_centre_ns`).
#pragma once
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace fastmeter {

namespace log_histogram {
inline constexpr int kSubBits = 6;                  // 64 buckets per power of two
inline constexpr int kMaxBits = 40;                 // values >= 2^40 ns go to the last bucket
inline constexpr size_t kExact = size_t{2} << kSubBits;  // 128 values counted one by one
inline constexpr size_t kBuckets = kExact + (kMaxBits - kSubBits - 1) * (size_t{1} << kSubBits);

inline size_t bucket_of(int64_t v) noexcept {
  if (v < 0) v = 0;
  const auto u = static_cast<uint64_t>(v);
  if (u < kExact) return static_cast<size_t>(u);
  const int top = 63 - __builtin_clzll(u);  // u in [2^top, 2^(top+1)), top >= 7
  if (top >= kMaxBits) return kBuckets - 1;
  const int shift = top - kSubBits;
  const auto sub = static_cast<size_t>((u >> shift) & ((uint64_t{1} << kSubBits) - 1));
  return kExact + static_cast<size_t>(top - kSubBits - 1) * (size_t{1} << kSubBits) + sub;
}

// Middle of a bucket (its lower edge plus half its width, rounded down): the value a quantile reports.
inline int64_t bucket_centre(size_t b) noexcept {
  if (b < kExact) return static_cast<int64_t>(b);
  const size_t k = b - kExact;
  const int shift = static_cast<int>(k >> kSubBits) + 1;
  const uint64_t lo = ((uint64_t{1} << kSubBits) + (k & ((size_t{1} << kSubBits) - 1))) << shift;
  return static_cast<int64_t>(lo + ((uint64_t{1} << shift) >> 1));
}
}  // namespace log_histogram

// Count = uint64_t for one writer under a lock, std::atomic<uint64_t> for writers on several threads.
template <typename Count>
class LogHistogram {
 public:
  void record(int64_t v) noexcept {
    bins_[log_histogram::bucket_of(v)] += 1;
    count_ += 1;
  }
  uint64_t count() const noexcept { return static_cast<uint64_t>(count_); }
  // Centre of the bucket holding the value of rank floor(q * (n - 1)) (0-based, in sorted order); -1 when empty.
  int64_t quantile_ns(double q) const noexcept {
    const uint64_t n = count();
    if (n == 0) return -1;
    return rank_ns(static_cast<uint64_t>(q * static_cast<double>(n - 1)));
  }
 private:
  int64_t rank_ns(uint64_t rank) const noexcept {
    uint64_t seen = 0;
    for (size_t i = 0; i < log_histogram::kBuckets; ++i) {
      seen += static_cast<uint64_t>(bins_[i]);
      if (seen > rank) return log_histogram::bucket_centre(i);
    }
    return log_histogram::bucket_centre(log_histogram::kBuckets - 1);
  }

  std::array<Count, log_histogram::kBuckets> bins_{};
  Count count_{0};
};

// The upper median (sorted[n / 2]) of values recorded by one thread, in the same buckets, readable in O(1): a cursor
// on the median's bucket moves as values arrive, so recording is O(1) amortized for values near the median (a run's
// update intervals) and a query never scans. Not thread-safe.
class MedianHistogram {
 public:
  void record(int64_t v) noexcept {
    const size_t b = log_histogram::bucket_of(v);
    ++bins_[b];
    ++n_;
    if (b < m_) ++below_;
    // Restore below_ <= n_ / 2 < below_ + bins_[m_]: the median's rank lies in bucket m_.
    const uint64_t rank = n_ / 2;
    while (below_ > rank) below_ -= bins_[--m_];
    while (below_ + bins_[m_] <= rank) below_ += bins_[m_++];
  }
  uint64_t count() const noexcept { return n_; }
  // Centre of the bucket holding the upper median; -1 when empty.
  int64_t upper_median_ns() const noexcept { return n_ == 0 ? -1 : log_histogram::bucket_centre(m_); }
  void clear() noexcept { *this = MedianHistogram(); }

 private:
  std::array<uint64_t, log_histogram::kBuckets> bins_{};
  uint64_t n_ = 0, below_ = 0;  // below_: values in buckets before m_
  size_t m_ = 0;
};

}  // namespace fastmeter
