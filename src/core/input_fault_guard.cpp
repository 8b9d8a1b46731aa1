#include "core/input_fault_guard.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace escale::fault_guard {
namespace {

// Fixed tables, so the handler reads them without allocating or locking. A slot is published by
// storing its key last (release) and read by loading the key first (acquire); a slot whose key is
// 0 is free. More live mappings or outputs than slots are simply not guarded.
constexpr size_t kSlots = 256, kPathBytes = 512;

struct MappingSlot {
  std::atomic<uintptr_t> begin{0};
  size_t size = 0;
  char path[kPathBytes] = {};
};
struct StagingSlot {
  std::atomic<bool> used{false};
  char path[kPathBytes] = {};
};

MappingSlot g_mappings[kSlots];
struct sigaction g_previous {};  // whoever handled SIGBUS before (Open MPI installs one)
StagingSlot g_staging[kSlots];
std::mutex g_writers;  // serialises registration (never taken by the handler)

void CopyPath(char (&dst)[kPathBytes], const std::string& src) {
  const size_t n = std::min(src.size(), kPathBytes - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

void Say(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

// Recursive removal with system calls only (no allocation): a staging tree is a few levels deep.
void RemoveTree(const char* path, int depth) {
  struct stat st {};
  if (::lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode) && depth < 8) {
    if (DIR* d = ::opendir(path)) {
      while (const dirent* e = ::readdir(d)) {
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        char child[kPathBytes + 256];
        const size_t a = std::strlen(path), b = std::strlen(e->d_name);
        if (a + 1 + b >= sizeof child) continue;
        std::memcpy(child, path, a);
        child[a] = '/';
        std::memcpy(child + a + 1, e->d_name, b + 1);
        RemoveTree(child, depth + 1);
      }
      ::closedir(d);
    }
    ::rmdir(path);
  } else {
    ::unlink(path);
  }
}

void OnSigbus(int sig, siginfo_t* info, void*) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  const char* file = nullptr;
  for (const MappingSlot& m : g_mappings) {
    if (info->si_code <= 0) break;  // sent by kill or raise: si_addr means nothing
    const uintptr_t b = m.begin.load(std::memory_order_acquire);
    if (b != 0 && addr >= b && addr - b < m.size) file = m.path;
  }
  if (file == nullptr) {  // not an input that shrank: the previous handler, else the default
    ::sigaction(sig, &g_previous, nullptr);
    ::raise(sig);
    return;
  }
  Say("error: ");
  Say(file);
  Say(" shrank while it was being read (another process truncated or rewrote it); stopped, and "
      "the unfinished output was removed: rerun once the file is complete\n");
  for (StagingSlot& s : g_staging)
    if (s.used.load(std::memory_order_acquire)) RemoveTree(s.path, 0);
  ::_exit(1);
}

void InstallOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous);
  });
}

}  // namespace

void AddMapping(const void* begin, size_t size, const std::string& path) {
  if (begin == nullptr) return;
  InstallOnce();
  std::lock_guard<std::mutex> lock(g_writers);
  for (MappingSlot& m : g_mappings) {
    if (m.begin.load(std::memory_order_relaxed) != 0) continue;
    m.size = size;
    CopyPath(m.path, path);
    m.begin.store(reinterpret_cast<uintptr_t>(begin), std::memory_order_release);
    return;
  }
}

void RemoveMapping(const void* begin) {
  if (begin == nullptr) return;
  std::lock_guard<std::mutex> lock(g_writers);
  for (MappingSlot& m : g_mappings)
    if (m.begin.load(std::memory_order_relaxed) == reinterpret_cast<uintptr_t>(begin))
      m.begin.store(0, std::memory_order_release);
}

void AddStaging(const std::string& path) {
  if (path.empty() || path.size() >= kPathBytes) return;
  std::lock_guard<std::mutex> lock(g_writers);
  for (StagingSlot& s : g_staging) {
    if (s.used.load(std::memory_order_relaxed)) continue;
    CopyPath(s.path, path);
    s.used.store(true, std::memory_order_release);
    return;
  }
}

void RemoveStaging(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_writers);
  for (StagingSlot& s : g_staging)
    if (s.used.load(std::memory_order_relaxed) && path == s.path)
      s.used.store(false, std::memory_order_release);
}

}  // namespace escale::fault_guard
