#include "core/splice_write.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace escale {

Status WriteAll(int fd, const void* data, size_t n, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot write " + what + ": " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

SpliceWriter::~SpliceWriter() {
  for (int fd : pipe_)
    if (fd >= 0) ::close(fd);
}

Status SpliceWriter::WriteSlow(int fd, const char* p, size_t n, const std::string& what) {
  disabled_ = true;
  return WriteAll(fd, p, n, what);
}

Status SpliceWriter::Write(int fd, const void* data, size_t n, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  if (disabled_) return WriteAll(fd, p, n, what);
  if (pipe_[0] < 0) {
    if (::pipe2(pipe_, O_CLOEXEC) != 0) return WriteSlow(fd, p, n, what);
    // A bigger pipe means fewer round trips; the default (64 KB) also works.
    ::fcntl(pipe_[1], F_SETPIPE_SZ, 1 << 20);
  }
  size_t done = 0;
  while (done < n) {
    iovec iov{const_cast<char*>(p + done), n - done};
    const ssize_t in = ::vmsplice(pipe_[1], &iov, 1, 0);
    if (in < 0) {
      if (errno == EINTR) continue;
      return WriteSlow(fd, p + done, n - done, what);  // nothing entered the pipe
    }
    // Drain everything that entered the pipe before touching more memory: once splice has
    // returned, the bytes are in the file's page cache and the caller's pages are free again.
    size_t left = static_cast<size_t>(in);
    while (left > 0) {
      const ssize_t out = ::splice(pipe_[0], nullptr, fd, nullptr, left, SPLICE_F_MOVE);
      if (out < 0 && errno == EINTR) continue;
      if (out <= 0) {
        // The file refuses splicing: empty the pipe and write the rest the ordinary way.
        const int err = out < 0 ? errno : EIO;
        char sink[65536];
        for (size_t k = left; k > 0;) {
          const ssize_t r = ::read(pipe_[0], sink, std::min(k, sizeof sink));
          if (r < 0 && errno == EINTR) continue;
          if (r <= 0) return IoError("cannot write " + what + ": " + std::strerror(err));
          k -= static_cast<size_t>(r);
        }
        const size_t written = done + static_cast<size_t>(in) - left;
        return WriteSlow(fd, p + written, n - written, what);
      }
      left -= static_cast<size_t>(out);
    }
    done += static_cast<size_t>(in);
  }
  return Status::Ok();
}

}  // namespace escale
