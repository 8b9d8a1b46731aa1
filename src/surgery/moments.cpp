#include "surgery/moments.h"

#include <set>

namespace escale::surgery {
namespace {

TensorMoments Fresh(const Shape& shape) {
  TensorMoments t;
  t.m.assign(static_cast<size_t>(ShapeNumel(shape)), 0.0f);
  t.v = t.m;
  return t;
}

Result<const TensorMoments*> SourceMoments(const MomentMap& source, const std::string& name,
                                           const Shape& shape) {
  auto it = source.find(name);
  if (it == source.end())
    return InvalidArgument("the source's optimizer state has no moments for " + name +
                           " (is it the checkpoint of this model?)");
  if (static_cast<int64_t>(it->second.m.size()) != ShapeNumel(shape))
    return InvalidArgument("the source's moments of " + name + " have " +
                           std::to_string(it->second.m.size()) + " elements, the tensor " +
                           std::to_string(ShapeNumel(shape)));
  return &it->second;
}

// Target layers that repeat a source layer already placed: their gradient has no relation to it.
std::set<int64_t> NewLayers(const DepthMap& d) {
  std::set<int64_t> seen, fresh;
  for (size_t l = 0; l < d.src.size(); ++l)
    if (!seen.insert(d.src[l]).second || d.zeroed[l]) fresh.insert(static_cast<int64_t>(l));
  return fresh;
}

}  // namespace

Result<MomentMap> ScaleUpMoments(const ScaleUpPlan& plan, const MomentMap& source) {
  const std::set<int64_t> new_layers = NewLayers(plan.depth_map);
  MomentMap out;
  for (const UpRecipe& r : plan.recipes) {
    if (r.zero || (r.target.layer >= 0 && new_layers.count(r.target.layer)) || r.rows->pooled()) {
      out.emplace(r.target.name, Fresh(r.target.shape));
      continue;
    }
    ESCALE_ASSIGN_OR_RETURN(const TensorMoments* s,
                            SourceMoments(source, r.source, r.source_shape));
    const TensorMoments* nx = s;
    if (!r.next.empty()) {
      ESCALE_ASSIGN_OR_RETURN(nx, SourceMoments(source, r.next, r.source_shape));
    }
    const DimMap& rows = *r.rows;
    const int64_t src_cols = r.cols ? r.cols->n_src : 1, dst_cols = r.cols ? r.cols->n_dst : 1;
    TensorMoments t = Fresh(r.target.shape);
    t.steps = s->steps;
    for (int64_t i = 0; i < rows.n_dst; ++i) {
      const auto iu = static_cast<size_t>(i);
      const int64_t si = rows.src[iu];
      // Rows are copied, so their consumers see each copy at 1 / C of the source unit.
      const double row_factor = 1.0 / static_cast<double>(rows.count[static_cast<size_t>(si)]);
      for (int64_t j = 0; j < dst_cols; ++j) {
        const auto ju = static_cast<size_t>(j);
        const int64_t sj = r.cols ? r.cols->src[ju] : 0;
        const bool fresh = rows.fresh[iu] || (r.cols && r.cols->fresh[ju]);
        // A divided column already carries the 1 / C; a copied one (the embedding's) passes it on.
        const double f =
            row_factor * (r.cols && !r.divide_cols
                              ? 1.0 / static_cast<double>(r.cols->count[static_cast<size_t>(sj)])
                              : 1.0);
        const size_t from = static_cast<size_t>(si * src_cols + sj),
                     to = static_cast<size_t>(i * dst_cols + j);
        const TensorMoments& m = fresh ? *nx : *s;
        t.m[to] = static_cast<float>(f * m.m[from]);
        t.v[to] = static_cast<float>(f * f * m.v[from]);
      }
    }
    out.emplace(r.target.name, std::move(t));
  }
  return out;
}

Result<MomentMap> ScaleOutMoments(const ScaleOutPlan& plan, const MomentMap& source) {
  // With mixtral routing a token's selected slices weigh 1 / K each and are K of the E experts, so
  // an expert carries 1 / E of the dense FFN's down projection in expectation, and 1 / E of the
  // gate and up projections times the down_scale that restores the dense output.
  const double E = static_cast<double>(plan.target.moe.num_experts);
  MomentMap out;
  for (const OutRecipe& r : plan.recipes) {
    double f = 1.0;
    switch (r.kind) {
      case OutKind::kZero:
      case OutKind::kRouter:
      case OutKind::kRouterCopies:
        out.emplace(r.target.name, Fresh(r.target.shape));
        continue;
      case OutKind::kCopy: {  // a shared expert is gated by sigmoid(0) = 1/2
        const TensorRole role = r.target.role;
        if (role == TensorRole::kSharedGate || role == TensorRole::kSharedUp ||
            role == TensorRole::kSharedDown)
          f = 0.5;
        break;
      }
      case OutKind::kExpertRows:
        f = plan.expert_down_scale / E;
        break;
      case OutKind::kExpertCols:
        f = 1.0 / E;
        break;
      case OutKind::kExpertCopy:  // m copies share what the source expert received
        f = 1.0 / static_cast<double>(plan.copies);
        break;
    }
    ESCALE_ASSIGN_OR_RETURN(const TensorMoments* s,
                            SourceMoments(source, r.source, r.source_shape));
    TensorMoments t = Fresh(r.target.shape);
    t.steps = s->steps;
    const int64_t H = plan.target.hidden_size, fe = plan.target.moe.expert_intermediate,
                  fsrc = r.source_shape.size() == 2 ? r.source_shape[1] : 0;
    for (size_t k = 0; k < t.m.size(); ++k) {
      size_t from = k;
      if (r.kind == OutKind::kExpertRows) {
        from = static_cast<size_t>(r.slice * fe * H) + k;  // rows s*fe.. of [f, H]
      } else if (r.kind == OutKind::kExpertCols) {
        const int64_t row = static_cast<int64_t>(k) / fe, col = static_cast<int64_t>(k) % fe;
        from = static_cast<size_t>(row * fsrc + r.slice * fe + col);  // columns s*fe.. of [H, f]
      }
      t.m[k] = static_cast<float>(f * s->m[from]);
      t.v[k] = static_cast<float>(f * f * s->v[from]);
    }
    out.emplace(r.target.name, std::move(t));
  }
  return out;
}

}  // namespace escale::surgery
