#include "surgery/convert.h"

#include <functional>
#include <unordered_map>

#include "core/buffer_pool.h"
#include "io/hf_model.h"
#include "surgery/moments.h"

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
// The writer's buffers are 2 MB aligned, so f32/f64 results are written into them directly.
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

// How one output tensor is executed, decided before any byte is written.
struct Step {
  std::vector<const Tensor*> reads;  // source tensors the recipe reads
  std::vector<const Tensor*> drop;   // source tensors no later recipe needs soon: release after
  const Tensor* verbatim = nullptr;  // write verbatim->bytes() + offset as they are
  size_t offset = 0;
  std::string share;  // recipes with the same key produce the same tensor
};

// Source pages used again within this many tensors stay mapped (the E expert copies of one dense
// FFN tensor are 3 apart); the rest are released after use, so resident memory follows the
// tensors in flight, not the model. Released pages stay in the page cache.
constexpr size_t kReuseWindow = 8;

void PlanReleases(std::vector<Step>& steps) {
  std::unordered_map<const Tensor*, size_t> next_use;
  for (size_t i = steps.size(); i-- > 0;) {
    for (const Tensor* t : steps[i].reads) {
      auto it = next_use.find(t);
      if (it == next_use.end() || it->second - i > kReuseWindow) steps[i].drop.push_back(t);
    }
    for (const Tensor* t : steps[i].reads) next_use[t] = i;
  }
}

const Tensor* Find(const HfModel& m, const std::string& name) {
  auto it = m.tensors.find(name);
  return it == m.tensors.end() ? nullptr : &it->second;
}

// Streams the target of a plan into `dst`: the producer thread computes tensor i+1 (or picks the
// bytes to copy) while the writer writes tensor i. Verbatim copies are written from the mapping
// with no fp32 round trip (widening then rounding an exact copy returns the same bits); tensors
// with a share key are computed once and written again from the same buffer.
template <class ProduceFn>
Status Execute(const std::string& dst, const ModelConfig& target, const HfModel& model,
               std::vector<Step> steps, const std::vector<std::string>& names, DType dtype,
               const ProduceFn& produce, WriteOptions wo) {
  PlanReleases(steps);
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < names.size(); ++i) index.emplace(names[i], i);
  BufferPool pool;
  Buffers buffers;
  std::unordered_map<std::string, std::shared_ptr<std::byte>> shared;
  int64_t shared_layer = -2;
  auto stream = [&](const TensorSpec& spec, size_t nbytes) -> Result<TensorBytes> {
    auto it = index.find(spec.name);
    if (it == index.end()) return InternalError("no recipe for " + spec.name);
    const size_t i = it->second;
    const Step& st = steps[i];
    auto release = [&model, list = st.drop] {
      for (const Tensor* t : list) ReleasePages(model, *t);
    };
    TensorBytes out;
    if (st.verbatim != nullptr) {
      if (st.offset + nbytes > st.verbatim->nbytes())
        return InternalError("verbatim range outside " + spec.name);
      out.bytes = st.verbatim->bytes() + st.offset;
      out.after_write = release;
      return out;
    }
    if (!st.share.empty()) {
      // Shared tensors repeat within a layer; older ones are let go.
      if (spec.layer != shared_layer) {
        shared.clear();
        shared_layer = spec.layer;
      }
      if (auto hit = shared.find(st.share); hit != shared.end()) {
        out.bytes = hit->second.get();
        out.keep = hit->second;
        release();
        return out;
      }
    }
    for (const Tensor* t : st.reads) PopulatePages(*t);
    std::shared_ptr<std::byte> buf = pool.Acquire(nbytes);
    if (!buf)
      return IoError("cannot allocate " + std::to_string(nbytes) + " bytes for " + spec.name);
    ESCALE_RETURN_IF_ERROR(Emit(
        dtype, ShapeNumel(spec.shape), buffers,
        [&](auto* to, auto& scratch) { return produce(i, to, scratch); }, buf.get()));
    release();
    if (!st.share.empty()) shared.emplace(st.share, buf);
    out.bytes = buf.get();
    out.keep = std::move(buf);
    return out;
  };
  return StreamHfModel(dst, target, stream, wo);
}

void AddRead(const HfModel& m, const std::string& name, Step& st) {
  if (name.empty()) return;
  if (const Tensor* t = Find(m, name)) st.reads.push_back(t);
}

