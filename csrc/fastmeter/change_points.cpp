#include "fastmeter/change_points.h"

#include <algorithm>

namespace fastmeter {

ChangePointStore::ChunkPtr ChangePointStore::take_chunk() {
  // new Chunk (default-initialized): no zero-fill of 96 KiB about to be written.
  ChunkPtr c = spare_ ? std::move(spare_) : ChunkPtr(new Chunk);
  c->n = 0;
  return c;
}

void ChangePointStore::push(const ChangePoint& p) {
  if (recent_.empty() || recent_.back()->n == kChunk) recent_.push_back(take_chunk());
  Chunk& c = *recent_.back();
  c.p[c.n++] = p;
  ++size_;
}

void ChangePointStore::thin_before(int64_t cutoff_ns, int64_t resolution_ns) {
  if (resolution_ns <= 0) return;
  while (recent_.size() >= 2 && recent_.front()->p[recent_.front()->n - 1].hi_ns < cutoff_ns) {
    ChunkPtr old = std::move(recent_.front());
    recent_.pop_front();
    // A subset of the points keeps their (lo, hi] disjoint and in order: range_at stays valid, only wider.
    for (size_t i = 0; i < old->n; ++i) {
      const ChangePoint& x = old->p[i];
      if (!history_.empty() && x.hi_ns - history_.back().p[history_.back().n - 1].hi_ns < resolution_ns) {
        --size_;
        continue;
      }
      if (history_.empty() || history_.back().n == kChunk) {
        if (!blocks_) blocks_ = std::make_shared<HistoryBlocks>();
        history_.push_back({static_cast<ChangePoint*>(blocks_->allocate()), 0});
      }
      Settled& h = history_.back();
      h.p[h.n++] = x;
    }
    if (!spare_) spare_ = std::move(old);
  }
}

ChangePointStore::Around ChangePointStore::around(int64_t t_ns) const noexcept {
  // The first chunk whose last point has hi_ns > t_ns holds `at`.
  size_t lo = 0, hi = chunks();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (chunk(mid).last().hi_ns <= t_ns)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == chunks()) return {empty() ? nullptr : &back(), nullptr, nullptr};
  const Run c = chunk(lo);
  const ChangePoint* at =
      std::upper_bound(c.p, c.p + c.n, t_ns, [](int64_t t, const ChangePoint& x) { return t < x.hi_ns; });
  const ChangePoint* before = at != c.p ? at - 1 : lo > 0 ? &chunk(lo - 1).last() : nullptr;
  const ChangePoint* after = at + 1 != c.p + c.n ? at + 1 : lo + 1 < chunks() ? &chunk(lo + 1).p[0] : nullptr;
  return {before, at, after};
}

size_t ChangePointStore::bytes() const noexcept { return (recent_.size() + (spare_ ? 1 : 0)) * sizeof(Chunk); }

std::vector<ChangePoint> ChangePointStore::to_vector() const {
  std::vector<ChangePoint> out;
  out.reserve(size_);
  for (size_t i = 0; i < chunks(); ++i) {
    const Run c = chunk(i);
    out.insert(out.end(), c.p, c.p + c.n);
  }
  return out;
}

}  // namespace fastmeter
