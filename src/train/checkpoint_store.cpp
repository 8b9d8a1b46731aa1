#include "train/checkpoint_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/json_text.h"
#include "io/safetensors.h"

namespace escale {
namespace fs = std::filesystem;

namespace {
constexpr const char* kManifest = "manifest.json";
constexpr const char* kFormat = "escale-checkpoint-1";

Status FsyncFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open " + path + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0) return IoError("cannot fsync " + path + ": " + std::strerror(e));
  return Status::Ok();
}

std::optional<int64_t> ParseStepName(const std::string& name) {
  if (name.size() != 13 || name.rfind("step-", 0) != 0) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}
}  // namespace

std::string CheckpointName(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

std::string CheckpointsDir(const std::string& run_dir) { return run_dir + "/checkpoints"; }

Result<CheckpointWriter> CheckpointWriter::Begin(const std::string& run_dir, int64_t step) {
  if (step < 0 || step > 99'999'999) return InvalidArgument("checkpoint step out of range");
  std::error_code ec;
  fs::create_directories(CheckpointsDir(run_dir), ec);
  if (ec) return IoError("cannot create " + CheckpointsDir(run_dir) + ": " + ec.message());
  ESCALE_ASSIGN_OR_RETURN(StagingDir staging,
                          StagingDir::Create(CheckpointsDir(run_dir) + "/" + CheckpointName(step), true));
  return CheckpointWriter(run_dir, step, std::move(staging));
}

Status CheckpointWriter::Commit(const nlohmann::json& info, int64_t keep_last,
                                const std::set<int64_t>& keep_steps) {
  nlohmann::json files = nlohmann::json::object();
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(dir(), ec)) {
    if (!entry.is_regular_file()) continue;
    const std::string rel = fs::relative(entry.path(), dir()).string();
    if (rel == kManifest) continue;
    ESCALE_RETURN_IF_ERROR(FsyncFile(entry.path().string()));
    files[rel] = entry.file_size();
  }
  if (ec) return IoError("cannot list " + dir() + ": " + ec.message());
  for (const auto& entry : fs::recursive_directory_iterator(dir()))
    if (entry.is_directory()) ESCALE_RETURN_IF_ERROR(FsyncDir(entry.path().string()));
  nlohmann::json manifest = {{"format", kFormat}, {"step", step_}, {"files", files}, {"info", info}};
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(dir() + "/" + kManifest, manifest.dump(2) + "\n"));
  ESCALE_RETURN_IF_ERROR(staging_.Commit());
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(CheckpointsDir(run_dir_) + "/latest", CheckpointName(step_) + "\n"));
  if (keep_last > 0) {
    auto all = ListCheckpoints(run_dir_);
    std::erase_if(all, [&](const CheckpointInfo& c) { return keep_steps.count(c.step) > 0; });
    const int64_t excess = static_cast<int64_t>(all.size()) - keep_last;
    for (int64_t i = 0; i < excess; ++i) {
      if (all[static_cast<size_t>(i)].step == step_) continue;
      fs::remove_all(all[static_cast<size_t>(i)].path, ec);
    }
  }
  return Status::Ok();
}

Result<CheckpointInfo> VerifyCheckpoint(const std::string& dir) {
  ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(dir + "/" + kManifest));
  auto parsed = ParseJsonText(text, dir + "/" + kManifest);
  if (!parsed.ok()) return FormatError(parsed.status().message() + "; the checkpoint is damaged");
  nlohmann::json m = *std::move(parsed);
  if (!m.is_object() || !m.contains("format") || m["format"] != kFormat || !m.contains("step") ||
      !m["step"].is_number_integer() || !m.contains("files") || !m["files"].is_object())
    return FormatError(dir + "/manifest.json is not an escale checkpoint manifest");
  for (const auto& [name, size] : m["files"].items()) {
    std::error_code ec;
    const std::string path = dir + "/" + name;
    const auto actual = fs::file_size(path, ec);
    if (ec) return FormatError("checkpoint " + dir + " lacks " + name);
    if (!size.is_number_unsigned() || actual != size.get<uint64_t>())
      return FormatError("checkpoint file " + path + " has " + std::to_string(actual) +
                         " bytes, the manifest says " + size.dump());
  }
  return CheckpointInfo{dir, m["step"].get<int64_t>(), m};
}

