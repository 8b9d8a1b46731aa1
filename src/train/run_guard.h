// What a training process holds for the lifetime of a run: the run directory's lock and the
// SIGINT/SIGTERM handlers that turn a stop request into "save, then exit".
#pragma once

#include <csignal>
#include <string>

#include "core/status.h"

namespace escale {

// One trainer per run directory at a time (advisory lock held for the run). The lock file is
// removed on release, whatever the exit path, and so is the run directory when this run created it
// and left nothing in it (a refusal before the first checkpoint).
class RunLock {
 public:
  static Result<RunLock> Acquire(const std::string& run_dir, bool created_dir);
  RunLock(RunLock&& o) noexcept;
  RunLock& operator=(RunLock&&) = delete;
  ~RunLock();

 private:
  RunLock() = default;
  int fd_ = -1;
  std::string path_, dir_;
};

// Installs SIGINT/SIGTERM handlers for its lifetime (restoring the old ones after); a signal only
// sets a flag, which the trainer reads once per step.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static bool Requested();

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

}  // namespace escale