// The source bytes `r` copies, when they are already in the output dtype and shape.
void SetVerbatim(const HfModel& m, const std::string& name, const Shape& shape,
                 std::optional<int64_t> offset, DType dtype, Step& st) {
  const Tensor* t = Find(m, name);
  if (!offset || t == nullptr || t->dtype() != dtype || t->shape() != shape) return;
  st.verbatim = t;
  st.offset = static_cast<size_t>(*offset) * static_cast<size_t>(DTypeSize(dtype));
}

}  // namespace

Result<DType> ParseOutputDType(const std::string& s) {
  if (s == "f32" || s == "float32" || s == "F32") return DType::kF32;
  if (s == "bf16" || s == "bfloat16" || s == "BF16") return DType::kBF16;
  if (s == "f16" || s == "float16" || s == "F16") return DType::kF16;
  if (s == "f64" || s == "float64" || s == "F64") return DType::kF64;
  return InvalidArgument("--dtype '" + s + "' is not one of f32, bf16, f16, f64");
}

namespace {

// How both conversions write DST: its dtype and provenance, the source's tokenizer files, and
// with --carry-moments the mapped moments beside the model (`moments` must outlive the write).
WriteOptions ConversionWriteOptions(const std::string& src, DType dtype,
                                    std::map<std::string, std::string> metadata,
                                    const ConvertOptions& conv, const MomentMap& moments) {
  WriteOptions wo;
  wo.dtype = dtype;
  wo.metadata = std::move(metadata);
  wo.overwrite = conv.overwrite;
  wo.copy_tokenizer_from = src;
  wo.inputs = {src};
  wo.progress = conv.progress;
  if (conv.moments != nullptr)
    wo.write_extra = [&moments](const std::string& dir) {
      return WriteMomentsFile(dir + "/" + kMomentsFile, moments);
    };
  return wo;
}

}  // namespace

Result<std::string> ScaleUpModel(const std::string& src, const std::string& dst,
                                 const ScaleUpOptions& opt, const ConvertOptions& conv) {
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
  if (checked.recipes.size() != plan.recipes.size())
    return InternalError("config.json was read two different ways");
  const SourceFn source = SourceFromMap(model.tensors);
  std::vector<Step> steps(plan.recipes.size());
  std::vector<std::string> names;
  for (size_t i = 0; i < plan.recipes.size(); ++i) {
    const UpRecipe& r = plan.recipes[i];
    names.push_back(r.target.name);
    if (r.zero) continue;
    AddRead(model, r.source, steps[i]);
    AddRead(model, r.next, steps[i]);
    SetVerbatim(model, r.source, r.source_shape,
                ScaleUpIsCopy(r) ? std::optional<int64_t>(0) : std::nullopt, dtype, steps[i]);
  }
  auto produce = [&](size_t i, auto* to, auto& scratch) {
    return ProduceScaleUpInto(plan, plan.recipes[i], source, to, scratch);
  };
  MomentMap moments;
  if (conv.moments != nullptr) {
    ESCALE_ASSIGN_OR_RETURN(moments, ScaleUpMoments(plan, *conv.moments));
  }
  const WriteOptions wo = ConversionWriteOptions(src, dtype, ScaleUpMetadata(plan), conv, moments);
  ESCALE_RETURN_IF_ERROR(
      Execute(dst, plan.target, model, std::move(steps), names, dtype, produce, wo));
  return text;
}

Result<std::string> ScaleOutModel(const std::string& src, const std::string& dst,
                                  const ScaleOutOptions& opt, const ConvertOptions& conv) {
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
  std::vector<Step> steps(plan.recipes.size());
  std::vector<std::string> names;
  for (size_t i = 0; i < plan.recipes.size(); ++i) {
    const OutRecipe& r = plan.recipes[i];
    names.push_back(r.target.name);
    if (r.kind == OutKind::kZero || r.kind == OutKind::kRouter) continue;
    AddRead(model, r.source, steps[i]);
    SetVerbatim(model, r.source, r.source_shape, ScaleOutCopyOffset(plan, r), dtype, steps[i]);
    steps[i].share = ScaleOutShareKey(plan, r);
  }
  auto produce = [&](size_t i, auto* to, auto& scratch) {
    return ProduceScaleOutInto(plan, plan.recipes[i], source, to, scratch);
  };
  MomentMap moments;
  if (conv.moments != nullptr) {
    ESCALE_ASSIGN_OR_RETURN(moments, ScaleOutMoments(plan, *conv.moments));
  }
  const WriteOptions wo = ConversionWriteOptions(src, dtype, ScaleOutMetadata(plan), conv, moments);
  ESCALE_RETURN_IF_ERROR(
      Execute(dst, plan.target, model, std::move(steps), names, dtype, produce, wo));
  return text;
}

}  // namespace escale::surgery
