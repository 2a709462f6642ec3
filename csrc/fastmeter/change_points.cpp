#include "fastmeter/change_points.h"

#include <algorithm>
#include <limits>

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
      if (!history_.empty() && x.hi_ns - history_.back().last.hi_ns < resolution_ns) {
        --size_;
        continue;
      }
      settle(x);
    }
    if (!spare_) spare_ = std::move(old);
  }
}

void ChangePointStore::settle(const ChangePoint& x) {
  if (history_.empty() || history_.back().n == kChunk) {
    if (!blocks_) blocks_ = std::make_shared<HistoryBlocks>();
    if (!open_) open_ = std::make_unique<ChangePoint[]>(kChunk);
    if (!history_.empty()) history_.back().block = blocks_->put(open_.get());
    history_.push_back({0, 0, {}, x, x});
  }
  Settled& h = history_.back();
  if (h.n % kGroup == 0) h.group_hi[h.n / kGroup] = x.hi_ns;
  open_[h.n++] = x;
  h.last = x;
}

const ChangePoint* ChangePointStore::first_of(size_t i) const noexcept {
  return i < history_.size() ? &history_[i].first : &recent_[i - history_.size()]->p[0];
}

const ChangePoint* ChangePointStore::last_of(size_t i) const noexcept {
  if (i < history_.size()) return &history_[i].last;
  const Chunk& c = *recent_[i - history_.size()];
  return &c.p[c.n - 1];
}

const ChangePoint* ChangePointStore::read(size_t h, size_t lo, size_t n) const noexcept {
  if (h + 1 == history_.size()) return open_.get() + lo;
  if (!scratch_) scratch_ = std::make_unique<ChangePoint[]>(kGroup + 2);
  if (!blocks_->get(history_[h].block, lo * sizeof(ChangePoint), n * sizeof(ChangePoint), scratch_.get())) {
    const int64_t lo_ns = history_[h].first.lo_ns, hi_ns = history_[h].last.hi_ns;
    for (size_t i = 0; i < n; ++i) scratch_[i] = {lo_ns, hi_ns, std::numeric_limits<double>::quiet_NaN()};
  }
  return scratch_.get();
}

ChangePointStore::Around ChangePointStore::around(int64_t t_ns) const noexcept {
  // The first chunk whose last point has hi_ns > t_ns holds `at`.
  size_t lo = 0, hi = chunks();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (last_hi(mid) <= t_ns)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == chunks()) return {empty() ? nullptr : &back(), nullptr, nullptr};
  const ChangePoint* prev = lo > 0 ? last_of(lo - 1) : nullptr;  // before `at` when `at` opens its chunk
  const ChangePoint* next = lo + 1 < chunks() ? first_of(lo + 1) : nullptr;
  const auto later = [](int64_t t, const ChangePoint& x) { return t < x.hi_ns; };
  // Points [base, base + n) of the chunk, holding `at` and its neighbours inside the chunk.
  const ChangePoint* p;
  size_t base = 0, n, size;
  if (lo >= history_.size()) {
    const Chunk& c = *recent_[lo - history_.size()];
    p = c.p;
    n = size = c.n;
  } else {
    // In the group before the first one whose first point is later (the first point if none is earlier), or
    // that group's first point: read that group and two more points.
    const Settled& s = history_[lo];
    size = s.n;
    const size_t g =
        static_cast<size_t>(std::upper_bound(s.group_hi, s.group_hi + (s.n + kGroup - 1) / kGroup, t_ns) - s.group_hi);
    base = g == 0 ? 0 : (g - 1) * kGroup;
    n = std::min(g * kGroup + 2, s.n) - base;
    p = read(lo, base, n);
  }
  const ChangePoint* at = std::upper_bound(p, p + n, t_ns, later);
  const size_t i = base + static_cast<size_t>(at - p);  // index in the chunk
  return {i > 0 ? at - 1 : prev, at, i + 1 < size ? at + 1 : next};
}

size_t ChangePointStore::bytes() const noexcept {
  return (recent_.size() + (spare_ ? 1 : 0) + (open_ ? 1 : 0)) * sizeof(Chunk) + history_.size() * sizeof(Settled);
}

std::vector<ChangePoint> ChangePointStore::to_vector() const {
  std::vector<ChangePoint> out;
  out.reserve(size_);
  for (size_t h = 0; h < history_.size(); ++h) {
    const size_t at = out.size();
    out.resize(at + history_[h].n);
    if (h + 1 == history_.size()) {
      std::copy(open_.get(), open_.get() + history_[h].n, out.begin() + static_cast<std::ptrdiff_t>(at));
    } else if (!blocks_->get(history_[h].block, 0, history_[h].n * sizeof(ChangePoint), out.data() + at)) {
      return {};  // the history file could not be read
    }
  }
  for (const ChunkPtr& c : recent_) out.insert(out.end(), c->p, c->p + c->n);
  return out;
}

}  // namespace fastmeter
