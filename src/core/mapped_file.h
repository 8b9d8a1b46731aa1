// Read-only memory map of a whole file (RAII). Tensors read from checkpoints are views into it,
// so a multi-GB model is never copied into memory.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/status.h"

namespace escale {

class MappedFile {
 public:
  static Result<std::shared_ptr<const MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Tell the kernel we are done with [offset, offset+len): the pages may be dropped.
  void DontNeed(size_t offset, size_t len) const;

 private:
  MappedFile() = default;
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace escale
