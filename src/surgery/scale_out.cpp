#include "surgery/scale_out.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/check.h"
#include "core/rng.h"
#include "surgery/plan_report.h"

namespace escale::surgery {

const OutRecipe* ScaleOutPlan::Find(const std::string& target_name) const {
  for (const OutRecipe& r : recipes)
    if (r.target.name == target_name) return &r;
  return nullptr;
}

namespace {

std::string D(int64_t v) {
  return std::to_string(v);
}

std::string Num(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

std::string StreamName(const char* what, int64_t layer, int64_t expert, const char* which) {
  return std::string(what) + "/layer/" + D(layer) + "/expert/" + D(expert) + "/" + which;
}

// Drop-Upcycling: the neurons of expert e of layer l to re-initialise, one set shared by gate, up
// and down (the paper's description), drawn by a partial Fisher-Yates shuffle.
std::vector<uint8_t> ReinitMask(uint64_t seed, int64_t layer, int64_t expert, int64_t fe,
                                double ratio) {
  std::vector<int64_t> idx(static_cast<size_t>(fe));
  for (int64_t i = 0; i < fe; ++i) idx[static_cast<size_t>(i)] = i;
  const auto n = static_cast<int64_t>(std::llround(ratio * static_cast<double>(fe)));
  Rng rng = Rng::Stream(seed, StreamName("reinit-set", layer, expert, "ffn"));
  std::vector<uint8_t> mask(static_cast<size_t>(fe), 0);
  for (int64_t i = 0; i < n; ++i) {
    const auto j = i + static_cast<int64_t>(rng.NextBelow(static_cast<uint64_t>(fe - i)));
    std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(j)]);
    mask[static_cast<size_t>(idx[static_cast<size_t>(i)])] = 1;
  }
  return mask;
}

}  // namespace

std::vector<double> GaussianDraws(uint64_t seed, const std::string& stream, int64_t n,
                                  double std_dev) {
  Rng rng = Rng::Stream(seed, stream);
  std::vector<double> w(static_cast<size_t>(n));
  for (double& x : w) x = rng.NextNormal() * std_dev;
  return w;
}

std::vector<double> RouterBaseWeights(uint64_t seed, int64_t layer, int64_t rows, int64_t cols,
                                      double std_dev) {
  return GaussianDraws(seed, "router/layer/" + D(layer), rows * cols, std_dev);
}

Status ApplyScaleOutChoices(const ScaleOutChoices& c, ScaleOutOptions& opt) {
  if (c.router != "mixtral" && c.router != "st")
    return InvalidArgument("router '" + c.router + "' is not one of mixtral, st");
  const ArchitectureInfo* f = FindArchitecture(c.format);
  if (c.format != "auto" && (f == nullptr || !f->moe))
    return InvalidArgument("format '" + c.format + "' is not one of auto, " +
                           std::string(ArchitectureCliList(true)));
  if (c.drop_by != "probability" && c.drop_by != "position")
    return InvalidArgument("drop-by '" + c.drop_by + "' is not one of probability, position");
  opt.router = c.router == "st" ? RouterType::kSt : RouterType::kMixtral;
  opt.format = c.format == "auto" ? std::nullopt : std::optional<Architecture>(f->arch);
  opt.drop_policy = c.drop_by == "position" ? DropPolicy::kPosition : DropPolicy::kProbability;
  return Status::Ok();
}

namespace {

// Why MoE row `ai` cannot hold an upcycled `src` with these options ("" when it can).
std::string CannotHold(const ArchitectureInfo& ai, const ModelConfig& src,
                       const ScaleOutOptions& opt) {
  if (ai.qk_norm != src.qk_norm)
    return src.qk_norm == QkNorm::kNone ? "it normalises q and k, which the source does not"
                                        : "it has no q/k norm, which the source has";
  if (src.qkv_bias && ai.qkv_bias == QkvBias::kNever) return "the source has q/k/v biases";
  if (opt.shared_expert && !ai.shared_expert) return "it has no shared expert (--shared-experts)";
  if (opt.router == RouterType::kSt && !ai.router_choice)
    return "it always renormalises the top-k (--router st)";
  if (opt.every > 1 && !ai.sparse_layers)
    return "it makes every layer MoE (--moe-every " + D(opt.every) + ")";
  return "";
}

}  // namespace

