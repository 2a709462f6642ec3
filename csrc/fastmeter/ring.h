// Lock-free single-producer/single-consumer ring (after rigtorp/SPSCQueue).
// The producer (sampler thread) never blocks: try_push returns false when full and the caller counts a drop.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>

namespace fastmeter {

inline constexpr size_t kCacheLine = 64;

template <typename T>
class SpscRing {
  static_assert(std::is_trivially_copyable_v<T>, "ring slots are copied without constructors");

 public:
  // capacity usable slots; one extra slot distinguishes full from empty.
  explicit SpscRing(size_t capacity) : size_(capacity + 1), slots_(nullptr) {
    if (capacity < 1) throw std::invalid_argument("SpscRing capacity must be at least 1");
    if (capacity > (SIZE_MAX / sizeof(T)) - 2 * kPad) throw std::length_error("SpscRing capacity too large");
    // Padding slots at both ends keep neighbours off the slots' cache lines. `new T[n]` default-initializes: a
    // trivial T stays unwritten, so the pages are only touched (made resident) as the producer reaches them,
    // instead of zero-filling the whole ring (32 MiB at the default capacity) up front.
    slots_ = std::unique_ptr<T[]>(new T[size_ + 2 * kPad]);
    // Layout (rigtorp): the producer's index, its cached copy of the consumer's index and the consumer's index each
    // start a cache line of their own, so neither side's stores invalidate the line the other side reads.
    static_assert(alignof(SpscRing) == kCacheLine, "the ring object is cache-line aligned");
    static_assert(sizeof(SpscRing) >= 4 * kCacheLine, "size_/slots_ line + one line per index");
  }
  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  // Producer only.
  bool try_push(const T& v) noexcept {
    const size_t w = write_.load(std::memory_order_relaxed);
    size_t next = w + 1;
    if (next == size_) next = 0;
    if (next == read_cache_) {
      read_cache_ = read_.load(std::memory_order_acquire);
      if (next == read_cache_) return false;
    }
    slots_[w + kPad] = v;
    write_.store(next, std::memory_order_release);
    return true;
  }

  // Consumer only: copy up to max items into out, return how many. One acquire load per call: the consumer
  // drains in bulk, so caching the producer's index would save nothing and could hide items pushed since.
  size_t pop_bulk(T* out, size_t max) noexcept {
    size_t r = read_.load(std::memory_order_relaxed);
    const size_t w = write_.load(std::memory_order_acquire);
    size_t n = 0;
    while (n < max && r != w) {
      out[n++] = slots_[r + kPad];
      if (++r == size_) r = 0;
    }
    read_.store(r, std::memory_order_release);
    return n;
  }

  // Consumer only.
  bool try_pop(T& out) noexcept { return pop_bulk(&out, 1) == 1; }

  // Racy by nature: exact only when neither side moves. For statistics, never for control flow.
  size_t size_guess() const noexcept {
    const size_t w = write_.load(std::memory_order_acquire);
    const size_t r = read_.load(std::memory_order_acquire);
    return w >= r ? w - r : size_ - r + w;
  }
  size_t capacity() const noexcept { return size_ - 1; }

 private:
  static constexpr size_t kPad = (kCacheLine - 1) / sizeof(T) + 1;
  static_assert(kPad * sizeof(T) >= kCacheLine, "padding covers a whole cache line at each end");

  const size_t size_;
  std::unique_ptr<T[]> slots_;
  alignas(kCacheLine) std::atomic<size_t> write_{0};
  alignas(kCacheLine) size_t read_cache_ = 0;  // producer's copy of read_
  alignas(kCacheLine) std::atomic<size_t> read_{0};
};

}  // namespace fastmeter
