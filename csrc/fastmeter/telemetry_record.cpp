#include <algorithm>
#include <limits>

#include "fastmeter/telemetry.h"

namespace fastmeter {

void TelemetryRecord::append(const TelemetryReading& r) {
  if (r.t_ns > newest_t_ns_) newest_t_ns_ = r.t_ns;
  if (max_count_ == 0) {  // keep none: count it and let it go
    first_seq_ = ++end_seq_;
    return;
  }
  const size_t slot = static_cast<size_t>(end_seq_ % kChunk);
  // A recycled or default-initialized chunk: no zero-fill of slots we are about to write.
  if (slot == 0) chunks_.push_back(spare_ ? std::move(spare_) : std::unique_ptr<Chunk>(new Chunk));
  chunks_.back()->r[slot] = r;
  ++end_seq_;
}

void TelemetryRecord::trim() {
  // Only whole chunks before the newest one go; the oldest kept reading is then a chunk boundary.
  while (chunks_.size() > 1) {
    const uint64_t chunk_end = (first_seq_ / kChunk + 1) * kChunk;
    const auto kept_after = static_cast<size_t>(end_seq_ - chunk_end);
    const bool too_many = kept_after >= max_count_;
    const bool too_old = chunks_.front()->r[kChunk - 1].t_ns < newest_t_ns_ - keep_ns_;
    if (!too_many && !too_old) return;
    spare_ = std::move(chunks_.front());
    chunks_.pop_front();
    first_seq_ = chunk_end;
  }
}

const TelemetryReading& TelemetryRecord::at(uint64_t seq) const noexcept {
  const uint64_t base = (first_seq_ / kChunk) * kChunk;  // sequence number of chunks_[0][0]
  return chunks_[static_cast<size_t>((seq - base) / kChunk)]->r[static_cast<size_t>((seq - base) % kChunk)];
}

uint64_t TelemetryRecord::lower_bound(int64_t t_ns) const noexcept {
  uint64_t lo = first_seq_, hi = end_seq_;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (at(mid).t_ns < t_ns) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

int64_t TelemetryRecord::first_t_ns() const noexcept {
  return kept() > 0 ? at(first_seq_).t_ns : std::numeric_limits<int64_t>::max();
}

}  // namespace fastmeter