Result<Architecture> PickMoeArchitecture(const ModelConfig& src, const ScaleOutOptions& opt) {
  if (opt.format) {
    const ArchitectureInfo& ai = ArchInfo(*opt.format);
    const std::string why = CannotHold(ai, src, opt);
    if (!why.empty())
      return InvalidArgument("the " + std::string(ai.cli_name) +
                             " format cannot hold this model: " + why +
                             "; choose another --format or drop the option");
    return ai.arch;
  }
  const ArchitectureInfo& own = ArchInfo(ArchInfo(src.arch).moe_form);
  std::string first_why = CannotHold(own, src, opt);
  if (first_why.empty()) return own.arch;
  for (const ArchitectureInfo& ai : Architectures())
    if (ai.moe && CannotHold(ai, src, opt).empty()) return ai.arch;
  return InvalidArgument("no MoE architecture can hold this model: " + std::string(own.class_name) +
                         " cannot because " + first_why +
                         ", and no other MoE class fits it either");
}

Result<ScaleOutPlan> PlanScaleOut(const ModelConfig& src, const ScaleOutOptions& opt) {
  ESCALE_RETURN_IF_ERROR(src.Validate().WithContext("source config"));
  if (src.is_moe()) return PlanExpertGrowth(src, opt);
  if (opt.router_noise != 0)
    return InvalidArgument(
        "--router-noise perturbs the copied router rows of an MoE source; a dense source's router "
        "is drawn fresh (use --router-init-std)");
  const int64_t E = opt.experts, k = opt.top_k, G = opt.granularity, f = src.intermediate_size;
  if (E < 2) return InvalidArgument("--experts must be at least 2 (got " + D(E) + ")");
  if (k == 0) return InvalidArgument("--top-k is required for a dense source (e.g. --top-k 2)");
  if (E > 65536) return InvalidArgument("--experts " + D(E) + " is more than 65536");
  if (k < 1 || k > E)
    return InvalidArgument("--top-k must be between 1 and --experts " + D(E) + " (got " + D(k) +
                           ")");
  if (G < 1) return InvalidArgument("--granularity must be at least 1 (got " + D(G) + ")");
  // The model routes to k*G slices; only a single selected slice leaves the softmax constant.
  if (k * G == 1 && opt.router == RouterType::kMixtral)
    return InvalidArgument(
        "--top-k 1 with mixtral routing gives the router no gradient (softmax over one selected "
        "expert is always 1); use --top-k 2 or more, --granularity 2 or more, or --router st");
  if (G > f)
    return InvalidArgument("--granularity " + D(G) + " is larger than the FFN size " + D(f));
  if (E * G > 65536)
    return InvalidArgument("--experts x --granularity = " + D(E * G) +
                           " is more than 65536 experts");
  if (f % G != 0)
    return InvalidArgument("--granularity " + D(G) + " does not divide the FFN size " + D(f));
  if (opt.every < 1 || opt.every > src.num_layers)
    return InvalidArgument("--moe-every must be between 1 and the number of layers " +
                           D(src.num_layers));
  if (!(opt.router_std >= 0) || !std::isfinite(opt.router_std))
    return InvalidArgument("--router-init-std must be a finite number >= 0");
  if (!(opt.capacity_factor >= 0) || !std::isfinite(opt.capacity_factor))
    return InvalidArgument("--capacity-factor must be >= 0 (0 = dropless)");
  if (!(opt.expert_noise >= 0) || !std::isfinite(opt.expert_noise))
    return InvalidArgument("--expert-noise must be >= 0");
  if (!(opt.reinit_ratio >= 0 && opt.reinit_ratio <= 1))
    return InvalidArgument("--reinit-ratio must be between 0 and 1");

  ScaleOutPlan p;
  p.source = src;
  p.options = opt;
  ESCALE_ASSIGN_OR_RETURN(p.format, PickMoeArchitecture(src, opt));
  const ArchitectureInfo& ai = ArchInfo(p.format);

  ModelConfig& t = p.target;
  t = src;
  const int64_t fe = f / G;
  t.arch = p.format;
  t.moe.num_experts = E * G;
  t.moe.top_k = k * G;
  t.moe.expert_intermediate = fe;
  t.moe.shared_intermediate = opt.shared_expert ? f : 0;
  t.moe.every = opt.every;
  t.moe.dense_layers.clear();
  t.moe.router = opt.router;
  t.moe.capacity_factor = opt.capacity_factor;
  t.moe.drop_policy = opt.drop_policy;
  // Mixtral's intermediate_size is the expert size; every layer is MoE so no dense FFN remains.
  if (ai.expert_size_is_intermediate) t.intermediate_size = fe;
  // Qwen2-MoE attention has q/k/v biases (hard-coded in older transformers): zeros keep the
  // function.
  if (ai.qkv_bias == QkvBias::kAlways ||
      (ai.qkv_bias == QkvBias::kConfigKey && ai.qkv_bias_default))
    t.qkv_bias = true;
  ESCALE_RETURN_IF_ERROR(t.Validate().WithContext("target config"));

  // With mixtral routing the k selected groups' weights sum to 1 and each group's G slices share
  // one router row, so each slice gets weight w/G: down_proj times G restores the dense output. A
  // shared expert gated by sigmoid(0) = 1/2 carries half of the dense FFN, the experts the other
  // half.
  p.expert_down_scale = static_cast<double>(G) * (opt.shared_expert ? 0.5 : 1.0);

  const auto src_shapes = ShapesOf(src);
  for (const TensorSpec& spec : CanonicalTensors(t)) {
    OutRecipe r;
    r.target = spec;
    const std::string l = spec.layer >= 0 ? "layers." + D(spec.layer) + "." : "";
    switch (spec.role) {
      case TensorRole::kRouter:
        r.kind = OutKind::kRouter;
        break;
      case TensorRole::kExpertGate:
      case TensorRole::kExpertUp:
        r.kind = OutKind::kExpertRows;
        r.source = l + (spec.role == TensorRole::kExpertGate ? "ffn.gate" : "ffn.up");
        r.slice = spec.expert % G;
        break;
      case TensorRole::kExpertDown:
        r.kind = OutKind::kExpertCols;
        r.source = l + "ffn.down";
        r.slice = spec.expert % G;
        r.scale = p.expert_down_scale;
        break;
      case TensorRole::kSharedGate:
        r.source = l + "ffn.gate";
        break;
      case TensorRole::kSharedUp:
        r.source = l + "ffn.up";
        break;
      case TensorRole::kSharedDown:
        r.source = l + "ffn.down";
        break;
      case TensorRole::kSharedRouter:
        r.kind = OutKind::kZero;
        break;
      case TensorRole::kBq:
      case TensorRole::kBk:
      case TensorRole::kBv:
        if (src.qkv_bias)
          r.source = spec.name;
        else
          r.kind = OutKind::kZero;
        break;
      case TensorRole::kLmHead:
        r.source = src.tie_word_embeddings ? "embed" : "lm_head";
        break;
      default:
        r.source = spec.name;
        break;
    }
    if (!r.source.empty()) {
      auto it = src_shapes.find(r.source);
      if (it == src_shapes.end())
        return InternalError("scale-out: no dense tensor " + r.source + " for " + spec.name);
      r.source_shape = it->second;
    }
    p.recipes.push_back(std::move(r));
  }

  if (opt.router == RouterType::kSt)
    p.inexact.push_back(
        "st routing (softmax over all " + D(E * G) +
        " experts, top-k, no renormalisation) multiplies each MoE FFN output by the selected "
        "probability mass (about k/E = " +
        Num(static_cast<double>(k) / static_cast<double>(E)) + " at init)");
  if (opt.expert_noise > 0)
    p.inexact.push_back("--expert-noise " + Num(opt.expert_noise) +
                        " makes the experts differ from the dense FFN");
  if (opt.reinit_ratio > 0)
    p.inexact.push_back("--reinit-ratio " + Num(opt.reinit_ratio) +
                        " re-initialises part of every expert (Drop-Upcycling)");
  if (opt.capacity_factor > 0)
    p.conditions.push_back(
        "capacity factor " + Num(opt.capacity_factor) +
        ": exact only while no expert receives more "
        "than ceil(CF*T*k/E) assignments; a dropped assignment contributes nothing");
  return p;
}

