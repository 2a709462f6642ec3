#include "fastmeter/knot_store.h"

#include <algorithm>
#include <limits>

namespace fastmeter {

size_t decimate_knots(Knot* k, const uint8_t* anchor, size_t n, int64_t resolution_ns) noexcept {
  if (n <= 2) return n;
  size_t out = 1;  // k[0] stays
  size_t a = 0;    // the newest kept anchor (input index)
  while (a + 1 < n) {
    // The farthest anchor within resolution_ns of a, and the first anchor after a.
    size_t far = 0, next = 0;
    for (size_t j = a + 1; j < n; ++j) {
      const bool is_anchor = anchor[j] != 0 || j == n - 1;
      if (!is_anchor) continue;
      if (next == 0) next = j;
      if (k[j].t_ns - k[a].t_ns > resolution_ns) break;
      far = j;
    }
    if (far != 0) {
      k[out++] = k[far];  // merge: everything between a and far goes
      a = far;
    } else {
      for (size_t j = a + 1; j <= next; ++j) k[out++] = k[j];  // interval longer than the resolution: kept whole
      a = next;
    }
  }
  return out;
}

void KnotStore::push(const Knot& k, bool anchor) {
  if (chunks_.empty() || (chunks_.back().knots.size() >= kChunk && chunks_.back().anchor.back())) {
    // A chunk ends at an anchor and the next starts with a copy of it, so a decimated chunk never splits an
    // interval between anchors.
    Chunk c = std::move(spare_);
    c.knots.clear();
    c.anchor.clear();
    c.knots.reserve(kChunk + 64);
    c.anchor.reserve(kChunk + 64);
    if (!chunks_.empty()) {
      c.knots.push_back(chunks_.back().knots.back());
      c.anchor.push_back(1);
    }
    chunks_.push_back(std::move(c));
  }
  chunks_.back().knots.push_back(k);
  chunks_.back().anchor.push_back(anchor ? 1 : 0);
}

size_t KnotStore::size() const noexcept {
  size_t n = 0;  // each chunk's last knot is the next one's first: count it there (the very last, once at the end)
  for (const Settled& s : settled_) n += s.n - 1;
  for (const Chunk& c : chunks_) n += c.knots.size() - 1;
  return chunks_.empty() ? n : n + 1;
}

void KnotStore::clear() noexcept {
  settled_.clear();
  chunks_.clear();
}

void KnotStore::settle_before(int64_t cutoff_ns, int64_t resolution_ns) {
  while (chunks_.size() >= 2 && chunks_.front().knots.back().t_ns < cutoff_ns) {
    Chunk& c = chunks_.front();
    const size_t m = decimate_knots(c.knots.data(), c.anchor.data(), c.knots.size(), resolution_ns);
    // The chunk's first knot is settled_'s last already.
    for (size_t i = settled_.empty() ? 0 : 1; i < m; ++i) settle(c.knots[i]);
    spare_ = std::move(c);
    chunks_.pop_front();
  }
}

void KnotStore::settle(const Knot& k) {
  if (settled_.empty() || settled_.back().n >= kChunk) {
    if (!blocks_) blocks_ = std::make_shared<HistoryBlocks>();
    if (!open_) open_ = std::make_unique<Knot[]>(kChunk);
    if (!settled_.empty()) settled_.back().block = blocks_->put(open_.get());
    settled_.push_back({0, 0, {}, {}});
    if (settled_.size() > 1) append(settled_[settled_.size() - 2].last);  // shared: every instant in one chunk
  }
  append(k);
}

void KnotStore::append(const Knot& k) noexcept {
  Settled& s = settled_.back();
  if (s.n % kGroup == 0) s.group_t[s.n / kGroup] = k.t_ns;
  open_[s.n++] = k;
  s.last = k;
}

const Knot* KnotStore::read(const Settled& s, size_t lo, size_t n) const noexcept {
  if (is_open(s)) return open_.get() + lo;
  if (!scratch_) scratch_ = std::make_unique<Knot[]>(kGroup + 1);
  if (!blocks_->get(s.block, lo * sizeof(Knot), n * sizeof(Knot), scratch_.get())) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (size_t i = 0; i < n; ++i) scratch_[i] = {s.group_t[0] + static_cast<int64_t>(i), nan, nan};
  }
  return scratch_.get();
}

KnotSpan KnotStore::span_for(int64_t t_ns) const noexcept {
  if (chunks_.empty()) return {nullptr, 0};
  // In either part, the last chunk that starts at or before t_ns (the first one for an instant before every knot).
  if (!settled_.empty() && t_ns <= settled_.back().last.t_ns) {
    const auto it = std::upper_bound(settled_.begin(), settled_.end(), t_ns,
                                     [](int64_t t, const Settled& s) { return t < s.group_t[0]; });
    const Settled& s = it == settled_.begin() ? settled_.front() : *(it - 1);
    // The group whose first knot is the last at or before t_ns (the first group for an instant before them all),
    // through the next group's first knot: the two knots around t_ns, all energy_at reads inside a chunk.
    const size_t groups = (s.n + kGroup - 1) / kGroup;
    const int64_t* g = std::upper_bound(s.group_t, s.group_t + groups, t_ns);
    const size_t lo = g == s.group_t ? 0 : static_cast<size_t>(g - s.group_t - 1) * kGroup;
    const size_t n = std::min(lo + kGroup, s.n - 1) - lo + 1;
    return {read(s, lo, n), n};
  }
  const auto it = std::upper_bound(chunks_.begin(), chunks_.end(), t_ns,
                                   [](int64_t t, const Chunk& c) { return t < c.knots.front().t_ns; });
  const Chunk& c = it == chunks_.begin() ? chunks_.front() : *(it - 1);
  return {c.knots.data(), c.knots.size()};
}

size_t KnotStore::bytes() const noexcept {
  const auto of = [](const Chunk& c) { return c.knots.capacity() * sizeof(Knot) + c.anchor.capacity(); };
  size_t n = of(spare_) + (open_ ? kChunk * sizeof(Knot) : 0) + settled_.size() * sizeof(Settled);
  for (const Chunk& c : chunks_) n += of(c);
  return n;
}

std::vector<Knot> KnotStore::to_vector() const {
  std::vector<Knot> out;
  const auto add = [&out](const Knot* k, size_t n) { out.insert(out.end(), k + (out.empty() ? 0 : 1), k + n); };
  for (const Settled& s : settled_) {
    std::vector<Knot> k(s.n);
    if (is_open(s)) {
      std::copy(open_.get(), open_.get() + s.n, k.begin());
    } else if (!blocks_->get(s.block, 0, s.n * sizeof(Knot), k.data())) {
      return {};  // the history file could not be read
    }
    add(k.data(), k.size());
  }
  for (const Chunk& c : chunks_) add(c.knots.data(), c.knots.size());
  return out;
}

}  // namespace fastmeter
