#include "train/trainer_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/atomic_output.h"
#include "data/blend.h"
#include "io/hf_model.h"
#include "io/optimizer_moments.h"
#include "io/safetensors.h"
#include "train/checkpoint_store.h"

namespace escale {
namespace fs = std::filesystem;

// The options that must not change across a resume (they change the data or the maths).
nlohmann::json ResumeKey(const TrainOptions& o) {
  nlohmann::json key = {{"seq_len", o.seq_len},
                        {"micro_batch", o.micro_batch},
                        {"global_batch_tokens", o.global_batch_tokens},
                        {"seed", o.seed},
                        {"schedule", o.schedule},
                        {"lr", o.lr},
                        {"min_lr", o.min_lr},
                        {"warmup", o.warmup},
                        {"beta1", o.beta1},
                        {"beta2", o.beta2},
                        {"weight_decay", o.weight_decay}};
  // Names and weights fix which source serves each window; a plain --data run keeps the old key.
  if (!o.data_blend.empty()) {
    nlohmann::json blend = nlohmann::json::array();
    Result<std::vector<BlendEntry>> entries = ParseDataBlend(o.data_blend);  // validated before
    if (entries.ok())
      for (const auto& e : *entries) blend.push_back({e.name, e.weight});
    key["data_blend"] = blend;
  }
  return key;
}

nlohmann::json CursorJson(const DataCursor& c) {
  return {{"epoch", c.epoch}, {"position", c.position}};
}
DataCursor CursorFrom(const nlohmann::json& d) {
  return {d.at("epoch").get<int64_t>(), d.at("position").get<int64_t>()};
}

std::string FirstNonFinite(std::span<const TrainModel::Param> params) {
  for (const auto& p : params)
    for (size_t i = 0; i < p.value.size(); ++i)
      if (!std::isfinite(p.value[i])) return p.name + "[" + std::to_string(i) + "]";
  return "";
}

Status StartBranchLog(const std::string& checkpoint_dir, const std::string& out) {
  fs::path ckpt = fs::path(checkpoint_dir).lexically_normal();
  if (!ckpt.has_filename()) ckpt = ckpt.parent_path();
  const fs::path parent_log = ckpt.parent_path().parent_path() / "metrics.jsonl";
  std::error_code ec;
  if (!fs::exists(parent_log, ec)) return Status::Ok();
  ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(parent_log.string()));
  return WriteFileAtomic(out + "/metrics.jsonl", text);
}

Status SaveCheckpoint(const std::string& run_dir, int64_t step, const TrainModel& model,
                      std::span<const float> m_full, std::span<const float> v_full,
                      const std::vector<int64_t>& offset, const nlohmann::json& state,
                      const CheckpointExtras& extras) {
  ESCALE_ASSIGN_OR_RETURN(CheckpointWriter w, CheckpointWriter::Begin(run_dir, step));
  WriteOptions wo;
  wo.dtype = DType::kF32;
  wo.max_shard_bytes = uint64_t{1} << 62;
  wo.progress = false;
  wo.warn = false;  // said once when the run starts
  wo.copy_tokenizer_from = extras.copy_files_from;
  wo.metadata = {{"escale.step", std::to_string(step)}};
  ESCALE_RETURN_IF_ERROR(
      WriteHfModel(w.dir() + "/model", model.config(), model.ExportTensors(), wo));
  // Optimizer moments as one safetensors file: m.NAME and v.NAME, fp32.
  std::vector<SafetensorsEntry> entries;
  const auto params = model.params();
  for (const auto& p : params) {
    const Shape shape{static_cast<int64_t>(p.value.size())};
    entries.push_back({"m." + p.name, DType::kF32, shape, 0, 0});
    entries.push_back({"v." + p.name, DType::kF32, shape, 0, 0});
  }
  SafetensorsWriter::Options so;
  so.basename = "optimizer";
  so.max_shard_bytes = uint64_t{1} << 62;
  ESCALE_ASSIGN_OR_RETURN(SafetensorsWriter sw, SafetensorsWriter::Create(w.dir(), entries, so));
  for (size_t i = 0; i < params.size(); ++i) {
    const size_t off = static_cast<size_t>(offset[i]), n = params[i].value.size();
    ESCALE_RETURN_IF_ERROR(sw.Write("m." + params[i].name, m_full.data() + off, n * 4));
    ESCALE_RETURN_IF_ERROR(sw.Write("v." + params[i].name, v_full.data() + off, n * 4));
  }
  ESCALE_RETURN_IF_ERROR(sw.Finish());
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(w.dir() + "/trainer_state.json", state.dump(2) + "\n"));
  return w.Commit({{"step", step}, {"description", extras.description}}, extras.keep_last,
                  extras.keep_steps);
}

Status ReadCheckpointOptimizer(const std::string& checkpoint_dir,
                               std::span<const TrainModel::Param> params,
                               const std::vector<int64_t>& offset, std::span<float> m_full,
                               std::span<float> v_full) {
  ESCALE_ASSIGN_OR_RETURN(SafetensorsFile of,
                          SafetensorsFile::Open(checkpoint_dir + "/optimizer.safetensors"));
  for (size_t i = 0; i < params.size(); ++i) {
    for (int which = 0; which < 2; ++which) {
      const std::string name = (which == 0 ? "m." : "v.") + params[i].name;
      ESCALE_ASSIGN_OR_RETURN(Tensor t, of.Get(name));
      float* dst = (which == 0 ? m_full : v_full).data() + offset[i];
      if (t.dtype() != DType::kF32 || static_cast<size_t>(t.numel()) != params[i].value.size())
        return FormatError("optimizer state " + name + " has the wrong dtype or size");
      std::memcpy(dst, t.bytes(), params[i].value.size() * sizeof(float));
    }
  }
  return Status::Ok();
}

Status LoadCarriedMoments(const std::string& model_dir, std::span<const TrainModel::Param> params,
                          const std::vector<int64_t>& offset, std::vector<float>& m,
                          std::vector<float>& v, std::vector<int64_t>& base) {
  const std::string path = model_dir + "/" + kMomentsFile;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    return InvalidArgument(
        "--carry-moments: " + path +
        " does not exist; make the model with scale-up or scale-out "
        "--carry-moments from a training checkpoint (or train without --carry-moments)");
  ESCALE_ASSIGN_OR_RETURN(MomentMap moments, ReadMomentsFile(path));
  if (moments.size() != params.size())
    return InvalidArgument(path + " holds the moments of " + std::to_string(moments.size()) +
                           " tensors, the model has " + std::to_string(params.size()) +
                           ": it was written for another model");
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = moments.find(params[i].name);
    if (it == moments.end() || it->second.m.size() != params[i].value.size())
      return InvalidArgument(path + " has no moments of " + params[i].name + " with its " +
                             std::to_string(params[i].value.size()) +
                             " elements: it was written for another model");
    std::copy(it->second.m.begin(), it->second.m.end(), m.begin() + offset[i]);
    std::copy(it->second.v.begin(), it->second.v.end(), v.begin() + offset[i]);
    base[i] = it->second.steps;
  }
  return Status::Ok();
}

}  // namespace escale
