// Writing large in-memory ranges to a file through a pipe (vmsplice + splice) instead of write().
// On the development VM, write() from user memory cost 2-3x the system time of the same bytes
// moved by vmsplice + splice, which copies into the page cache from kernel page references the way
// `cp` (copy_file_range) does (docs/benchmarks.md). Falls back to write() where splicing is
// refused.
#pragma once

#include <cstddef>

#include "core/status.h"

namespace escale {

class SpliceWriter {
 public:
  SpliceWriter() = default;
  ~SpliceWriter();
  SpliceWriter(const SpliceWriter&) = delete;
  SpliceWriter& operator=(const SpliceWriter&) = delete;

  // Appends [p, p+n) at fd's current offset. The bytes are copied into the page cache before this
  // returns (the pipe is drained), so the caller may reuse or unmap them right after.
  Status Write(int fd, const void* p, size_t n, const std::string& what);

 private:
  Status WriteSlow(int fd, const char* p, size_t n, const std::string& what);
  int pipe_[2] = {-1, -1};
  bool disabled_ = false;
};

// write() until done (EINTR retried).
Status WriteAll(int fd, const void* p, size_t n, const std::string& what);

}  // namespace escale
