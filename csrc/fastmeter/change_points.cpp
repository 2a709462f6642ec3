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
      if (!history_.empty() && x.hi_ns - history_.back().last_hi < resolution_ns) {
        --size_;
        continue;
      }
      if (history_.empty() || history_.back().n == kChunk) {
        if (!blocks_) blocks_ = std::make_shared<HistoryBlocks>();
        history_.push_back({static_cast<ChangePoint*>(blocks_->allocate()), 0, 0, {}});
      }
      Settled& h = history_.back();
      if (h.n % kGroup == 0) h.group_hi[h.n / kGroup] = x.hi_ns;
      h.last_hi = x.hi_ns;
      h.p[h.n++] = x;
    }
    if (!spare_) spare_ = std::move(old);
  }
}

const ChangePoint* ChangePointStore::first_after(const Run& c, int64_t t_ns) noexcept {
  const auto later = [](int64_t t, const ChangePoint& x) { return t < x.hi_ns; };
  if (c.index == nullptr) return std::upper_bound(c.p, c.p + c.n, t_ns, later);
  // In the group before the first one whose first point is later; if none of that group is, that first point.
  const int64_t* g0 = c.index->group_hi;
  const size_t g = static_cast<size_t>(std::upper_bound(g0, g0 + (c.n + kGroup - 1) / kGroup, t_ns) - g0);
  if (g == 0) return c.p;
  const ChangePoint* lo = c.p + (g - 1) * kGroup;
  return std::upper_bound(lo, c.p + std::min(g * kGroup, c.n), t_ns, later);
}

ChangePointStore::Around ChangePointStore::around(int64_t t_ns) const noexcept {
  // The first chunk whose last point has hi_ns > t_ns holds `at`.
  size_t lo = 0, hi = chunks();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (chunk(mid).last_hi() <= t_ns)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == chunks()) return {empty() ? nullptr : &back(), nullptr, nullptr};
  const Run c = chunk(lo);
  const ChangePoint* at = first_after(c, t_ns);
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
