#include "fastmeter/record.h"

#include <algorithm>

namespace fastmeter {

void SampleRecord::append(const Sample& s) {
  if (s.t_ns > newest_t_ns_) newest_t_ns_ = s.t_ns;
  if (max_count_ == 0) {  // keep none: count it and let it go
    first_seq_ = ++end_seq_;
    return;
  }
  const size_t slot = static_cast<size_t>(end_seq_ % kChunk);
  if (slot == 0) {
    // new Chunk (default-initialized, not value-initialized): no zero-fill of columns we are about to write.
    chunks_.push_back(spare_ ? std::move(spare_) : std::unique_ptr<Chunk>(new Chunk));
  }
  Chunk& c = *chunks_.back();
  c.t_ns[slot] = s.t_ns;
  c.channel[slot] = s.channel;
  c.energy_j[slot] = s.energy_j;
  c.power_w[slot] = s.power_w;
  ++end_seq_;
}

void SampleRecord::trim() {
  // Only whole chunks before the newest one go; the oldest kept sample is then a chunk boundary.
  while (chunks_.size() > 1) {
    const uint64_t chunk_end = (first_seq_ / kChunk + 1) * kChunk;
    const size_t kept_after = static_cast<size_t>(end_seq_ - chunk_end);
    const Chunk& front = *chunks_.front();
    const bool too_many = kept_after >= max_count_;
    const bool too_old = front.t_ns[kChunk - 1] < newest_t_ns_ - keep_ns_;
    if (!too_many && !too_old) return;
    spare_ = std::move(chunks_.front());
    chunks_.pop_front();
    first_seq_ = chunk_end;
  }
}

void SampleRecord::copy(uint64_t from, uint64_t to, int64_t* t_ns, uint32_t* channel, double* energy_j,
                        double* power_w) const {
  const uint64_t base = (first_seq_ / kChunk) * kChunk;  // sequence number of chunks_[0][0]
  while (from < to) {
    const auto ci = static_cast<size_t>((from - base) / kChunk);
    const auto slot = static_cast<size_t>((from - base) % kChunk);
    const auto n = static_cast<size_t>(std::min<uint64_t>(to - from, kChunk - slot));
    const Chunk& c = *chunks_[ci];
    std::copy_n(c.t_ns + slot, n, t_ns);
    std::copy_n(c.channel + slot, n, channel);
    std::copy_n(c.energy_j + slot, n, energy_j);
    std::copy_n(c.power_w + slot, n, power_w);
    t_ns += n;
    channel += n;
    energy_j += n;
    power_w += n;
    from += n;
  }
}

}  // namespace fastmeter
