// The Meter's in-RAM window of raw samples, addressed by absolute sequence numbers (the n-th sample drained since
// start is number n, whatever was dropped since). Bounded: the newest keep_ns of samples, and never more than
// max_count samples (plus one partly filled chunk). Long runs stream samples to a file (the recorder, `fastmeter
// trace`) and read older ones back from there.
//
// Storage is a queue of fixed-size column chunks: appending never reallocates or copies what is stored, dropping
// the oldest samples frees (recycles) a whole chunk, and a chunk's columns are left uninitialized until written.
// Not thread-safe: the Meter guards it with its mutex.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>

#include "fastmeter/sample.h"

namespace fastmeter {

class SampleRecord {
 public:
  static constexpr size_t kChunk = 8192;  // samples per chunk: 224 KiB, so dropping is coarse but cheap

  // keep_ns: keep samples at most this old relative to the newest; max_count: hard cap on samples kept
  // (0 = keep none: samples only pass through to the knots).
  SampleRecord(int64_t keep_ns, size_t max_count) noexcept : keep_ns_(keep_ns), max_count_(max_count) {}

  void append(const Sample& s);
  // Drops whole chunks that fall outside both bounds. Call after a batch of appends, not per sample.
  void trim();

  uint64_t end_seq() const noexcept { return end_seq_; }      // samples ever appended
  uint64_t first_seq() const noexcept { return first_seq_; }  // oldest sample still in RAM
  size_t kept() const noexcept { return static_cast<size_t>(end_seq_ - first_seq_); }
  size_t max_count() const noexcept { return max_count_; }
  int64_t keep_ns() const noexcept { return keep_ns_; }
  size_t bytes() const noexcept { return (chunks_.size() + (spare_ ? 1 : 0)) * sizeof(Chunk); }

  // Copies samples [from, to) (from >= first_seq(), to <= end_seq()) into the caller's columns.
  void copy(uint64_t from, uint64_t to, int64_t* t_ns, uint32_t* channel, double* energy_j, double* power_w) const;

 private:
  struct Chunk {
    int64_t t_ns[kChunk];
    uint32_t channel[kChunk];
    double energy_j[kChunk];
    double power_w[kChunk];
  };

  const int64_t keep_ns_;
  const size_t max_count_;
  std::deque<std::unique_ptr<Chunk>> chunks_;  // chunks_[0] starts at first_seq_ rounded down to kChunk
  std::unique_ptr<Chunk> spare_;               // the last dropped chunk, reused so steady state never allocates
  uint64_t first_seq_ = 0, end_seq_ = 0;
  int64_t newest_t_ns_ = 0;
};

}  // namespace fastmeter