template <class T>
Status ProduceScaleOutInto(const ScaleOutPlan& p, const OutRecipe& r, const SourceFn& source,
                           T* out, Scratch<T>& scratch) {
  const int64_t n = ShapeNumel(r.target.shape);
  const int64_t H = p.target.hidden_size, fe = p.target.moe.expert_intermediate,
                G = p.options.granularity;
  switch (r.kind) {
    case OutKind::kZero:
      std::fill(out, out + n, T(0));
      return Status::Ok();
    case OutKind::kRouter: {
      const int64_t groups = p.target.moe.num_experts / G;
      const std::vector<double> base =
          RouterBaseWeights(p.options.seed, r.target.layer, groups, H, p.options.router_std);
      for (int64_t e = 0; e < p.target.moe.num_experts; ++e)
        for (int64_t j = 0; j < H; ++j)
          out[e * H + j] = static_cast<T>(base[static_cast<size_t>((e / G) * H + j)]);
      return Status::Ok();
    }
    case OutKind::kCopy: {
      ESCALE_ASSIGN_OR_RETURN(SourceView<T> v,
                              ViewSource<T>(source, r.source, r.source_shape, scratch.a));
      std::copy(v.data, v.data + n, out);
      return Status::Ok();
    }
    case OutKind::kRouterCopies: {
      ESCALE_RETURN_IF_ERROR(LoadSourceInto<T>(source, r.source, r.source_shape, scratch.a));
      const int64_t E = p.target.moe.num_experts, m = p.copies;
      const std::vector<double> noise =
          p.options.router_noise > 0
              ? RouterNoise(p.options.seed, r.target.layer, E, H, p.options.router_noise)
              : std::vector<double>();
      for (int64_t e = 0; e < E; ++e)
        for (int64_t j = 0; j < H; ++j) {
          const T v = scratch.a[static_cast<size_t>((e / m) * H + j)];
          // Copy 0 keeps the source row, so the source's experts stay where they were.
          out[e * H + j] =
              noise.empty() || e % m == 0
                  ? v
                  : static_cast<T>(static_cast<double>(v) + noise[static_cast<size_t>(e * H + j)]);
        }
      return Status::Ok();
    }
    case OutKind::kExpertRows:
    case OutKind::kExpertCols:
    case OutKind::kExpertCopy:
      break;
  }
  ESCALE_ASSIGN_OR_RETURN(SourceView<T> v,
                          ViewSource<T>(source, r.source, r.source_shape, scratch.a));
  const T* w = v.data;
  // gate/up are [fe, H] (a neuron is a row), down is [H, fe] (a neuron is a column).
  const bool rows = r.target.role != TensorRole::kExpertDown;
  const int64_t f = p.source.intermediate_size;
  const T scale = static_cast<T>(r.scale);
  if (r.kind == OutKind::kExpertCopy) {
    std::copy(w, w + n, out);
  } else if (r.kind == OutKind::kExpertRows) {
    // gate/up [fe, H] <- rows s*fe .. s*fe+fe-1 of [f, H]: one contiguous block.
    std::copy(w + r.slice * fe * H, w + (r.slice + 1) * fe * H, out);
  } else {
    // down [H, fe] <- columns s*fe .. s*fe+fe-1 of [H, f], times scale.
    const int threads = ProducerThreads();
#pragma omp parallel for schedule(static) \
    num_threads(threads) if (threads > 1 && n >= (int64_t{1} << 18))
    for (int64_t j = 0; j < H; ++j) {
      const T* from = w + j * f + r.slice * fe;
      T* to = out + j * fe;
      for (int64_t a = 0; a < fe; ++a) to[a] = from[a] * scale;
    }
  }
  const int64_t layer = r.target.layer, expert = r.target.expert;
  const char* which = r.target.role == TensorRole::kExpertGate ? "gate"
                      : r.target.role == TensorRole::kExpertUp ? "up"
                                                               : "down";
  if (p.options.reinit_ratio > 0) {
    // Drop-Upcycling: the chosen neurons' rows (gate, up) or columns (down) are drawn from a normal
    // with this expert matrix's own mean and standard deviation.
    double mean = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i) mean += static_cast<double>(out[i]);
    mean /= static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i)
      sq += (static_cast<double>(out[i]) - mean) * (static_cast<double>(out[i]) - mean);
    const double sd = std::sqrt(sq / static_cast<double>(n));
    const std::vector<uint8_t> mask =
        ReinitMask(p.options.seed, layer, expert, fe, p.options.reinit_ratio);
    Rng rng = Rng::Stream(p.options.seed, StreamName("reinit-values", layer, expert, which));
    for (int64_t idx = 0; idx < n; ++idx) {
      const int64_t neuron = rows ? idx / H : idx % fe;
      if (mask[static_cast<size_t>(neuron)])
        out[idx] = static_cast<T>(mean + sd * rng.NextNormal());
    }
  }
  if (p.options.expert_noise > 0) {
    Rng rng = Rng::Stream(p.options.seed, StreamName("noise", layer, expert, which));
    for (int64_t i = 0; i < n; ++i)
      out[i] += static_cast<T>(p.options.expert_noise * rng.NextNormal());
  }
  return Status::Ok();
}
template Status ProduceScaleOutInto<float>(const ScaleOutPlan&, const OutRecipe&, const SourceFn&,
                                           float*, Scratch<float>&);
