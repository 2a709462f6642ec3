// Small POSIX file helpers for sources that poll kernel files: open once, pread at a fixed offset every poll.
#pragma once
#include <string>
#include <vector>

namespace fastmeter {

// Owns one file descriptor; closes it on destruction. Move-only.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  bool ok() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// open(path, O_RDONLY | O_CLOEXEC). On failure the Fd is not ok() and *err holds errno.
Fd open_readonly(const std::string& path, int* err);

// Whole content of a small text file (sysfs attributes, /proc/cpuinfo). False with *err = errno on failure.
bool read_text_file(const std::string& path, std::string* out, int* err);

// Names of the entries of a directory ("." and ".." left out). False with *err = errno on failure.
bool list_dir(const std::string& path, std::vector<std::string>* names, int* err);

// Text for an errno value; safe to call from any thread.
std::string errno_text(int err);

}  // namespace fastmeter
