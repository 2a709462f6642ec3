#include "fastmeter/history_blocks.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace fastmeter {
namespace {

// RAM blocks' handles have the top bit set; file blocks' handles are their index in the file.
constexpr uint64_t kRamHandle = uint64_t{1} << 63;

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

HistoryBlocks::HistoryBlocks(const std::string& dir) {
  if (dir.empty()) return;
  fd_ = open_unlinked(dir);
  if (fd_ < 0) {
    throw std::runtime_error("cannot keep the run's history in " + dir + ": " + std::strerror(errno) +
                             "; pass a writable directory as history_dir, or \"\" to keep it in RAM");
  }
}

HistoryBlocks::~HistoryBlocks() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t HistoryBlocks::put(const void* data) {
  if (spilling()) {
    const auto* p = static_cast<const unsigned char*>(data);
    const off_t at = static_cast<off_t>(file_blocks_ * kBlockBytes);
    size_t done = 0;
    while (done < kBlockBytes) {
      const ssize_t n = ::pwrite(fd_, p + done, kBlockBytes - done, at + static_cast<off_t>(done));
      if (n > 0) {
        done += static_cast<size_t>(n);
      } else if (n < 0 && errno != EINTR) {
        error_ = std::string("writing the history file failed (") + std::strerror(errno) +
                 "); the rest of the history is kept in RAM";
        break;
      }
    }
    if (done == kBlockBytes) return file_blocks_++;
  }
  auto copy = std::make_unique<unsigned char[]>(kBlockBytes);
  std::memcpy(copy.get(), data, kBlockBytes);
  ram_.push_back(std::move(copy));
  return kRamHandle | (ram_.size() - 1);
}

bool HistoryBlocks::get(uint64_t handle, size_t offset, size_t len, void* out) const noexcept {
  if (handle & kRamHandle) {
    std::memcpy(out, ram_[handle & ~kRamHandle].get() + offset, len);
    return true;
  }
  auto* p = static_cast<unsigned char*>(out);
  const off_t at = static_cast<off_t>(handle * kBlockBytes + offset);
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd_, p + done, len - done, at + static_cast<off_t>(done));
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0 || errno != EINTR) {
      return false;
    }
  }
  return true;
}

}  // namespace fastmeter
