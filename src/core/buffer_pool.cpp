#include "core/buffer_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace escale {

struct BufferPool::State {
  struct Buffer {
    std::byte* p;
    size_t size;
  };
  std::mutex mu;
  std::vector<Buffer> free;
  size_t keep_free = 1;
  size_t allocated = 0;
  size_t peak = 0;

  ~State() {
    for (const Buffer& b : free) std::free(b.p);
  }
  void Return(Buffer b) {
    std::lock_guard lock(mu);
    free.push_back(b);
    if (free.size() <= keep_free) return;
    // Drop the smallest: the big ones are the expensive ones to fault in again.
    auto it = std::min_element(free.begin(), free.end(),
                               [](const Buffer& x, const Buffer& y) { return x.size < y.size; });
    allocated -= it->size;
    std::free(it->p);
    free.erase(it);
  }
};

BufferPool::BufferPool(size_t keep_free) : state_(std::make_shared<State>()) {
  state_->keep_free = keep_free;
}

std::shared_ptr<std::byte> BufferPool::Acquire(size_t n) {
  constexpr size_t kHuge = 2u << 20;
  State& s = *state_;
  State::Buffer b{nullptr, 0};
  {
    std::lock_guard lock(s.mu);
    // Best fit among the kept buffers.
    auto best = s.free.end();
    for (auto it = s.free.begin(); it != s.free.end(); ++it)
      if (it->size >= n && (best == s.free.end() || it->size < best->size)) best = it;
    if (best != s.free.end()) {
      b = *best;
      s.free.erase(best);
    } else if (s.free.size() >= s.keep_free && !s.free.empty()) {
      // None fits and the new one will be kept too: free the smallest now, so memory tracks what
      // is in use while the big buffers (the costly ones to fault in again) survive.
      auto small = std::min_element(
          s.free.begin(), s.free.end(),
          [](const State::Buffer& x, const State::Buffer& y) { return x.size < y.size; });
      s.allocated -= small->size;
      std::free(small->p);
      s.free.erase(small);
    }
  }
  if (b.p == nullptr) {
    const size_t size = std::max(kHuge, (n + kHuge - 1) / kHuge * kHuge);
    b.p = static_cast<std::byte*>(std::aligned_alloc(kHuge, size));
    if (b.p == nullptr) return nullptr;
    b.size = size;
    // Huge pages: first-touch faults of hundreds of MB in 4 KB pages cost more than the copy.
    ::madvise(b.p, size, MADV_HUGEPAGE);
    std::lock_guard lock(s.mu);
    s.allocated += size;
    s.peak = std::max(s.peak, s.allocated);
  }
  std::shared_ptr<State> keep = state_;
  return std::shared_ptr<std::byte>(b.p, [keep, b](std::byte*) { keep->Return(b); });
}

size_t BufferPool::allocated_bytes() const {
  std::lock_guard lock(state_->mu);
  return state_->allocated;
}

size_t BufferPool::peak_bytes() const {
  std::lock_guard lock(state_->mu);
  return state_->peak;
}

}  // namespace escale
