// One native thread that polls every source on absolute CLOCK_MONOTONIC deadlines, turns readings into cumulative
// joules (integrate.h) and pushes Samples into the SPSC ring. It never calls into Python and never blocks on the
// consumer: a full ring counts a drop.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fastmeter/clock.h"
#include "fastmeter/integrate.h"
#include "fastmeter/ring.h"
#include "fastmeter/sample.h"
#include "fastmeter/sources/source.h"
#include "fastmeter/stats.h"

namespace fastmeter {

struct SamplerConfig {
  int64_t period_ns = 1000000;
  // Busy-wait this long before each deadline instead of sleeping through it: the kernel wakes us late by tens of µs
  // (timer slack, VM exits), which at sub-millisecond periods is most of the period.
  int64_t spin_ns = 0;
  size_t ring_capacity = 1 << 20;
};

struct SamplerStats {
  uint64_t polls = 0;
  double elapsed_s = 0.0;
  double rate_hz = 0.0;
  double jitter_p50_us = 0.0, jitter_p99_us = 0.0, jitter_max_us = 0.0;
  uint64_t missed = 0;   // deadlines skipped because a poll overran a whole period
  uint64_t dropped = 0;  // samples lost because the ring was full
};

class Sampler {
 public:
  // Spin budget the default picks for a period: short periods need it to keep up, long ones can afford sleeping.
  static int64_t default_spin_ns(int64_t period_ns) noexcept;

  Sampler(std::vector<std::unique_ptr<Source>> sources, SamplerConfig config);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  void start();
  // Wakes the thread at once, takes one last poll so the record ends at the stop instant, joins.
  void stop();
  bool running() const noexcept { return running_.load(std::memory_order_acquire); }

  const std::vector<ChannelInfo>& channels() const noexcept { return channels_; }
  SpscRing<Sample>& ring() noexcept { return ring_; }
  // Cumulative joules of channel i at the latest poll; O(1), any thread.
  double total_j(size_t i) const noexcept { return state_[i].total_j.load(std::memory_order_acquire); }
  int64_t last_poll_ns() const noexcept { return last_poll_ns_.load(std::memory_order_acquire); }
  int64_t start_ns() const noexcept { return start_ns_; }
  ClockAnchor anchor() const noexcept { return anchor_; }
  // Error text of a failed channel, empty while it works.
  std::string channel_error(size_t i) const;
  SamplerStats stats() const noexcept;
  int64_t period_ns() const noexcept { return config_.period_ns; }

 private:
  struct ChannelState {
    std::atomic<double> total_j{0.0};
    std::atomic<bool> failed{false};
    std::string error;  // written once by the sampler before `failed` is released
  };

  void run() noexcept;
  void poll() noexcept;
  void wait_until(int64_t deadline_ns) noexcept;

  std::vector<std::unique_ptr<Source>> sources_;
  SamplerConfig config_;
  std::vector<ChannelInfo> channels_;
  std::vector<size_t> first_channel_;  // per source: index of its first channel
  std::vector<ChannelAccumulator> acc_;
  std::unique_ptr<ChannelState[]> state_;
  std::vector<Reading> readings_;
  SpscRing<Sample> ring_;

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;  // guarded by mu_
  std::atomic<bool> stop_flag_{false};
  std::atomic<bool> running_{false};

  int64_t start_ns_ = 0;
  ClockAnchor anchor_{};
  std::atomic<int64_t> last_poll_ns_{0};
  std::atomic<uint64_t> polls_{0}, missed_{0}, dropped_{0};
  LatenessHistogram lateness_;
};

}  // namespace fastmeter
