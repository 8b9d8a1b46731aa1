// Large writes through a pipe (core/splice_write.h) and the recycled buffers of core/buffer_pool.h.
#include "core/splice_write.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "core/atomic_output.h"
#include "core/buffer_pool.h"
#include "support/test_support.h"

namespace escale {
namespace {

using testing::TempDir;

std::vector<char> Pattern(size_t n, unsigned seed) {
  std::vector<char> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : v) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return v;
}

// Several sizes around the pipe's capacity, then back to back into one file.
TEST(SpliceWriter, WritesExactlyTheBytesAtTheFileOffset) {
  TempDir tmp;
  const std::string path = tmp / "f";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  SpliceWriter w;
  std::vector<char> all;
  unsigned seed = 1;
  for (size_t n : {size_t{3}, size_t{1} << 20, (size_t{1} << 20) + 4095, size_t{5} << 20, size_t{0},
                   size_t{77}}) {
    std::vector<char> p = Pattern(n, seed++);
    ASSERT_TRUE(w.Write(fd, p.data(), p.size(), path).ok());
    // The caller may overwrite its memory right away: the file must keep the old bytes.
    all.insert(all.end(), p.begin(), p.end());
    std::fill(p.begin(), p.end(), 0);
  }
  ::close(fd);
  const std::string got = testing::ReadFile(path);
  ASSERT_EQ(got.size(), all.size());
  EXPECT_EQ(std::memcmp(got.data(), all.data(), all.size()), 0);
}

// O_APPEND files refuse splice(2) (EINVAL): the writer falls back to write() without losing bytes.
TEST(SpliceWriter, FallsBackWhenTheFileRefusesSplicing) {
  TempDir tmp;
  const std::string path = tmp / "f";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  ASSERT_GE(fd, 0);
  SpliceWriter w;
  const std::vector<char> a = Pattern(3u << 20, 7), b = Pattern(2u << 20, 8);
  ASSERT_TRUE(w.Write(fd, a.data(), a.size(), path).ok());
  ASSERT_TRUE(w.Write(fd, b.data(), b.size(), path).ok());
  ::close(fd);
  const std::string got = testing::ReadFile(path);
  ASSERT_EQ(got.size(), a.size() + b.size());
  EXPECT_EQ(std::memcmp(got.data(), a.data(), a.size()), 0);
  EXPECT_EQ(std::memcmp(got.data() + a.size(), b.data(), b.size()), 0);
}

TEST(SpliceWriter, AtomicFileLargeAndSmallWritesKeepTheirOrder) {
  TempDir tmp;
  const std::string path = tmp / "g";
  auto f = AtomicFile::Create(path);
  ASSERT_TRUE(f.ok());
  const std::vector<char> small = Pattern(100, 1), big = Pattern(3u << 20, 2);
  ASSERT_TRUE(f->Write(small.data(), small.size()).ok());
  ASSERT_TRUE(f->Write(big.data(), big.size()).ok());
  ASSERT_TRUE(f->Write(small.data(), small.size()).ok());
  EXPECT_EQ(f->bytes_written(), 2 * small.size() + big.size());
  ASSERT_TRUE(f->Commit().ok());
  std::vector<char> want = small;
  want.insert(want.end(), big.begin(), big.end());
  want.insert(want.end(), small.begin(), small.end());
  const std::string got = testing::ReadFile(path);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
}

TEST(BufferPool, ReusesReturnedBuffersAndKeepsFewOfThem) {
  BufferPool pool(2);
  std::byte* first = nullptr;
  {
    auto a = pool.Acquire(3u << 20);
    ASSERT_NE(a, nullptr);
    first = a.get();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % (2u << 20), 0u);
    std::memset(a.get(), 1, 3u << 20);
  }
  auto b = pool.Acquire(1u << 20);  // fits in the returned one: no new allocation
  EXPECT_EQ(b.get(), first);
  const size_t after_reuse = pool.allocated_bytes();
  EXPECT_EQ(after_reuse, 4u << 20);  // 3 MB rounded up to 2 MB pages
  b.reset();
  // Returned from other threads, more than `keep_free` at once: the surplus is freed.
  {
    std::vector<std::shared_ptr<std::byte>> held;
    for (int i = 0; i < 5; ++i) held.push_back(pool.Acquire(2u << 20));
    std::thread t([v = std::move(held)]() mutable { v.clear(); });
    t.join();
  }
  EXPECT_LE(pool.allocated_bytes(), 2 * (4u << 20));
  EXPECT_GE(pool.peak_bytes(), (4u << 20) + 4 * (2u << 20));
}

TEST(BufferPool, BuffersMayOutliveThePool) {
  std::shared_ptr<std::byte> kept;
  {
    BufferPool pool;
    kept = pool.Acquire(1000);
    ASSERT_NE(kept, nullptr);
  }
  std::memset(kept.get(), 7, 1000);
  kept.reset();  // returns into the pool's state, which the buffer kept alive
}

}  // namespace
}  // namespace escale
