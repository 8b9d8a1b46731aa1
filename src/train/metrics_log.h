// Metrics as JSON Lines: one object per record, flushed per line so a killed run loses at most
// the line being written. On resume the log is cut back to the records up to the resumed step, so
// a resumed run's log equals an unbroken run's.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace escale {

class MetricsLog {
 public:
  // Opens `path` for appending; records with "step" > keep_through_step (and a torn last line)
  // are dropped first. keep_through_step < 0 starts an empty log.
  static Result<MetricsLog> Open(const std::string& path, int64_t keep_through_step);
  MetricsLog(MetricsLog&& o) noexcept : path_(std::move(o.path_)), f_(o.f_) { o.f_ = nullptr; }
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  ~MetricsLog();
  Status Append(const nlohmann::json& record);

 private:
  MetricsLog(std::string path, std::FILE* f) : path_(std::move(path)), f_(f) {}
  std::string path_;
  std::FILE* f_ = nullptr;
};

}  // namespace escale