template Status ProduceScaleOutInto<double>(const ScaleOutPlan&, const OutRecipe&, const SourceFn&,
                                            double*, Scratch<double>&);

namespace {
bool ExpertsPerturbed(const ScaleOutPlan& p) {
  return p.options.reinit_ratio > 0 || p.options.expert_noise > 0;
}
}  // namespace

// Both must agree with ProduceScaleOutInto.
std::optional<int64_t> ScaleOutCopyOffset(const ScaleOutPlan& p, const OutRecipe& r) {
  if (r.scale != 1.0) return std::nullopt;
  const int64_t fe = p.target.moe.expert_intermediate, H = p.target.hidden_size;
  switch (r.kind) {
    case OutKind::kCopy:
      return 0;
    case OutKind::kExpertRows:
      if (ExpertsPerturbed(p)) return std::nullopt;
      return r.slice * fe * H;
    case OutKind::kExpertCols:
      if (ExpertsPerturbed(p) || fe != p.source.intermediate_size) return std::nullopt;
      return 0;
    case OutKind::kExpertCopy:
      // MoE growth: a copy of a whole source expert tensor.
      if (ExpertsPerturbed(p)) return std::nullopt;
      return 0;
    case OutKind::kZero:
    case OutKind::kRouter:
    case OutKind::kRouterCopies:
      return std::nullopt;
  }
  return std::nullopt;
}

