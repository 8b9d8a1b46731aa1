// Large, 2 MB-aligned byte buffers recycled between a producer thread and a writer thread. A fresh
// multi-hundred-MB allocation per tensor is page-faulted and zeroed every time, which costs more
// than the work done in it; a recycled one is already mapped.
#pragma once

#include <cstddef>
#include <memory>

namespace escale {

class BufferPool {
 public:
  // Keeps at most `keep_free` returned buffers for reuse; the rest are freed on return.
  explicit BufferPool(size_t keep_free = 2);
  // A buffer of at least n bytes (contents unspecified), returned to the pool when the last copy of
  // the pointer is dropped, on any thread; safe to outlive the pool. nullptr when out of memory.
  std::shared_ptr<std::byte> Acquire(size_t n);
  // Bytes allocated now (held and kept), and the most ever allocated at once.
  size_t allocated_bytes() const;
  size_t peak_bytes() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace escale
