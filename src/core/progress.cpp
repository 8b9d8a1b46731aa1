#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>

namespace escale {
namespace {
std::atomic<bool> g_enabled{true};
}

void Progress::SetGloballyEnabled(bool enabled) { g_enabled = enabled; }

std::string FormatBytes(double b) {
  char buf[64];
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else if (b >= 1e3) std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

std::string FormatDuration(double s) {
  char buf[64];
  if (s < 0 || s != s) return "?";
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}

Progress::Progress(std::string label, uint64_t total, std::string unit, bool enabled)
    : label_(std::move(label)), total_(total), unit_(std::move(unit)),
      enabled_(enabled && g_enabled.load()), tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_ && enabled_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::Update(uint64_t done, const std::string& detail) {
  done_ = done;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since < (tty_ ? 0.2 : 5.0)) return;
  last_draw_ = now;
  Draw(false, detail);
}

void Progress::Finish(const std::string& detail) {
  if (finished_) return;
  finished_ = true;
  if (enabled_) Draw(true, detail);
}

void Progress::Draw(bool final_line, const std::string& detail) {
  const double el = elapsed_seconds();
  const double rate = el > 0 ? static_cast<double>(done_ - std::min(done_, base_)) / el : 0;
  std::string amount, rate_s;
  if (unit_ == "B") {
    amount = FormatBytes(static_cast<double>(done_)) + "/" + FormatBytes(static_cast<double>(total_));
    rate_s = FormatBytes(rate) + "/s";
  } else {
    amount = std::to_string(done_) + "/" + std::to_string(total_) + " " + unit_;
    char b[48];
    std::snprintf(b, sizeof b, "%.1f %s/s", rate, unit_.c_str());
    rate_s = b;
  }
  const double pct = total_ ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0;
  std::string eta = final_line ? "done in " + FormatDuration(el)
                               : "ETA " + FormatDuration(rate > 0 ? static_cast<double>(total_ - std::min(total_, done_)) / rate : -1);
  std::fprintf(stderr, "%s%s %5.1f%% %s %s %s%s%s%s", tty_ ? "\r\033[K" : "", label_.c_str(), pct,
               amount.c_str(), rate_s.c_str(), eta.c_str(), detail.empty() ? "" : " ",
               detail.c_str(), (final_line || !tty_) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace escale