std::string ScaleOutShareKey(const ScaleOutPlan& p, const OutRecipe& r) {
  if ((r.kind != OutKind::kExpertRows && r.kind != OutKind::kExpertCols &&
       r.kind != OutKind::kExpertCopy) ||
      ExpertsPerturbed(p))
    return "";
  std::ostringstream k;
  k.precision(17);
  k << static_cast<int>(r.kind) << ' ' << r.source << ' ' << r.slice << ' ' << r.scale;
  return k.str();
}

template <class T>
Result<std::vector<T>> ProduceScaleOut(const ScaleOutPlan& p, const OutRecipe& r,
                                       const SourceFn& source) {
  std::vector<T> out(static_cast<size_t>(ShapeNumel(r.target.shape)));
  Scratch<T> scratch;
  ESCALE_RETURN_IF_ERROR(ProduceScaleOutInto<T>(p, r, source, out.data(), scratch));
  return out;
}
template Result<std::vector<float>> ProduceScaleOut<float>(const ScaleOutPlan&, const OutRecipe&,
                                                           const SourceFn&);
template Result<std::vector<double>> ProduceScaleOut<double>(const ScaleOutPlan&, const OutRecipe&,
                                                             const SourceFn&);

Result<std::map<std::string, Tensor>> ScaleOutInMemory(const ScaleOutPlan& plan,
                                                       const SourceFn& source, DType dtype) {
  return ProduceAllInMemory(plan.recipes, dtype, [&](const OutRecipe& r) {
    return ProduceScaleOut<double>(plan, r, source);
  });
}

