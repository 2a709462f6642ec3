// Where the thinned history of a long run lives: fixed-size blocks that the knot and change-point stores fill once
// and never change again, so a run's memory stays flat however long it runs.
//
// File mode (a directory given): each full block is written (pwrite) to one unlinked file in that directory and
// read back in pieces (pread) when a query needs it: the process maps nothing of it, so the history costs disk and
// reclaimable page cache, never RSS. A store keeps in RAM only what a search needs (instants every 128 points, a
// block's first and last point), so a lookup reads one piece of ~3 KiB. A failed write (disk full, file size
// limit) keeps that block and every later one in RAM, with the reason in error(); what was written stays readable.
// RAM mode (no directory): the blocks are heap copies.
//
// Not thread-safe: the Meter uses it under its mutex.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fastmeter {

class HistoryBlocks {
 public:
  static constexpr size_t kBlockBytes = 96 * 1024;  // 4096 knots or change points of 24 bytes

  // dir empty: RAM mode. Else file mode; throws std::runtime_error saying what to do when dir is unusable.
  explicit HistoryBlocks(const std::string& dir = "");
  ~HistoryBlocks();
  HistoryBlocks(const HistoryBlocks&) = delete;
  HistoryBlocks& operator=(const HistoryBlocks&) = delete;

  // Keeps a block (kBlockBytes from data) and returns its handle.
  uint64_t put(const void* data);
  // Copies len bytes from offset of block `handle` into out; false when the file could not be read.
  bool get(uint64_t handle, size_t offset, size_t len, void* out) const noexcept;

  bool spilling() const noexcept { return fd_ >= 0 && error_.empty(); }
  size_t file_bytes() const noexcept { return file_blocks_ * kBlockBytes; }    // history on disk
  size_t ram_bytes() const noexcept { return ram_.size() * kBlockBytes; }     // history in RAM
  const std::string& error() const noexcept { return error_; }  // why blocks stopped going to disk; empty while not

 private:
  int fd_ = -1;
  uint64_t file_blocks_ = 0;
  std::vector<std::unique_ptr<unsigned char[]>> ram_;
  std::string error_;
};

}  // namespace fastmeter
