#include "train/metrics_log.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/atomic_output.h"

namespace escale {

Result<MetricsLog> MetricsLog::Open(const std::string& path, int64_t keep_through_step) {
  std::string kept;
  std::error_code ec;
  if (keep_through_step >= 0 && std::filesystem::exists(path, ec)) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (in.eof()) break;  // no trailing newline: a torn write
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;
      if (j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() > keep_through_step)
        continue;
      kept += line + "\n";
    }
  }
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(path, kept));
  std::FILE* f = std::fopen(path.c_str(), "ab");
  if (f == nullptr) return IoError("cannot open " + path + ": " + std::strerror(errno));
  return MetricsLog(path, f);
}

MetricsLog::~MetricsLog() {
  if (f_ != nullptr) std::fclose(f_);
}

Status MetricsLog::Append(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    return IoError("cannot append to " + path_ + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace escale
