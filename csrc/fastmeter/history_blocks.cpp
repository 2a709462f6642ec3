#include "fastmeter/history_blocks.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace fastmeter {
namespace {

// An unlinked file in dir: O_TMPFILE where the filesystem has it, else a named one removed at once.
int open_unlinked(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return -1;
  std::string name = dir + "/.fastmeter-history-XXXXXX";
  fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd >= 0) ::unlink(name.c_str());
  return fd;
}

}  // namespace

HistoryBlocks::HistoryBlocks(const std::string& dir, size_t blocks_per_region)
    : region_bytes_(kBlockBytes * (blocks_per_region > 0 ? blocks_per_region : 1)) {
  if (dir.empty()) return;
  fd_ = open_unlinked(dir);
  if (fd_ < 0) {
    throw std::runtime_error("cannot keep the run's history in " + dir + ": " + std::strerror(errno) +
                             "; pass a writable directory as history_dir, or \"\" to keep it in RAM");
  }
}

HistoryBlocks::~HistoryBlocks() {
  for (const Region& r : file_regions_) ::munmap(r.base, region_bytes_);
  for (const Region& r : ram_regions_) ::munmap(r.base, region_bytes_);
  if (fd_ >= 0) ::close(fd_);
}

void* HistoryBlocks::allocate() {
  release_resident();
  if (fd_ >= 0) {
    if (void* p = take(file_regions_, true)) return p;
  }
  void* p = take(ram_regions_, false);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* HistoryBlocks::take(std::vector<Region>& regions, bool file) {
  if (regions.empty() || regions.back().used * kBlockBytes == region_bytes_) {
    const off_t offset = static_cast<off_t>(regions.size() * region_bytes_);
    void* base = file ? ::mmap(nullptr, region_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, offset)
                      : ::mmap(nullptr, region_bytes_, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      if (file) stop_spilling(std::string("mmap: ") + std::strerror(errno));
      return nullptr;
    }
    regions.push_back({static_cast<char*>(base), 0});
  }
  Region& r = regions.back();
  if (file) {
    // Reserve the block's disk space now: writing to a mapped hole on a full disk would raise SIGBUS later.
    const off_t at = static_cast<off_t>((regions.size() - 1) * region_bytes_ + r.used * kBlockBytes);
    const int e = ::posix_fallocate(fd_, at, static_cast<off_t>(kBlockBytes));
    if (e != 0) {
      stop_spilling(std::string("posix_fallocate: ") + std::strerror(e));
      return nullptr;
    }
    ++file_blocks_;
  } else {
    ++ram_blocks_;
  }
  return r.base + (r.used++) * kBlockBytes;
}

void HistoryBlocks::release_resident() noexcept {
  // A shared file page's data survives MADV_DONTNEED (it is dirty in the page cache); only this mapping lets go.
  for (const Region& r : file_regions_) ::madvise(r.base, r.used * kBlockBytes, MADV_DONTNEED);
}

void HistoryBlocks::stop_spilling(const std::string& why) noexcept {
  error_ = why + "; the rest of the history is kept in RAM";
  ::close(fd_);  // the mappings already made keep the file
  fd_ = -1;
}

}  // namespace fastmeter
