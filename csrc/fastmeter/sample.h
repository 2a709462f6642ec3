// The record that travels through the ring: one channel at one instant.
#pragma once
#include <cstdint>
#include <type_traits>

namespace fastmeter {

struct Sample {
  int64_t t_ns;      // CLOCK_MONOTONIC
  double energy_j;   // cumulative joules of this channel since the meter started
  double power_w;    // NaN when the source gave no power reading at this instant
  uint32_t channel;  // index into the meter's channel table
  uint32_t flags;    // SampleFlags
};

enum SampleFlags : uint32_t {
  kSampleCounter = 1u << 0,  // energy_j comes from a hardware energy counter (else integrated power)
  kSampleChanged = 1u << 1,  // the counter value differs from the previous poll: a change point
  kSampleFailed = 1u << 2,   // the channel failed at this poll; energy_j holds its last good value
};

static_assert(std::is_trivially_copyable_v<Sample>, "Sample crosses threads by memcpy");
static_assert(sizeof(Sample) == 32, "keep Sample compact: two per cache line");

}  // namespace fastmeter