std::map<std::string, std::string> ScaleOutMetadata(const ScaleOutPlan& p) {
  const ScaleOutOptions& o = p.options;
  std::map<std::string, std::string> m;
  m["escale.operation"] = "scale-out";
  m["escale.method"] = "sparse-upcycling";
  m["escale.experts"] = D(o.experts);
  m["escale.top_k"] = D(o.top_k);
  m["escale.granularity"] = D(o.granularity);
  m["escale.router"] = std::string(RouterTypeName(o.router));
  m["escale.router_init"] = "normal(mean=0, std=" + Num(o.router_std) +
                            "), one row per dense copy, repeated " + D(o.granularity) +
                            "x (granularity groups)";
  m["escale.rng"] =
      "splitmix64 streams (seed, \"router/layer/<l>\"), Marsaglia polar normals (escale core/rng.h "
      "v1)";
  m["escale.seed"] = std::to_string(o.seed);
  m["escale.capacity_factor"] = Num(o.capacity_factor);
  m["escale.drop_policy"] = o.drop_policy == DropPolicy::kProbability ? "probability" : "position";
  m["escale.moe_every"] = D(o.every);
  m["escale.shared_expert"] =
      o.shared_expert ? "dense FFN copy, gate weights 0 (sigmoid = 1/2), experts' down_proj halved"
                      : "none";
  m["escale.expert_noise"] = Num(o.expert_noise);
  m["escale.reinit_ratio"] = Num(o.reinit_ratio);
  m["escale.expert_down_scale"] = Num(p.expert_down_scale);
  m["escale.source_shape"] = ShapeLine(p.source);
  std::string status = ExactnessLine(p.inexact);
  for (const std::string& c : p.conditions) status += " (" + c + ")";
  m["escale.function_preserving"] = status;
  if (p.grows_moe()) AddExpertGrowthMetadata(p, m);
  return m;
}

