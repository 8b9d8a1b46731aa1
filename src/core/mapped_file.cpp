#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/input_fault_guard.h"

namespace escale {

Result<std::shared_ptr<const MappedFile>> MappedFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return IoError("cannot stat " + path + ": " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return IoError(path + " is not a regular file");
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      return IoError("cannot map " + path + ": " + std::strerror(e));
    }
    f->data_ = static_cast<const std::byte*>(p);
    fault_guard::AddMapping(p, f->size_, path);
  }
  ::close(fd);
  return std::shared_ptr<const MappedFile>(std::move(f));
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) {
    fault_guard::RemoveMapping(data_);
    ::munmap(const_cast<std::byte*>(data_), size_);
  }
}

namespace {
void Advise(const std::byte* base, size_t size, size_t offset, size_t len, int advice) {
  if (base == nullptr || offset >= size) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t start = offset / page * page;
  const size_t end = std::min(size, offset + len);
  ::madvise(const_cast<std::byte*>(base) + start, end - start, advice);
}
}  // namespace

void MappedFile::DontNeed(size_t offset, size_t len) const {
  Advise(data_, size_, offset, len, MADV_DONTNEED);
}

}  // namespace escale
