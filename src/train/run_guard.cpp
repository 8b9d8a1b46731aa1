#include "train/run_guard.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace escale {
namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void OnStopSignal(int sig) {
  g_stop_signal.store(sig);
}
}  // namespace

Result<RunLock> RunLock::Acquire(const std::string& run_dir, bool created_dir) {
  const std::string path = run_dir + "/.lock";
  // The holder unlinks the file before it unlocks: a waiter may lock that unlinked inode, so it
  // retries until the inode it locked is still the one at the path.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return IoError("cannot create " + path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return InvalidArgument("another escale train is using " + run_dir +
                             "; wait for it or choose another --out");
    }
    struct stat held {};
    struct stat now {};
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev) {
      RunLock l;
      l.fd_ = fd;
      l.path_ = path;
      l.dir_ = created_dir ? run_dir : "";
      return l;
    }
    ::close(fd);
  }
  return IoError("cannot lock " + path + ": it keeps being replaced");
}

RunLock::RunLock(RunLock&& o) noexcept
    : fd_(o.fd_), path_(std::move(o.path_)), dir_(std::move(o.dir_)) {
  o.fd_ = -1;
}

RunLock::~RunLock() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());
  ::close(fd_);
  if (!dir_.empty()) ::rmdir(dir_.c_str());  // fails, harmlessly, unless the directory is empty
}

StopSignals::StopSignals() {
  g_stop_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int_);
  sigaction(SIGTERM, &sa, &old_term_);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
}

bool StopSignals::Requested() {
  return g_stop_signal.load() != 0;
}

}  // namespace escale