std::string DescribeScaleOut(const ScaleOutPlan& p, DType out_dtype) {
  std::ostringstream o;
  const ScaleOutOptions& op = p.options;
  if (p.grows_moe())
    o << "scale-out plan (expert growth of " << ArchitectureClassName(p.target.arch)
      << ": each expert copied " << p.copies << " times, router " << RouterTypeName(op.router)
      << " kept, seed " << op.seed << ")\n";
  else
    o << "scale-out plan (sparse upcycling to " << ArchitectureClassName(p.target.arch)
      << ", router " << RouterTypeName(op.router) << " init N(0, " << op.router_std << "^2), seed "
      << op.seed << ")\n";
  o << "  source: " << ShapeLine(p.source) << "\n";
  o << "  target: " << ShapeLine(p.target) << "\n";
  o << "layers: ";
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < p.target.num_layers; ++l) moe_layers += p.target.IsMoeLayer(l) ? 1 : 0;
  if (p.grows_moe()) {
    o << moe_layers << " of " << p.target.num_layers
      << " are MoE (each layer l <- source layer l)\n";
    o << DescribeExpertGrowth(p);
  } else {
    o << moe_layers << " of " << p.target.num_layers
      << " become MoE (each MoE layer l <- dense layer l)\n";
    o << "experts: " << p.target.moe.num_experts << " = " << op.experts << " copies x granularity "
      << op.granularity << "; expert e = slice (e mod " << op.granularity
      << ") of the dense FFN, down_proj x " << p.expert_down_scale << "\n";
  }
  o << "tensors of the first MoE layer (target shape <- source):\n";
  int64_t first = -1;
  for (int64_t l = 0; l < p.target.num_layers && first < 0; ++l)
    if (p.target.IsMoeLayer(l)) first = l;
  for (const OutRecipe& r : p.recipes) {
    if (r.target.layer != first) continue;
    // Experts 0 and 1 stand for all (and expert m, the first copy of source expert 1, when
    // growing).
    if (r.target.expert > 1 && !(p.grows_moe() && r.target.expert == p.copies)) continue;
    o << "  " << r.target.name << " " << ShapeToString(r.target.shape) << " <- ";
    switch (r.kind) {
      case OutKind::kCopy:
        o << r.source;
        break;
      case OutKind::kZero:
        o << "zeros";
        break;
      case OutKind::kRouter:
        o << "N(0, " << op.router_std << "^2)";
        break;
      case OutKind::kExpertRows:
        o << r.source << " rows of slice " << r.slice;
        break;
      case OutKind::kExpertCols:
        o << r.source << " columns of slice " << r.slice << " x " << r.scale;
        break;
      case OutKind::kRouterCopies:
        o << r.source << " rows repeated " << p.copies << "x";
        break;
      case OutKind::kExpertCopy:
        o << r.source;
        break;
    }
    o << "\n";
  }
  if (p.grows_moe())
    o << "  ... (the other experts likewise: expert e <- source expert floor(e/" << p.copies
      << "))\n";
  else if (p.target.moe.num_experts > 2)
    o << "  ... (experts 2.." << p.target.moe.num_experts - 1 << " likewise)\n";
  const ParameterCounts before = CountParameters(p.source), after = CountParameters(p.target);
  o << "parameters: " << HumanCount(before.total) << " -> " << HumanCount(after.total)
    << "; active per token " << HumanCount(before.active) << " -> " << HumanCount(after.active)
    << "\n";
  uint64_t bytes = 0, out_max = 0, scratch_max = 0, mapped_max = 0;
  const uint64_t esize = static_cast<uint64_t>(DTypeSize(out_dtype));
  const uint64_t work = out_dtype == DType::kF64 ? 8 : 4;  // the precision the producer computes in
  for (const OutRecipe& r : p.recipes) {
    const auto n = static_cast<uint64_t>(ShapeNumel(r.target.shape));
    bytes += n * esize;
    out_max = std::max(out_max, n * esize);
    const uint64_t sn = r.source.empty() ? 0 : static_cast<uint64_t>(ShapeNumel(r.source_shape));
    const uint64_t src = p.source.dtype == (work == 8 ? DType::kF64 : DType::kF32) ? 0 : sn * work;
    scratch_max = std::max(scratch_max, src + (esize == work ? 0 : n * work));
    mapped_max = std::max(mapped_max, sn * static_cast<uint64_t>(DTypeSize(p.source.dtype)));
  }
  o << "bytes to write: " << HumanBytes(bytes) << " (" << DTypeName(out_dtype) << ")\n";
  o << "peak memory: about " << HumanBytes(2 * out_max + scratch_max)
    << " (two target tensors in flight and the "
    << "producer's scratch; expert copies are written from one buffer; source weights are "
       "memory-mapped and "
       "released as they are consumed: add about "
    << HumanBytes(mapped_max) << " of mapped source pages to the resident size)\n";
  o << "function preservation: " << ExactnessLine(p.inexact);
  for (const std::string& c : p.conditions) o << " (" << c << ")";
  o << "\n";
  return o.str();
}

}  // namespace escale::surgery
