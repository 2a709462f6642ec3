// Where a channel's knots live, and how old ones are thinned so a run of any length keeps bounded memory.
//
// Recent knots are kept as made, in chunks of about kChunk knots; consecutive chunks share one knot (the last of
// one is the first of the next), so any instant between two knots lies inside a single chunk and energy_at over
// that chunk gives bit for bit what it gives over all knots. Chunks older than a cutoff (the Meter's raw-sample
// window) are decimated to a time resolution into `settled` chunks of up to kChunk knots, which share their
// boundary knots in the same way (the last one's last knot is the first recent chunk's first): a long run's history
// grows a chunk at a time, never copied to a larger array while the Meter's mutex is held. History chunks are blocks
// of a HistoryBlocks (history_blocks.h: on disk when the Meter has a history directory), recent ones are recycled
// through a spare, so a steady run neither allocates nor frees.
//
// Decimation (decimate_knots) keeps every kept knot's cumulative energy exact. It only ever merges whole update
// intervals: an "anchor" is a knot at a change point (every knot of a power-integrated channel; the change points of
// a counter channel, not the knots that power fusion puts inside an interval). From each kept anchor it jumps to the
// farthest anchor at most resolution_ns later, dropping everything in between; when the next anchor is farther than
// that, the interval up to it is kept whole, with its inner knots. So a counter that updates more slowly than the
// resolution (GPUs: ~100 ms) keeps every knot, and its queries are unchanged to the last bit; a faster channel's
// curve changes only inside merged intervals, where both curves run between the same two exact knots and never
// decrease, so they differ by at most the energy of that interval (docs/methodology.md, "Knot decimation").
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "fastmeter/history_blocks.h"

namespace fastmeter {

// A point of a channel's cumulative-energy curve, with the power there as the curve's slope. power_w is NaN where
// no power reading applies: the curve then takes the secant to the neighbouring knot as the slope.
struct Knot {
  int64_t t_ns;
  double energy_j;
  double power_w;
};

struct KnotSpan {
  const Knot* data;
  size_t size;
};

// Thins knots[0..n) in place (see above) and returns how many remain, first and last always among them.
// anchor[0] and anchor[n - 1] are treated as set. O(n).
size_t decimate_knots(Knot* knots, const uint8_t* anchor, size_t n, int64_t resolution_ns) noexcept;

class KnotStore {
 public:
  static constexpr size_t kChunk = 4096;
  static_assert(kChunk * sizeof(Knot) == HistoryBlocks::kBlockBytes, "a history chunk is one block");

  KnotStore() = default;
  KnotStore(KnotStore&&) noexcept = default;
  KnotStore& operator=(KnotStore&&) noexcept = default;
  KnotStore(const KnotStore&) = delete;  // stores are large; a copy is never what is meant
  KnotStore& operator=(const KnotStore&) = delete;

  // Where history chunks go; without one, the first settle makes a RAM-mode HistoryBlocks of its own.
  void use_history(std::shared_ptr<HistoryBlocks> blocks) noexcept { blocks_ = std::move(blocks); }
  void push(const Knot& k, bool anchor);
  bool empty() const noexcept { return chunks_.empty(); }
  size_t size() const noexcept;  // knots kept, each counted once; O(number of chunks)
  bool single() const noexcept { return settled_.empty() && chunks_.size() == 1 && chunks_[0].knots.size() == 1; }
  Knot& back() noexcept { return chunks_.back().knots.back(); }
  const Knot& back() const noexcept { return chunks_.back().knots.back(); }
  void clear() noexcept;
  // Decimates the chunks (all but the newest) whose knots all lie before cutoff_ns. O(1) when none qualifies.
  void settle_before(int64_t cutoff_ns, int64_t resolution_ns);
  // The contiguous knots whose range holds t_ns (or the end ones, for an instant outside every knot): energy_at
  // over it equals energy_at over the whole curve. O(log n). Empty when there are no knots.
  KnotSpan span_for(int64_t t_ns) const noexcept;
  // Memory the recent chunks take, the spare included (the history's is in its HistoryBlocks). O(number of chunks).
  size_t bytes() const noexcept;
  // Every knot in order, once each (for tests; O(n)).
  std::vector<Knot> to_vector() const;

 private:
  struct Chunk {
    std::vector<Knot> knots;
    std::vector<uint8_t> anchor;
  };
  // A history chunk: its knots are in the HistoryBlocks (the newest one, still filling, in open_), and what a
  // search needs is kept here, so a lookup reads one group of knots (~3 KiB) from the block: a binary search through
  // a block whose pages are not in RAM costs ~a dozen reads or faults (window queries into the history took 2 ms).
  static constexpr size_t kGroup = 128;  // knots per index entry
  struct Settled {
    uint64_t block;  // its handle once full
    size_t n;
    int64_t group_t[kChunk / kGroup];  // t_ns of knot g * kGroup
    Knot last;
  };
  void settle(const Knot& k);  // appends one decimated knot to the history
  void append(const Knot& k) noexcept;  // to the open history chunk
  bool is_open(const Settled& s) const noexcept { return &s == &settled_.back(); }
  // Knots [lo, lo + n) of history chunk s: in open_, or read from its block into scratch_ (NaN energy if the
  // history file could not be read, so the answer is unknown rather than wrong).
  const Knot* read(const Settled& s, size_t lo, size_t n) const noexcept;

  std::shared_ptr<HistoryBlocks> blocks_;
  std::deque<Settled> settled_;  // decimated, each chunk's last knot the next one's first; the last one open
  std::unique_ptr<Knot[]> open_;              // the open history chunk's knots
  mutable std::unique_ptr<Knot[]> scratch_;   // one group read back for a query
  std::deque<Chunk> chunks_;
  Chunk spare_;  // the last settled recent chunk, its capacity reused by the next one
};

}  // namespace fastmeter
