#include "io/optimizer_moments.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"

namespace escale {
namespace {
constexpr const char* kStepsKey = "escale.moment_steps";
}

Status WriteMomentsFile(const std::string& path, const MomentMap& moments) {
  std::vector<SafetensorsEntry> entries;
  nlohmann::json steps = nlohmann::json::object();
  for (const auto& [name, t] : moments) {
    if (t.m.size() != t.v.size()) return InternalError("moments of " + name + " differ in size");
    const Shape shape{static_cast<int64_t>(t.m.size())};
    entries.push_back({"m." + name, DType::kF32, shape, 0, 0});
    entries.push_back({"v." + name, DType::kF32, shape, 0, 0});
    steps[name] = t.steps;
  }
  const std::filesystem::path p(path);
  std::error_code ec;
  std::filesystem::create_directories(p.parent_path(), ec);
  if (ec) return IoError("cannot create " + p.parent_path().string() + ": " + ec.message());
  SafetensorsWriter::Options so;
  so.basename = p.stem().string();
  so.max_shard_bytes = uint64_t{1} << 62;
  so.metadata = {{kStepsKey, steps.dump()}};
  ESCALE_ASSIGN_OR_RETURN(SafetensorsWriter w,
                          SafetensorsWriter::Create(p.parent_path().string(), entries, so));
  for (const auto& [name, t] : moments) {
    ESCALE_RETURN_IF_ERROR(w.Write("m." + name, t.m.data(), t.m.size() * sizeof(float)));
    ESCALE_RETURN_IF_ERROR(w.Write("v." + name, t.v.data(), t.v.size() * sizeof(float)));
  }
  return w.Finish();
}

Result<TensorMoments> ReadMomentPair(const SafetensorsFile& f, const std::string& name) {
  TensorMoments t;
  for (int which = 0; which < 2; ++which) {
    const std::string key = (which == 0 ? "m." : "v.") + name;
    if (f.Find(key) == nullptr) return FormatError(f.path() + " lacks " + key);
    ESCALE_ASSIGN_OR_RETURN(Tensor x, f.Get(key));
    if (x.dtype() != DType::kF32 || x.shape().size() != 1)
      return FormatError(f.path() + ": " + key + " is not a fp32 vector");
    std::vector<float>& dst = which == 0 ? t.m : t.v;
    dst.resize(static_cast<size_t>(x.numel()));
    std::memcpy(dst.data(), x.bytes(), dst.size() * sizeof(float));
    for (float e : dst)
      if (!std::isfinite(e) || (which == 1 && e < 0))
        return FormatError(f.path() + ": " + key + " holds a value that is not finite" +
                           (which == 1 ? " or negative" : ""));
  }
  if (t.m.size() != t.v.size())
    return FormatError(f.path() + ": m and v of " + name + " differ in size");
  return t;
}

Result<MomentMap> ReadMomentsFile(const std::string& path) {
  ESCALE_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(path));
  auto it = f.metadata().find(kStepsKey);
  if (it == f.metadata().end())
    return FormatError(path + " is not a moments file (no " + kStepsKey +
                       " metadata); write it with "
                       "scale-up or scale-out --carry-moments");
  const nlohmann::json steps = nlohmann::json::parse(it->second, nullptr, false);
  if (steps.is_discarded() || !steps.is_object())
    return FormatError(path + ": " + kStepsKey + " is not a JSON object");
  MomentMap out;
  for (const auto& [name, s] : steps.items()) {
    if (!s.is_number_integer() || s.get<int64_t>() < 0)
      return FormatError(path + ": the steps of " + name + " are not a count");
    ESCALE_ASSIGN_OR_RETURN(TensorMoments t, ReadMomentPair(f, name));
    t.steps = s.get<int64_t>();
    out.emplace(name, std::move(t));
  }
  if (f.entries().size() != 2 * out.size())
    return FormatError(path + " holds tensors its " + kStepsKey + " does not list");
  return out;
}

}  // namespace escale
