// One-line progress display for long work: done/total, rate and ETA. Redraws in place on a
// terminal; otherwise prints a line every few seconds so logs stay readable. Quiet when disabled.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace escale {

class Progress {
 public:
  // `unit` is "B" for bytes (shown as MB/GB) or a noun such as "tensors" or "steps".
  Progress(std::string label, uint64_t total, std::string unit, bool enabled = true);
  ~Progress();
  void Update(uint64_t done, const std::string& detail = "");
  void Add(uint64_t delta, const std::string& detail = "") { Update(done_ + delta, detail); }
  void Finish(const std::string& detail = "");
  // Work already done before this process started (a resumed run): shown in the count, not
  // counted in the rate or the ETA.
  void StartAt(uint64_t done) { done_ = base_ = done; }
  double elapsed_seconds() const;

  static void SetGloballyEnabled(bool enabled);

 private:
  void Draw(bool final_line, const std::string& detail);
  std::string label_;
  uint64_t total_;
  std::string unit_;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  uint64_t done_ = 0, base_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

std::string FormatBytes(double bytes);
std::string FormatDuration(double seconds);

}  // namespace escale
