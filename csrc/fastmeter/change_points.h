// Where a counter channel's change points (bound.h) live, so that a run of any length keeps bounded memory.
//
// Points are stored in fixed-size chunks: appending never reallocates or moves what is stored (one vector per
// channel doubled its capacity, so it could hold ~2.5x the window's points and copied them all at each doubling).
// Recent points are kept as made. Once a whole chunk lies before a cutoff (the Meter's raw-sample window), it is
// thinned to at most one point per resolution, the survivors are packed into the history chunks, and the emptied
// chunk is kept as the spare that the next new chunk reuses: a steady run neither allocates nor frees.
// Memory: the window's points plus about two chunks (the one straddling the cutoff and the one being filled), plus
// one spare chunk; the thinned history (<= 24 B per resolution) goes to blocks of a HistoryBlocks (history_blocks.h:
// on disk when the Meter has a history directory).
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "fastmeter/history_blocks.h"

namespace fastmeter {

// A counter value first read at hi_ns that the previous counter read (at lo_ns) did not see yet: the true cumulative
// energy equals energy_j at one unknown instant in (lo_ns, hi_ns]. The first reading has lo_ns = INT64_MIN.
struct ChangePoint {
  int64_t lo_ns, hi_ns;
  double energy_j;
};

class ChangePointStore {
 public:
  static constexpr size_t kChunk = 4096;  // points per chunk: 96 KiB, below glibc's mmap threshold

  // The points next to an instant: `at` is the first point with hi_ns > t_ns, `before` and `after` its
  // neighbours (before is the newest point with hi_ns <= t_ns when `at` is null); null where there is none.
  struct Around {
    const ChangePoint *before, *at, *after;
  };

  // Where thinned chunks go; without one, the first thinning makes a RAM-mode HistoryBlocks of its own.
  void use_history(std::shared_ptr<HistoryBlocks> blocks) noexcept { blocks_ = std::move(blocks); }
  // Points arrive in time order, their (lo, hi] disjoint.
  void push(const ChangePoint& p);
  bool empty() const noexcept { return recent_.empty(); }
  size_t size() const noexcept { return size_; }  // points kept
  const ChangePoint& back() const noexcept { return recent_.back()->p[recent_.back()->n - 1]; }
  // Thins the full chunks (never the newest) whose points all have hi_ns < cutoff_ns, keeping a point when its
  // hi_ns is at least resolution_ns after the previous kept one: the same subset one pass over all old points would
  // keep. resolution_ns <= 0 keeps everything. O(1) when no chunk qualifies, O(kChunk) per chunk thinned.
  void thin_before(int64_t cutoff_ns, int64_t resolution_ns);
  // O(log n): a binary search over the chunks, then inside one.
  Around around(int64_t t_ns) const noexcept;
  // Memory the recent chunks take, the spare included (the history's is its HistoryBlocks').
  size_t bytes() const noexcept;
  size_t history_bytes() const noexcept { return history_.size() * HistoryBlocks::kBlockBytes; }  // incl. open
  // Every point in order (for tests; O(n)).
  std::vector<ChangePoint> to_vector() const;

 private:
  static_assert(kChunk * sizeof(ChangePoint) == HistoryBlocks::kBlockBytes, "a history chunk is one block");
  struct Chunk {
    size_t n = 0;
    ChangePoint p[kChunk];  // left uninitialized by `new Chunk` until written
  };
  using ChunkPtr = std::unique_ptr<Chunk>;
  // A history chunk: its points are in the HistoryBlocks (the newest one, still filling, in open_), and what a
  // search needs is kept here, so a lookup reads ~3 KiB of one block (a binary search through a block not in RAM
  // costs ~a dozen reads).
  static constexpr size_t kGroup = 128;
  struct Settled {
    uint64_t block;  // its handle once full
    size_t n;
    int64_t group_hi[kChunk / kGroup];  // hi_ns of point g * kGroup
    ChangePoint first, last;
  };

  ChunkPtr take_chunk();  // the spare, or a new one; empty
  size_t chunks() const noexcept { return history_.size() + recent_.size(); }
  // Of chunk i of history_ then recent_ (none of them empty): its last hi_ns, first and last points.
  int64_t last_hi(size_t i) const noexcept { return last_of(i)->hi_ns; }
  const ChangePoint* first_of(size_t i) const noexcept;
  const ChangePoint* last_of(size_t i) const noexcept;
  // Points [lo, lo + n) of history chunk h: in open_, or read from its block into scratch_ (unknown energy and the
  // widest instants if the history file could not be read, so a bound is wide rather than wrong).
  const ChangePoint* read(size_t h, size_t lo, size_t n) const noexcept;
  void settle(const ChangePoint& x);  // appends a thinned point to the history

  std::shared_ptr<HistoryBlocks> blocks_;
  std::deque<Settled> history_;  // thinned, packed full except the last, which is open
  std::unique_ptr<ChangePoint[]> open_;
  mutable std::unique_ptr<ChangePoint[]> scratch_;
  std::deque<ChunkPtr> recent_;  // as made, full except the last
  ChunkPtr spare_;
  size_t size_ = 0;
};

}  // namespace fastmeter
