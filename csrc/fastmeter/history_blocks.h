// Where the thinned history of a long run lives: fixed-size blocks that the knot and change-point stores fill once
// and never change again, so a run's memory stays flat however long it runs.
//
// File mode (a directory given): the blocks are pages of one unlinked file in that directory, mapped shared. The
// file's space is reserved (posix_fallocate) before a block is handed out, so a full disk is an error at that point,
// never a SIGBUS on a later write. Each time a block is handed out the written pages are dropped from this process
// (MADV_DONTNEED keeps a shared file page's data: it goes to the page cache, then to disk); a query that reads history
// faults its pages back in from there. So the history costs disk and reclaimable page cache, not the process's RSS.
// RAM mode (no directory, or the file could not be made or grown): the same blocks from anonymous mappings, outside
// malloc's arenas, where blocks of a long life interleaved with short-lived chunks fragmented the heap (a 16-channel
// 10 kHz trace held ~75 MB of free heap after three minutes).
//
// Blocks are carved from large mappings (regions) that are reserved as address space only, so a pointer to a block
// stays valid until the HistoryBlocks is destroyed. Not thread-safe: the Meter uses it under its mutex.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fastmeter {

class HistoryBlocks {
 public:
  static constexpr size_t kBlockBytes = 96 * 1024;    // 24 pages: 4096 knots or change points of 24 bytes
  static constexpr size_t kBlocksPerRegion = 2560;    // 240 MiB of address space per mapping

  // dir empty: RAM mode. Else file mode; throws std::runtime_error saying what to do when dir is unusable.
  // blocks_per_region: the mapping size (tests make it small to cross regions).
  explicit HistoryBlocks(const std::string& dir = "", size_t blocks_per_region = kBlocksPerRegion);
  ~HistoryBlocks();
  HistoryBlocks(const HistoryBlocks&) = delete;
  HistoryBlocks& operator=(const HistoryBlocks&) = delete;

  // A block of kBlockBytes, uninitialized; throws std::bad_alloc when not even RAM mode can map one.
  void* allocate();
  // Drops written pages from this process (file mode; nothing in RAM mode). allocate() calls it.
  void release_resident() noexcept;

  bool spilling() const noexcept { return fd_ >= 0; }
  size_t blocks() const noexcept { return file_blocks_ + ram_blocks_; }
  size_t file_bytes() const noexcept { return file_blocks_ * kBlockBytes; }  // history on disk
  size_t ram_bytes() const noexcept { return ram_blocks_ * kBlockBytes; }    // history in anonymous memory
  const std::string& error() const noexcept { return error_; }  // why file mode stopped; empty while it works

 private:
  struct Region {
    char* base;
    size_t used;  // blocks handed out
  };
  void* take(std::vector<Region>& regions, bool file);
  void stop_spilling(const std::string& why) noexcept;

  size_t region_bytes_;
  int fd_ = -1;
  std::vector<Region> file_regions_, ram_regions_;
  size_t file_blocks_ = 0, ram_blocks_ = 0;
  std::string error_;
};

}  // namespace fastmeter
