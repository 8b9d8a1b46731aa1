#include "surgery/scale_up.h"

#include <algorithm>
#include <sstream>
#include <string_view>
#include <utility>

#include "core/check.h"
#include "core/rng.h"
#include "surgery/plan_report.h"

namespace escale::surgery {

std::string_view ScaleUpMethodName(ScaleUpMethod m) {
  switch (m) {
    case ScaleUpMethod::kFpi:
      return "fpi";
    case ScaleUpMethod::kAki:
      return "aki";
    case ScaleUpMethod::kAkiPro:
      return "aki-pro";
  }
  return "?";
}

const UpRecipe* ScaleUpPlan::Find(const std::string& target_name) const {
  for (const UpRecipe& r : recipes)
    if (r.target.name == target_name) return &r;
  return nullptr;
}

namespace {

std::string Suffix(const std::string& layer_name) {
  // "layers.12.wq" -> "wq"
  const size_t a = layer_name.find('.');
  const size_t b = layer_name.find('.', a + 1);
  return layer_name.substr(b + 1);
}

std::string D(int64_t v) {
  return std::to_string(v);
}

}  // namespace

namespace {

struct GrowthSizes {
  int64_t d2, f2, h2, g2, l2;  // hidden, FFN, heads, KV heads, layers of the target
};

// The target's sizes: 0 keeps the source's; every dimension may only grow, and head_dim stays.
Result<GrowthSizes> ResolveSizes(const ModelConfig& src, const ScaleUpOptions& opt) {
  // 0 means "keep"; the limits keep every product of sizes far from int64 overflow and refuse a
  // typo before the maps are allocated.
  const std::pair<const char*, int64_t> sizes[] = {{"--hidden", opt.hidden},
                                                   {"--intermediate", opt.intermediate},
                                                   {"--heads", opt.heads},
                                                   {"--kv-heads", opt.kv_heads},
                                                   {"--layers", opt.layers}};
  for (const auto& [name, v] : sizes) {
    const int64_t limit =
        std::string_view(name) == "--hidden" || std::string_view(name) == "--intermediate"
            ? (int64_t{1} << 24)
            : (int64_t{1} << 16);
    if (v < 0 || v > limit)
      return InvalidArgument(std::string(name) + " " + D(v) +
                             " is out of range (0 keeps the source's; at most " + D(limit) + ")");
  }
  const int64_t d1 = src.hidden_size, f1 = src.intermediate_size, h1 = src.num_heads,
                g1 = src.num_kv_heads, l1 = src.num_layers, hd = src.head_dim;
  const int64_t d2 = opt.hidden ? opt.hidden : d1;
  if (d2 < d1)
    return InvalidArgument("--hidden " + D(d2) + " is smaller than the source's " + D(d1) +
                           "; width can only grow");
  // A standard config has q_dim == hidden, so head_dim is implied by hidden/heads in HF configs;
  // keeping head_dim fixed then fixes the head count.
  const bool standard = src.q_dim() == d1;
  int64_t h2 = opt.heads;
  if (!h2) {
    if (d2 == d1 || !standard)
      h2 = h1;
    else if (d2 % hd != 0)
      return InvalidArgument("--hidden " + D(d2) + " is not a multiple of head_dim " + D(hd) +
                             "; head_dim stays fixed, so choose a multiple of it");
    else
      h2 = d2 / hd;
  }
  if (h2 < h1)
    return InvalidArgument("--heads " + D(h2) + " is fewer than the source's " + D(h1) +
                           "; heads can only grow");
  if (standard && h2 * hd != d2)
    return InvalidArgument("--hidden " + D(d2) + " with --heads " + D(h2) +
                           " would change head_dim from " + D(hd) + " to " +
                           (d2 % h2 == 0 ? D(d2 / h2) : std::to_string(double(d2) / double(h2))) +
                           "; head_dim must stay fixed (use --heads " +
                           (d2 % hd == 0 ? D(d2 / hd) : std::string("hidden/head_dim")) + ")");
  const int64_t g2 = opt.kv_heads ? opt.kv_heads : g1;
  int64_t f2 = opt.intermediate;
  if (!f2) {
    // f1*d2 fits: both are model dimensions (< 2^31 in any real config).
    if ((f1 * d2) % d1 != 0)
      return InvalidArgument("the FFN size " + D(f1) + " * " + D(d2) + "/" + D(d1) +
                             " is not an integer; give --intermediate");
    f2 = f1 * d2 / d1;
  }
  if (f2 < f1)
    return InvalidArgument("--intermediate " + D(f2) + " is smaller than the source's " + D(f1) +
                           "; FFN can only grow");
  const int64_t l2 = opt.layers ? opt.layers : l1;

  return GrowthSizes{d2, f2, h2, g2, l2};
}

// Which source rows and columns a target tensor takes (the maps of its two dimensions), and
// whether AKI may take new units from the next layer for it (every matrix and bias of a layer,
// not the norms).
Status SetMaps(const TensorSpec& spec, const ModelConfig& src, const ScaleUpPlan& p,
               const DimMapPtr& head_units, UpRecipe& r, bool& layer_matrix) {
  auto matrix = [&](DimMapPtr rows, DimMapPtr cols, bool divide) {
    r.rows = std::move(rows);
    r.cols = std::move(cols);
    r.divide_cols = divide;
  };
  layer_matrix = true;
  switch (spec.role) {
    case TensorRole::kEmbed:
      r.source = "embed";
      matrix(p.vocab, p.hidden, false);
      break;
    case TensorRole::kAttnNorm:
    case TensorRole::kFfnNorm:
      matrix(p.hidden, nullptr, false);
      layer_matrix = false;
      break;
    case TensorRole::kQNorm:
    case TensorRole::kKNorm:
      matrix(head_units, nullptr, false);
      layer_matrix = false;
      break;
    case TensorRole::kWq:
      matrix(p.q_rows, p.hidden, true);
      break;
    case TensorRole::kWk:
    case TensorRole::kWv:
      matrix(p.kv_rows, p.hidden, true);
      break;
    case TensorRole::kBq:
      matrix(p.q_rows, nullptr, false);
      break;
    case TensorRole::kBk:
    case TensorRole::kBv:
      matrix(p.kv_rows, nullptr, false);
      break;
    case TensorRole::kWo:
      matrix(p.hidden, p.q_rows, true);
      r.zero = p.depth_map.zeroed[static_cast<size_t>(spec.layer)] != 0;
      break;
    case TensorRole::kFfnGate:
    case TensorRole::kFfnUp:
      matrix(p.ffn, p.hidden, true);
      break;
    case TensorRole::kFfnDown:
      matrix(p.hidden, p.ffn, true);
      r.zero = p.depth_map.zeroed[static_cast<size_t>(spec.layer)] != 0;
      break;
    case TensorRole::kFinalNorm:
      r.source = "norm";
      matrix(p.hidden, nullptr, false);
      break;
    case TensorRole::kLmHead:
      r.source = src.tie_word_embeddings ? "embed" : "lm_head";
      matrix(p.vocab, p.hidden, true);
      break;
    default:
      return InternalError("scale-up has no rule for tensor " + spec.name);
  }
  return Status::Ok();
}

// One recipe per target tensor: its source tensor, maps and (AKI) next-layer source.
Status BuildRecipes(const ModelConfig& src, const ScaleUpOptions& opt, const DimMapPtr& head_units,
                    ScaleUpPlan& p) {
  const ModelConfig& t = p.target;
  const int64_t l1 = src.num_layers;
  const bool aki = opt.method != ScaleUpMethod::kFpi;
  std::map<const DimMap*, bool> fresh;
  for (const DimMapPtr& m : {p.hidden, p.ffn, p.q_rows, p.kv_rows, p.vocab, head_units})
    fresh[m.get()] = m->any_fresh();
  const auto src_shapes = ShapesOf(src);
  for (const TensorSpec& spec : CanonicalTensors(t)) {
    UpRecipe r;
    r.target = spec;
    int64_t s = -1;
    if (spec.layer >= 0) {
      s = p.depth_map.src[static_cast<size_t>(spec.layer)];
      r.source = LayerTensorName(s, Suffix(spec.name));
    }
    bool layer_matrix = true;
    ESCALE_RETURN_IF_ERROR(SetMaps(spec, src, p, head_units, r, layer_matrix));
    // Only tensors with new units take anything from the next layer.
    const bool has_fresh = fresh.at(r.rows.get()) || (r.cols && fresh.at(r.cols.get()));
    if (aki && spec.layer >= 0 && layer_matrix && s + 1 < l1 && has_fresh)
      r.next = LayerTensorName(s + 1, Suffix(spec.name));
    auto it = src_shapes.find(r.source);
    if (it == src_shapes.end())
      return InternalError("scale-up: no source tensor " + r.source + " for " + spec.name);
    r.source_shape = it->second;
    p.recipes.push_back(std::move(r));
  }

  return Status::Ok();
}

// Why the result is not the source's function (docs/method.md §2): each rule that breaks it.
void ListInexact(const ModelConfig& src, ScaleUpPlan& p) {
  const ModelConfig& t = p.target;
  const bool aki = p.options.method != ScaleUpMethod::kFpi;
  const int64_t d1 = src.hidden_size, d2 = t.hidden_size, l1 = src.num_layers, l2 = t.num_layers;
  const int64_t g1 = src.num_kv_heads, g2 = t.num_kv_heads;
  if (!p.hidden->uniform_counts()) {
    const auto [lo, hi] = std::minmax_element(p.hidden->count.begin(), p.hidden->count.end());
    p.inexact.push_back("hidden " + D(d1) + "->" + D(d2) + " copies units unevenly (C from " +
                        D(*lo) + " to " + D(*hi) + "), so RMSNorm's mean square changes");
  }
  if (aki && l1 > 1 &&
      (p.hidden->any_fresh() || p.ffn->any_fresh() || p.q_heads->any_fresh() ||
       p.kv_heads->any_fresh()))
    p.inexact.push_back(
        "AKI takes new units from the next layer (bert2BERT), which breaks the function by design");
  if (l2 > l1 && p.depth != DepthMethod::kZero)
    p.inexact.push_back(std::string("depth ") + std::string(DepthMethodName(p.depth)) +
                        " repeats layers whose outputs are added to the residual again");
  if (p.kv_heads->pooled())
    p.inexact.push_back("KV heads " + D(g1) + "->" + D(g2) +
                        " are mean-pooled, which changes attention");
  if (t.tie_word_embeddings && d2 != d1)
    p.inexact.push_back(
        "--keep-tied: the tied head uses copied, undivided embedding columns, so logit v becomes "
        "sum_j C(j) e[v,j] x_j (every logit times " +
        (p.hidden->uniform_counts() ? D(p.hidden->count.front()) : std::string("C")) + ")");
}

}  // namespace

Result<ScaleUpPlan> PlanScaleUp(const ModelConfig& src, const ScaleUpOptions& opt) {
  ESCALE_RETURN_IF_ERROR(src.Validate().WithContext("source config"));
  if (src.is_moe())
    return Unsupported("scale-up takes a dense model; the source is " +
                       std::string(ArchitectureClassName(src.arch)) +
                       " (grow the dense model first, then run scale-out)");
  ESCALE_ASSIGN_OR_RETURN(const GrowthSizes g, ResolveSizes(src, opt));
  const int64_t d1 = src.hidden_size, f1 = src.intermediate_size, h1 = src.num_heads,
                g1 = src.num_kv_heads, l1 = src.num_layers, hd = src.head_dim;
  const int64_t d2 = g.d2, f2 = g.f2, h2 = g.h2, g2 = g.g2, l2 = g.l2;
  if (!(opt.symmetry_noise >= 0 && opt.symmetry_noise < 1))
    return InvalidArgument("--symmetry-noise must be in [0, 1) (a relative size such as 0.05)");
  if (opt.symmetry_noise > 0 && opt.method != ScaleUpMethod::kFpi)
    return InvalidArgument(
        "--symmetry-noise applies to --method fpi (AKI and AKI-Pro break the "
        "copies' symmetry by construction)");
  ScaleUpPlan p;
  p.source = src;
  p.options = opt;
  if (opt.method == ScaleUpMethod::kAkiPro) {
    if (opt.depth && *opt.depth == DepthMethod::kStack)
      return InvalidArgument(
          "AKI-Pro grows depth by interpolation; for AKI with stacking use --method aki --depth "
          "stack");
    p.depth = opt.depth.value_or(DepthMethod::kInterpolate);
  } else {
    p.depth = opt.depth.value_or(DepthMethod::kStack);
  }
  ESCALE_ASSIGN_OR_RETURN(p.depth_map, MakeDepthMap(l1, l2, p.depth));
  ESCALE_ASSIGN_OR_RETURN(HeadMaps heads, MakeHeadMaps(h1, g1, h2, g2, opt.map, opt.seed));

  ModelConfig& t = p.target;
  t = src;
  t.hidden_size = d2;
  t.intermediate_size = f2;
  t.num_heads = h2;
  t.num_kv_heads = g2;
  t.head_dim = hd;
  t.num_layers = l2;
  // The head needs divided columns and the embedding copied ones, so growth unties them.
  t.tie_word_embeddings = src.tie_word_embeddings && (d2 == d1 || opt.keep_tied);
  ESCALE_RETURN_IF_ERROR(t.Validate().WithContext("target config"));
  if (d2 == d1 && f2 == f1 && h2 == h1 && g2 == g1 && l2 == l1)
    return InvalidArgument(
        "nothing to grow: give at least one of --hidden --intermediate --heads --kv-heads --layers "
        "larger than the source");

  p.hidden = std::make_shared<DimMap>(MakeWidthMap(d1, d2, opt.map, opt.seed, "hidden"));
  p.ffn = std::make_shared<DimMap>(MakeWidthMap(f1, f2, opt.map, opt.seed, "ffn"));
  p.q_heads = std::make_shared<DimMap>(heads.q);
  p.kv_heads = std::make_shared<DimMap>(heads.kv);
  p.q_rows = std::make_shared<DimMap>(ExpandUnits(heads.q, hd));
  p.kv_rows = std::make_shared<DimMap>(ExpandUnits(heads.kv, hd));
  p.vocab = std::make_shared<DimMap>(IdentityMap(src.vocab_size));
  // head_dim stays fixed, so a q/k norm weight (one per layer, shared by its heads) is copied:
  // a copied head normalises exactly as its source does.
  const DimMapPtr head_units = std::make_shared<DimMap>(IdentityMap(hd));

  ESCALE_RETURN_IF_ERROR(BuildRecipes(src, opt, head_units, p));
  ListInexact(src, p);
  return p;
}

namespace {

// A stretch of target columns whose source columns are consecutive and all old or all new: the
// circular map is two such stretches per row, so the inner loop is a contiguous divide.
struct ColumnRun {
  int64_t dst, src, len;
  bool fresh;
};

std::vector<ColumnRun> ColumnRuns(const UpRecipe& r) {
  std::vector<ColumnRun> runs;
  if (!r.cols) return {{0, 0, 1, false}};
  const DimMap& c = *r.cols;
  for (int64_t j = 0; j < c.n_dst; ++j) {
    const auto ju = static_cast<size_t>(j);
    const bool fresh = c.fresh[ju] != 0;
    if (!runs.empty() && runs.back().src + runs.back().len == c.src[ju] &&
        runs.back().fresh == fresh)
      ++runs.back().len;
    else
      runs.push_back({j, c.src[ju], 1, fresh});
  }
  return runs;
}

}  // namespace

// Zero-sum multiplicative noise across the copies of each source column, row by row, drawn
// serially from one stream per tensor (so the result does not depend on the thread count).
template <class T>
void BreakSymmetry(const DimMap& cols, double eps, uint64_t seed, const std::string& tensor,
                   int64_t rows, T* out) {
  std::vector<std::vector<int64_t>> copies(static_cast<size_t>(cols.n_src));
  for (int64_t j = 0; j < cols.n_dst; ++j) copies[static_cast<size_t>(cols.src[static_cast<size_t>(j)])].push_back(j);
  std::erase_if(copies, [](const std::vector<int64_t>& c) { return c.size() < 2; });
  if (copies.empty()) return;
  Rng rng = Rng::Stream(seed, "symmetry-noise/" + tensor);
  std::vector<double> z;
  for (int64_t i = 0; i < rows; ++i) {
    T* o = out + i * cols.n_dst;
    for (const std::vector<int64_t>& c : copies) {
      z.resize(c.size());
      double mean = 0;
      for (double& v : z) mean += (v = rng.NextNormal());
      mean /= static_cast<double>(z.size());
      for (size_t k = 0; k < c.size(); ++k) {
        T& w = o[c[k]];
        w = static_cast<T>(static_cast<double>(w) * (1.0 + eps * (z[k] - mean)));
      }
    }
  }
}

template <class T>
Status ProduceScaleUpInto(const ScaleUpPlan& plan, const UpRecipe& r, const SourceFn& source,
                          T* out, Scratch<T>& scratch) {
  (void)plan;
  const int64_t n = ShapeNumel(r.target.shape);
  if (r.zero) {
    std::fill(out, out + n, T(0));
    return Status::Ok();
  }
  // Sources already stored as T are read in place from the mapping, not copied.
  ESCALE_ASSIGN_OR_RETURN(SourceView<T> main,
                          ViewSource<T>(source, r.source, r.source_shape, scratch.a));
  SourceView<T> next;
  if (!r.next.empty()) {
    ESCALE_ASSIGN_OR_RETURN(next, ViewSource<T>(source, r.next, r.source_shape, scratch.b));
  }
  const T* w = main.data;
  const T* nx = r.next.empty() ? w : next.data;
  const DimMap& rows = *r.rows;
  const int64_t src_cols = r.cols ? r.cols->n_src : 1;
  const int64_t dst_cols = r.cols ? r.cols->n_dst : 1;
  ESCALE_CHECK(rows.n_dst * dst_cols == n);
  ESCALE_CHECK(rows.n_src * src_cols == ShapeNumel(r.source_shape));
  // Per target column: its source column, the divisor of input expansion, and whether it is new.
  std::vector<int64_t> csrc(static_cast<size_t>(dst_cols), 0);
  std::vector<T> cdiv(static_cast<size_t>(dst_cols), T(1));
  std::vector<uint8_t> cfresh(static_cast<size_t>(dst_cols), 0);
  if (r.cols)
    for (int64_t j = 0; j < dst_cols; ++j) {
      const auto ju = static_cast<size_t>(j);
      csrc[ju] = r.cols->src[ju];
      cfresh[ju] = r.cols->fresh[ju];
      if (r.divide_cols) cdiv[ju] = static_cast<T>(r.cols->count[static_cast<size_t>(csrc[ju])]);
    }
  const std::vector<ColumnRun> runs = ColumnRuns(r);
  const int threads = ProducerThreads();
  // Every element is computed on its own (the pooled sum runs in a fixed order), so the result
  // does not depend on the thread count.
#pragma omp parallel for schedule(static) \
    num_threads(threads) if (threads > 1 && n >= (int64_t{1} << 18))
  for (int64_t i = 0; i < rows.n_dst; ++i) {
    const auto iu = static_cast<size_t>(i);
    T* o = out + i * dst_cols;
    if (!rows.pooled()) {
      const T* rw = w + rows.src[iu] * src_cols;
      const T* rn = nx + rows.src[iu] * src_cols;
      for (const ColumnRun& run : runs) {
        // A new row takes every column from the next layer; an old row only its new columns.
        const T* from = (rows.fresh[iu] || run.fresh ? rn : rw) + run.src;
        T* to = o + run.dst;
        const T* div = cdiv.data() + run.dst;
        for (int64_t t = 0; t < run.len; ++t) to[t] = from[t] / div[t];
      }
      continue;
    }
    // Mean-pooled K/V heads: never new units, never input-expanded columns of a fresh row.
    const std::vector<int64_t>& srows = rows.pool[iu];
    for (int64_t j = 0; j < dst_cols; ++j) {
      const auto ju = static_cast<size_t>(j);
      const T* m = cfresh[ju] ? nx : w;
      T acc = 0;
      for (int64_t sr : srows) acc += m[sr * src_cols + csrc[ju]];
      o[j] = acc / static_cast<T>(srows.size()) / cdiv[ju];
    }
  }
  if (plan.options.symmetry_noise > 0 && r.divide_cols && r.cols && !rows.pooled())
    BreakSymmetry(*r.cols, plan.options.symmetry_noise, plan.options.seed, r.target.name,
                  rows.n_dst, out);
  return Status::Ok();
}
template Status ProduceScaleUpInto<float>(const ScaleUpPlan&, const UpRecipe&, const SourceFn&,
                                          float*, Scratch<float>&);
template Status ProduceScaleUpInto<double>(const ScaleUpPlan&, const UpRecipe&, const SourceFn&,
                                           double*, Scratch<double>&);

bool ScaleUpIsCopy(const UpRecipe& r) {
  // Must agree with ProduceScaleUpInto: identity maps with unit counts make every element
  // S[i, j] / 1, which is S[i, j].
  auto plain = [](const DimMapPtr& m) {
    return !m || (!m->pooled() && m->identity() && !m->any_fresh() &&
                  std::all_of(m->count.begin(), m->count.end(), [](int64_t c) { return c == 1; }));
  };
  return !r.zero && r.next.empty() && r.rows && plain(r.rows) && plain(r.cols) &&
         r.target.shape == r.source_shape;
}

template <class T>
Result<std::vector<T>> ProduceScaleUp(const ScaleUpPlan& plan, const UpRecipe& r,
                                      const SourceFn& source) {
  std::vector<T> out(static_cast<size_t>(ShapeNumel(r.target.shape)));
  Scratch<T> scratch;
  ESCALE_RETURN_IF_ERROR(ProduceScaleUpInto<T>(plan, r, source, out.data(), scratch));
  return out;
}
template Result<std::vector<float>> ProduceScaleUp<float>(const ScaleUpPlan&, const UpRecipe&,
                                                          const SourceFn&);
template Result<std::vector<double>> ProduceScaleUp<double>(const ScaleUpPlan&, const UpRecipe&,
                                                            const SourceFn&);

Result<std::map<std::string, Tensor>> ScaleUpInMemory(const ScaleUpPlan& plan,
                                                      const SourceFn& source, DType dtype) {
  return ProduceAllInMemory(plan.recipes, dtype, [&](const UpRecipe& r) {
    return ProduceScaleUp<double>(plan, r, source);
  });
}

std::map<std::string, std::string> ScaleUpMetadata(const ScaleUpPlan& p) {
  std::map<std::string, std::string> m;
  m["escale.operation"] = "scale-up";
  m["escale.method"] = std::string(ScaleUpMethodName(p.options.method));
  m["escale.depth"] = std::string(DepthMethodName(p.depth));
  m["escale.depth_map"] = JsonIntList(p.depth_map.src);
  std::vector<int64_t> zeroed(p.depth_map.zeroed.begin(), p.depth_map.zeroed.end());
  m["escale.depth_zeroed"] = JsonIntList(zeroed);
  m["escale.map"] = std::string(MapKindName(p.options.map));
  m["escale.seed"] = std::to_string(p.options.seed);
  if (p.options.symmetry_noise > 0)
    m["escale.symmetry_noise"] = std::to_string(p.options.symmetry_noise);
  m["escale.hidden_map"] = JsonIntList(p.hidden->src);
  m["escale.ffn_map"] = JsonIntList(p.ffn->src);
  m["escale.q_head_map"] = JsonIntList(p.q_heads->src);
  m["escale.kv_head_map"] = p.kv_heads->pooled() ? "mean-pooled " + DescribeMap(*p.kv_heads)
                                                 : JsonIntList(p.kv_heads->src);
  m["escale.source_shape"] = ShapeLine(p.source);
  m["escale.function_preserving"] = ExactnessLine(p.inexact);
  return m;
}

std::string DescribeScaleUp(const ScaleUpPlan& p, DType out_dtype) {
  std::ostringstream o;
  o << "scale-up plan (" << ScaleUpMethodName(p.options.method) << ", depth "
    << DepthMethodName(p.depth) << ", " << MapKindName(p.options.map) << " maps, seed "
    << p.options.seed << ")\n";
  if (p.options.symmetry_noise > 0)
    o << "  symmetry breaking: each copy's share of a split weight x (1 + "
      << p.options.symmetry_noise << " (z - mean z)), z ~ N(0, 1): the copies diverge in training, "
      << "the function is kept\n";
  o << "  source: " << ShapeLine(p.source) << "\n";
  o << "  target: " << ShapeLine(p.target) << "\n";
  o << "maps:\n";
  o << "  hidden:   " << DescribeMap(*p.hidden) << "\n";
  o << "  ffn:      " << DescribeMap(*p.ffn) << "\n";
  o << "  q heads:  " << DescribeMap(*p.q_heads) << " (grown inside each KV group)\n";
  o << "  kv heads: " << DescribeMap(*p.kv_heads) << "\n";
  o << "layers (target <- source"
    << (p.depth == DepthMethod::kZero ? ", * = o_proj/down_proj zeroed" : "") << "):\n  ";
  for (size_t l = 0; l < p.depth_map.src.size(); ++l) {
    o << l << "<-" << p.depth_map.src[l] << (p.depth_map.zeroed[l] ? "*" : "")
      << (l + 1 < p.depth_map.src.size() ? (l % 12 == 11 ? "\n  " : " ") : "\n");
  }
  o << "tensors of one layer (target shape <- source shape):\n";
  for (const UpRecipe& r : p.recipes) {
    if (r.target.layer > 0) continue;
    o << "  " << r.target.name << " " << ShapeToString(r.target.shape) << " <- " << r.source << " "
      << ShapeToString(r.source_shape) << (r.next.empty() ? "" : " (new units from " + r.next + ")")
      << "\n";
  }
  const ParameterCounts before = CountParameters(p.source), after = CountParameters(p.target);
  o << "parameters: " << HumanCount(before.total) << " -> " << HumanCount(after.total) << "\n";
  uint64_t bytes = 0, out_max = 0, scratch_max = 0, mapped_max = 0;
  const uint64_t esize = static_cast<uint64_t>(DTypeSize(out_dtype));
  const uint64_t work = out_dtype == DType::kF64 ? 8 : 4;  // the precision the producer computes in
  for (const UpRecipe& r : p.recipes) {
    const auto n = static_cast<uint64_t>(ShapeNumel(r.target.shape));
    bytes += n * esize;
    out_max = std::max(out_max, n * esize);
    const auto sn = static_cast<uint64_t>(ShapeNumel(r.source_shape));
    // Sources not stored at the working precision are converted; a result not written at it is
    // computed at it first.
    const uint64_t src = p.source.dtype == (work == 8 ? DType::kF64 : DType::kF32)
                             ? 0
                             : sn * work * (r.next.empty() ? 1 : 2);
    scratch_max = std::max(scratch_max, src + (esize == work ? 0 : n * work));
    mapped_max = std::max(mapped_max, sn * static_cast<uint64_t>(DTypeSize(p.source.dtype)));
  }
  o << "bytes to write: " << HumanBytes(bytes) << " (" << DTypeName(out_dtype) << ")\n";
  o << "peak memory: about " << HumanBytes(2 * out_max + scratch_max)
    << " (two target tensors in flight and the producer's scratch; source weights are "
       "memory-mapped and "
       "released as they are consumed: add about "
    << HumanBytes(mapped_max) << " of mapped source pages to the resident size)\n";
  o << "function preservation: " << ExactnessLine(p.inexact) << "\n";
  return o.str();
}

}  // namespace escale::surgery
