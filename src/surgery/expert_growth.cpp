// Growing an existing MoE (the scale-out half of small dense -> scale-up -> scale-out, applied
// again to a model that is already sparse): every routed expert and its router row are copied m
// times. With k = m * k0 the copies of each of the source's top-k0 experts are selected together
// and share its routing weight (w/m each, mixtral or st), so the function is kept exactly.
#include <cmath>
#include <sstream>

#include "core/rng.h"
#include "surgery/plan_report.h"
#include "surgery/scale_out.h"

namespace escale::surgery {

namespace {

std::string D(int64_t v) {
  return std::to_string(v);
}

std::string Num(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

const char* ExpertWhich(TensorRole role) {
  return role == TensorRole::kExpertGate ? "gate" : role == TensorRole::kExpertUp ? "up" : "down";
}

// The source's routing is part of the function being grown; a flag asking for another one is
// refused instead of silently changing (or silently ignoring) it.
Status CheckRoutingKept(const ModelConfig& src, const ScaleOutOptions& opt) {
  const MoeConfig& s = src.moe;
  const std::string keep = "growing an MoE keeps its routing; ";
  if (opt.router != RouterType::kMixtral && opt.router != s.router)
    return InvalidArgument(keep + "--router " + std::string(RouterTypeName(opt.router)) +
                           " differs from the source's " + std::string(RouterTypeName(s.router)) +
                           " routing (drop --router)");
  if (opt.capacity_factor != 0 && opt.capacity_factor != s.capacity_factor)
    return InvalidArgument(keep + "--capacity-factor " + Num(opt.capacity_factor) +
                           " differs from the source's " + Num(s.capacity_factor) +
                           " (drop --capacity-factor)");
  if (opt.drop_policy != DropPolicy::kProbability && opt.drop_policy != s.drop_policy)
    return InvalidArgument(keep + "--drop-by differs from the source's (drop --drop-by)");
  if (opt.every != 1 && opt.every != s.every)
    return InvalidArgument("growing an MoE keeps its MoE layers (every " + D(s.every) +
                           "); drop --moe-every");
  if (opt.format && *opt.format != src.arch)
    return InvalidArgument("growing an MoE keeps its format " +
                           std::string(ArchitectureClassName(src.arch)) + "; drop --format");
  if (opt.granularity != 1)
    return InvalidArgument(
        "--granularity splits a dense FFN; an MoE source's experts are copied whole "
        "(drop --granularity)");
  if (opt.shared_expert && s.shared_intermediate == 0)
    return InvalidArgument(
        "--shared-experts cannot add a shared expert to an MoE source (its shared expert, if any, "
        "is carried over unchanged); drop --shared-experts");
  if (opt.router_std != ScaleOutOptions{}.router_std)
    return InvalidArgument(
        "--router-init-std does not apply to an MoE source (its router rows are copied); "
        "use --router-noise to perturb the copies");
  return Status::Ok();
}

}  // namespace

std::vector<double> RouterNoise(uint64_t seed, int64_t layer, int64_t rows, int64_t cols,
                                double std_dev) {
  return GaussianDraws(seed, "router-noise/layer/" + D(layer), rows * cols, std_dev);
}

Result<ScaleOutPlan> PlanExpertGrowth(const ModelConfig& src, const ScaleOutOptions& opt) {
  const int64_t E0 = src.moe.num_experts, k0 = src.moe.top_k, E = opt.experts;
  if (E < 2) return InvalidArgument("--experts must be at least 2 (got " + D(E) + ")");
  if (E <= E0)
    return InvalidArgument("the source is already an MoE with " + D(E0) +
                           " experts; growing it needs --experts m x " + D(E0) +
                           " with m >= 2 (e.g. --experts " + D(2 * E0) + ")");
  if (E > 65536) return InvalidArgument("--experts " + D(E) + " is more than 65536");
  if (E % E0 != 0)
    return InvalidArgument(
        "--experts " + D(E) + " is not a multiple of the source's " + D(E0) +
        " experts: unequal copy counts would weight some experts more than others; use --experts " +
        D((E / E0 + 1) * E0) + " or another multiple");
  const int64_t m = E / E0;
  const int64_t k = opt.top_k == 0 ? m * k0 : opt.top_k;
  if (k < 1 || k > E)
    return InvalidArgument("--top-k must be between 1 and --experts " + D(E) + " (got " + D(k) +
                           ")");
  if (k == 1 && src.moe.router == RouterType::kMixtral)
    return InvalidArgument(
        "--top-k 1 with mixtral routing gives the router no gradient (softmax over one selected "
        "expert is always 1); use --top-k " +
        D(m * k0) + " (m x k0, exact)");
  if (!(opt.expert_noise >= 0) || !std::isfinite(opt.expert_noise))
    return InvalidArgument("--expert-noise must be >= 0");
  if (!(opt.router_noise >= 0) || !std::isfinite(opt.router_noise))
    return InvalidArgument("--router-noise must be >= 0");
  if (!(opt.reinit_ratio >= 0 && opt.reinit_ratio <= 1))
    return InvalidArgument("--reinit-ratio must be between 0 and 1");
  ESCALE_RETURN_IF_ERROR(CheckRoutingKept(src, opt));

  ScaleOutPlan p;
  p.source = src;
  p.options = opt;
  p.options.top_k = k;
  // Options that only describe a dense upcycling take the source's values, so the report and the
  // metadata say what the target really does.
  p.options.router = src.moe.router;
  p.options.capacity_factor = src.moe.capacity_factor;
  p.options.drop_policy = src.moe.drop_policy;
  p.options.every = src.moe.every;
  p.options.shared_expert = src.moe.shared_intermediate > 0;
  p.format = src.arch;
  p.copies = m;
  p.target = src;
  p.target.moe.num_experts = E;
  p.target.moe.top_k = k;
  ESCALE_RETURN_IF_ERROR(p.target.Validate().WithContext("target config"));

  const auto src_shapes = ShapesOf(src);
  for (const TensorSpec& spec : CanonicalTensors(p.target)) {
    OutRecipe r;
    r.target = spec;
    r.source = spec.name;
    if (spec.role == TensorRole::kRouter) {
      r.kind = OutKind::kRouterCopies;
    } else if (spec.role == TensorRole::kExpertGate || spec.role == TensorRole::kExpertUp ||
               spec.role == TensorRole::kExpertDown) {
      r.kind = OutKind::kExpertCopy;
      r.source = ExpertTensorName(spec.layer, spec.expert / m, ExpertWhich(spec.role));
    }
    auto it = src_shapes.find(r.source);
    if (it == src_shapes.end())
      return InternalError("expert growth: no source tensor " + r.source + " for " + spec.name);
    r.source_shape = it->second;
    p.recipes.push_back(std::move(r));
  }

  if (k != m * k0)
    p.inexact.push_back("--top-k " + D(k) + " is not m x k0 = " + D(m) + " x " + D(k0) + " = " +
                        D(m * k0) + ": the top " + D(k) +
                        " of the duplicated router logits are copies of a different set of "
                        "source experts than its top " +
                        D(k0) + " (exact only with --top-k " + D(m * k0) + ")");
  if (opt.router_noise > 0)
    p.inexact.push_back(
        "--router-noise " + Num(opt.router_noise) +
        " makes the copies' router logits differ, so their weights no longer sum to the source "
        "expert's");
  if (opt.expert_noise > 0)
    p.inexact.push_back("--expert-noise " + Num(opt.expert_noise) +
                        " makes the copies differ from the source experts");
  if (opt.reinit_ratio > 0)
    p.inexact.push_back("--reinit-ratio " + Num(opt.reinit_ratio) +
                        " re-initialises part of every expert (Drop-Upcycling)");
  if (src.moe.capacity_factor > 0 && k != m * k0)
    p.conditions.push_back("capacity per expert becomes ceil(CF*T*" + D(k) + "/" + D(E) +
                           ") instead of ceil(CF*T*" + D(k0) + "/" + D(E0) + ")");
  return p;
}

void AddExpertGrowthMetadata(const ScaleOutPlan& p, std::map<std::string, std::string>& m) {
  m["escale.method"] = "expert-duplication";
  m["escale.source_experts"] = D(p.source.moe.num_experts);
  m["escale.source_top_k"] = D(p.source.moe.top_k);
  m["escale.expert_copies"] = D(p.copies);
  m["escale.expert_map"] = "target expert e <- source expert floor(e/" + D(p.copies) +
                           ") (copies of expert i at i*" + D(p.copies) + ".." + "i*" + D(p.copies) +
                           "+" + D(p.copies - 1) + ")";
  m["escale.router_init"] = "copied: router row e <- source row floor(e/" + D(p.copies) + ")";
  m["escale.router_noise"] = Num(p.options.router_noise);
  m["escale.rng"] =
      "splitmix64 streams (seed, \"router-noise/layer/<l>\", "
      "\"noise/layer/<l>/expert/<e>/<which>\"), "
      "Marsaglia polar normals (escale core/rng.h v1)";
  m["escale.shared_expert"] =
      p.source.moe.shared_intermediate > 0 ? "carried over unchanged" : "none";
  m.erase("escale.expert_down_scale");
  m.erase("escale.granularity");
}

std::string DescribeExpertGrowth(const ScaleOutPlan& p) {
  std::ostringstream o;
  const int64_t m = p.copies, E0 = p.source.moe.num_experts, k0 = p.source.moe.top_k;
  const int64_t E = p.target.moe.num_experts, k = p.target.moe.top_k;
  const ScaleOutOptions& op = p.options;
  o << "experts: " << E << " = " << E0 << " source experts x " << m
    << " copies; target expert e <- source expert "
    << "floor(e/" << m << ") (copies of expert i at i*" << m << "..i*" << m << "+" << m - 1
    << "); router row e <- source row floor(e/" << m << ")";
  if (op.router_noise > 0) o << " + N(0, " << op.router_noise << "^2) on copies 1.." << m - 1;
  o << "\n";
  o << "top-k: " << k0 << " -> " << k;
  if (k == m * k0)
    o << " (= " << m << " x " << k0 << ": the " << m << " copies of each of the source's top-" << k0
      << " experts are selected together, each with weight w/" << m << " under "
      << RouterTypeName(p.target.moe.router) << " routing)\n";
  else
    o << " (not " << m << " x " << k0 << " = " << m * k0 << ": a different mixture, see below)\n";
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < p.target.num_layers; ++l) moe_layers += p.target.IsMoeLayer(l) ? 1 : 0;
  o << "kept from the source: embeddings, attention, norms"
    << (moe_layers < p.target.num_layers ? ", the dense FFN layers" : "")
    << (p.source.moe.shared_intermediate > 0 ? ", the shared expert and its gate" : "") << ", "
    << RouterTypeName(p.target.moe.router) << " routing, ";
  if (p.target.moe.capacity_factor > 0)
    o << "capacity factor " << p.target.moe.capacity_factor
      << " (capacity ceil(CF*T*k/E) per expert "
      << (k == m * k0 ? "is unchanged and every copy receives exactly its source expert's tokens, "
                        "so the same "
                        "assignments are dropped"
                      : "changes")
      << ")\n";
  else
    o << "dropless\n";
  if (k == m * k0 && op.expert_noise == 0 && op.router_noise == 0 && op.reinit_ratio == 0)
    o << "symmetry: the copies of an expert stay identical under training (same tokens, same "
         "gradients); "
      << "--expert-noise or --router-noise breaks the tie at the cost of exactness\n";
  return o.str();
}

}  // namespace escale::surgery
