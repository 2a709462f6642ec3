#include "fastmeter/sources/posix_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace fastmeter {

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

Fd open_readonly(const std::string& path, int* err) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) *err = errno;
  return Fd(fd);
}

bool read_text_file(const std::string& path, std::string* out, int* err) {
  Fd f = open_readonly(path, err);
  if (!f.ok()) return false;
  out->clear();
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(f.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return false;
    }
    if (n == 0) return true;
    out->append(buf, static_cast<size_t>(n));
  }
}

bool list_dir(const std::string& path, std::vector<std::string>* names, int* err) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    *err = errno;
    return false;
  }
  names->clear();
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names->push_back(n);
  }
  ::closedir(d);
  return true;
}

std::string errno_text(int err) { return std::generic_category().message(err); }

}  // namespace fastmeter