std::vector<CheckpointInfo> ListCheckpoints(const std::string& run_dir) {
  std::vector<CheckpointInfo> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(CheckpointsDir(run_dir), ec)) {
    if (!entry.is_directory() || !ParseStepName(entry.path().filename().string())) continue;
    auto info = VerifyCheckpoint(entry.path().string());
    if (info.ok()) out.push_back(std::move(info).value());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

Result<std::optional<CheckpointInfo>> FindResumableCheckpoint(const std::string& run_dir) {
  const std::string cdir = CheckpointsDir(run_dir);
  std::error_code ec;
  if (!fs::is_directory(cdir, ec)) return std::optional<CheckpointInfo>();
  for (const auto& entry : fs::directory_iterator(cdir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp-") != std::string::npos) fs::remove_all(entry.path(), ec);
  }
  auto latest = ReadSmallFile(cdir + "/latest", 4096);
  if (latest.ok()) {
    std::string name = latest.value();
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (ParseStepName(name)) {
      auto info = VerifyCheckpoint(cdir + "/" + name);
      if (info.ok()) return std::optional<CheckpointInfo>(std::move(info).value());
    }
  }
  auto all = ListCheckpoints(run_dir);
  if (all.empty()) return std::optional<CheckpointInfo>();
  return std::optional<CheckpointInfo>(all.back());
}

Result<MomentMap> ReadCheckpointMoments(const std::string& model_dir) {
  fs::path model = fs::path(model_dir).lexically_normal();
  if (!model.has_filename()) model = model.parent_path();
  const std::string ckpt = model.parent_path().string();
  std::error_code ec;
  if (model.filename() != "model" || !fs::is_regular_file(ckpt + "/" + kManifest, ec))
    return InvalidArgument(
        "--carry-moments needs a training checkpoint's model (RUN/checkpoints/step-N/model), "
        "where the optimizer state lies beside it; " +
        model_dir + " is not one");
  ESCALE_RETURN_IF_ERROR(VerifyCheckpoint(ckpt).status());
  ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(ckpt + "/trainer_state.json"));
  const nlohmann::json state = nlohmann::json::parse(text, nullptr, false);
  if (state.is_discarded() || !state.is_object() || !state.contains("updates") ||
      !state["updates"].is_number_integer() || state["updates"].get<int64_t>() < 0)
    return FormatError(ckpt + "/trainer_state.json lacks the count of updates");
  const int64_t updates = state["updates"].get<int64_t>();
  // A run that itself started from carried moments continues their count per tensor.
  const nlohmann::json base = state.value("moment_steps_at_start", nlohmann::json::object());
  ESCALE_ASSIGN_OR_RETURN(SafetensorsFile f,
                          SafetensorsFile::Open(ckpt + "/optimizer.safetensors"));
  MomentMap out;
  for (const SafetensorsEntry& e : f.entries()) {
    if (e.name.rfind("m.", 0) != 0) continue;
    const std::string name = e.name.substr(2);
    ESCALE_ASSIGN_OR_RETURN(TensorMoments t, ReadMomentPair(f, name));
    const nlohmann::json b =
        base.is_object() ? base.value(name, nlohmann::json(0)) : nlohmann::json(0);
    t.steps = updates + (b.is_number_integer() ? b.get<int64_t>() : 0);
    out.emplace(name, std::move(t));
  }
  if (out.empty()) return FormatError(ckpt + "/optimizer.safetensors holds no moments");
  return out;
}

}  // namespace escale
