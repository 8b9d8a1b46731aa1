#include "surgery/convert.h"

#include <unordered_map>

#include "io/hf_model.h"

namespace escale::surgery {

namespace {

Result<DType> OutputDType(const ModelConfig& src, const ConvertOptions& conv) {
  const DType d = conv.dtype.value_or(src.dtype);
  if (d != DType::kF32 && d != DType::kBF16 && d != DType::kF16 && d != DType::kF64) {
    if (!conv.dtype) return DType::kF32;
    return InvalidArgument("--dtype must be f32, bf16, f16 or f64");
  }
  return d;
}

// Computes one tensor in fp32 (fp64 when the output is fp64) and stores it in the output dtype.
// WriteHfModel's buffer is 8-byte aligned, so f32/f64 results are written into it directly.
struct Buffers {
  Scratch<float> f;
  Scratch<double> d;
};

template <class Produce>
Status Emit(DType dtype, int64_t numel, Buffers& b, Produce&& produce, std::byte* out) {
  const auto n = static_cast<size_t>(numel);
  if (dtype == DType::kF64) return produce(reinterpret_cast<double*>(out), b.d);
  if (dtype == DType::kF32) return produce(reinterpret_cast<float*>(out), b.f);
  if (b.f.out.size() < n) b.f.out.resize(n);
  ESCALE_RETURN_IF_ERROR(produce(b.f.out.data(), b.f));
  return ConvertFromF32(b.f.out.data(), n, dtype, out);
}

template <class Plan>
std::unordered_map<std::string, size_t> IndexRecipes(const Plan& p) {
  std::unordered_map<std::string, size_t> m;
  for (size_t i = 0; i < p.recipes.size(); ++i) m.emplace(p.recipes[i].target.name, i);
  return m;
}

}  // namespace

Result<DType> ParseOutputDType(const std::string& s) {
  if (s == "f32" || s == "float32" || s == "F32") return DType::kF32;
  if (s == "bf16" || s == "bfloat16" || s == "BF16") return DType::kBF16;
  if (s == "f16" || s == "float16" || s == "F16") return DType::kF16;
  if (s == "f64" || s == "float64" || s == "F64") return DType::kF64;
  return InvalidArgument("--dtype '" + s + "' is not one of f32, bf16, f16, f64");
}

Result<std::string> ScaleUpModel(const std::string& src, const std::string& dst, const ScaleUpOptions& opt,
                                 const ConvertOptions& conv) {
  ESCALE_ASSIGN_OR_RETURN(ModelConfig cfg, ReadHfConfig(src));
  ESCALE_ASSIGN_OR_RETURN(ScaleUpPlan plan, PlanScaleUp(cfg, opt));
  ESCALE_ASSIGN_OR_RETURN(DType dtype, OutputDType(cfg, conv));
  ModelConfig out_cfg = plan.target;
  out_cfg.dtype = dtype;
  ESCALE_RETURN_IF_ERROR(HfConfigToJson(out_cfg).status());
  std::string text = DescribeScaleUp(plan, dtype);
  if (conv.dry_run) return text;
  ESCALE_ASSIGN_OR_RETURN(HfModel model, ReadHfModel(src));
  // The plan was made from config.json; the weights' reader must agree with it.
  ESCALE_ASSIGN_OR_RETURN(ScaleUpPlan checked, PlanScaleUp(model.config, opt));
  if (checked.recipes.size() != plan.recipes.size()) return InternalError("config.json was read two different ways");
  const SourceFn source = SourceFromMap(model.tensors);
  const auto index = IndexRecipes(plan);
  Buffers buffers;
  auto produce = [&](const TensorSpec& spec, std::byte* out) -> Status {
    auto it = index.find(spec.name);
    if (it == index.end()) return InternalError("no scale-up recipe for " + spec.name);
    const UpRecipe& r = plan.recipes[it->second];
    return Emit(dtype, ShapeNumel(spec.shape), buffers,
                [&](auto* to, auto& scratch) { return ProduceScaleUpInto(plan, r, source, to, scratch); }, out);
  };
  WriteOptions wo;
  wo.dtype = dtype;
  wo.metadata = ScaleUpMetadata(plan);
  wo.overwrite = conv.overwrite;
  wo.copy_tokenizer_from = src;
  wo.progress = conv.progress;
  ESCALE_RETURN_IF_ERROR(WriteHfModel(dst, plan.target, produce, wo));
  return text;
}

Result<std::string> ScaleOutModel(const std::string& src, const std::string& dst, const ScaleOutOptions& opt,
                                  const ConvertOptions& conv) {
  ESCALE_ASSIGN_OR_RETURN(ModelConfig cfg, ReadHfConfig(src));
  ESCALE_ASSIGN_OR_RETURN(ScaleOutPlan plan, PlanScaleOut(cfg, opt));
  ESCALE_ASSIGN_OR_RETURN(DType dtype, OutputDType(cfg, conv));
  // Refuse before any weight is read if the chosen format cannot hold the target.
  ModelConfig out_cfg = plan.target;
  out_cfg.dtype = dtype;
  ESCALE_RETURN_IF_ERROR(HfConfigToJson(out_cfg).status());
  std::string text = DescribeScaleOut(plan, dtype);
  if (conv.dry_run) return text;
  ESCALE_ASSIGN_OR_RETURN(HfModel model, ReadHfModel(src));
  const SourceFn source = SourceFromMap(model.tensors);
  const auto index = IndexRecipes(plan);
  Buffers buffers;
  auto produce = [&](const TensorSpec& spec, std::byte* out) -> Status {
    auto it = index.find(spec.name);
    if (it == index.end()) return InternalError("no scale-out recipe for " + spec.name);
    const OutRecipe& r = plan.recipes[it->second];
    return Emit(dtype, ShapeNumel(spec.shape), buffers,
                [&](auto* to, auto& scratch) { return ProduceScaleOutInto(plan, r, source, to, scratch); }, out);
  };
  WriteOptions wo;
  wo.dtype = dtype;
  wo.metadata = ScaleOutMetadata(plan);
  wo.overwrite = conv.overwrite;
  wo.copy_tokenizer_from = src;
  wo.progress = conv.progress;
  ESCALE_RETURN_IF_ERROR(WriteHfModel(dst, plan.target, produce, wo));
  return text;
}

}  // namespace escale::surgery
