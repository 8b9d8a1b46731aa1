#include "model/train_model.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include "model/layout.h"
#include "model/rope.h"
#include "ops/cpu/fast_attention.h"
#include "ops/cpu/fast_kernels.h"
#include "ops/cpu/fast_loss.h"
#include "ops/cpu/fast_routing.h"

namespace escale {
namespace {

namespace fast = ops::fast;
size_t Z(int64_t i) { return static_cast<size_t>(i); }

enum Op : int {
  kEmbedF, kNormF, kQkvF, kRopeF, kAttnF, kWoF, kFfnGemmF, kSwiGluF, kRouterF, kPermuteF, kExpertGemmF, kHeadF,
  kLossF, kHeadB, kNormB, kQkvB, kRopeB, kAttnB, kWoB, kFfnGemmB, kSwiGluB, kRouterB, kPermuteB, kExpertGemmB,
  kEmbedB, kOpCount
};
constexpr std::array<const char*, kOpCount> kOpNames = {
    "embed.fwd",  "rmsnorm.fwd", "qkv_gemm.fwd",  "rope.fwd",       "attention.fwd", "wo_gemm.fwd",
    "ffn_gemm.fwd", "swiglu.fwd", "router.fwd",   "moe_permute.fwd", "expert_gemm.fwd", "lm_head_gemm.fwd",
    "loss_softmax", "lm_head_gemm.bwd", "rmsnorm.bwd", "qkv_gemm.bwd", "rope.bwd",   "attention.bwd",
    "wo_gemm.bwd", "ffn_gemm.bwd", "swiglu.bwd",  "router.bwd",     "moe_permute.bwd", "expert_gemm.bwd",
    "embed.bwd"};

using Buf = std::vector<float>;

// Pointers into the flat weight (w) and gradient (g) buffers for one tensor.
struct WG {
  float* w = nullptr;
  float* g = nullptr;
};

// One layer's activations, kept for the backward. A training model has a set per layer; an
// inference-mode model has one set, sized for its largest layer, that every layer reuses.
struct Acts {
  Buf rstd1, xn1, qkv, att, lse, rstd2, xn2;
  Buf q_raw, k_raw, q_rstd, k_rstd;             // q/k before their norm
  Buf gu_act, h;                                // dense FFN [N,2F], [N,F]
  Buf rlogits, softmax, prob, xe, gue, he, oe;  // MoE
  std::vector<int32_t> expert, slot_of, slot_row, expert_start;
  std::vector<uint8_t> kept;
  std::vector<int64_t> load;
  Buf sgu, sh, sout, sgate;  // shared expert
  fast::RoutingBuffers rb() {
    return {expert.data(), prob.data(), kept.data(), softmax.data(), load.data()};
  }
};

// Grows a buffer to at least n elements (a shared set takes the largest layer's sizes).
template <class T>
void Fit(std::vector<T>& b, int64_t n) {
  if (b.size() < Z(n)) b.assign(Z(n), T{});
}

struct Layer {
  bool moe = false;
  WG attn_norm, wqkv, bqkv, wo, ffn_norm, gu, down;          // gu: gate then up, [2F, H]
  WG q_norm, k_norm;                                         // QkNorm::kPerHead
  WG router, shared_gu, shared_down, shared_router;          // MoE
  std::vector<WG> expert_gu, expert_down;
  std::vector<const float*> egu_w, edown_w;  // the same, as pointer arrays for the grouped GEMMs
  std::vector<float*> egu_g, edown_g;
  Acts* a = nullptr;     // this layer's activations (shared by every layer in inference mode)
  Buf k_cache, v_cache;  // decoding: [kv_positions, kv]
};

}  // namespace

struct TrainModel::Impl {
  ModelConfig c;
  BatchShape shape;
  LossCoefficients coef;
  int64_t N = 0, H = 0, V = 0, qd = 0, kvd = 0, qkvd = 0, F = 0, E = 0, K = 0, Fe = 0, Fs = 0;
  int threads = 1;
  // Rows of the forward in progress: N, or a decoding pass's tokens at positions pos.. (decoding).
  int64_t rows = 0, pos = 0;
  bool decoding = false;
  Buf kv_scratch;
  Buf weights, grads;
  std::vector<TensorSpec> specs;
  std::vector<size_t> offsets;
  std::vector<Param> params;
  WG embed, final_norm, head;
  std::vector<Layer> layers;
  std::vector<MoeLayerStats> stats;
  fast::RouterSpec router;
  // Residual stream: res[l] enters layer l, mid[l] is after its attention, res[L] is final.
  // Inference mode needs no history: res[l] all alias one buffer, mid[l] another.
  std::vector<Buf> res_store, mid_store;
  std::vector<float*> res, mid;
  std::vector<Acts> acts;
  std::vector<fast::RouterLossValues> router_losses;  // per MoE layer, of the last forward
  Buf rstd_f, xn_f, logits;
  Buf rope_cos, rope_sin;
  // Backward scratch, shared by all layers.
  Buf dx, dxn, dqkv, datt, dgu, dh, doe, dxe, dweight, drlogits, dsgate, attn_scratch;
  std::vector<double> loss_rows;
  std::vector<int32_t> route_scratch;
  bool profiling = false;
  std::array<double, kOpCount> prof{};

  struct Timer {
    Impl* m;
    Op op;
    std::chrono::steady_clock::time_point t0;
    Timer(Impl* impl, Op o) : m(impl), op(o) {
      if (m->profiling) t0 = std::chrono::steady_clock::now();
    }
    ~Timer() {
      if (m->profiling) m->prof[op] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  };

  WG At(size_t i) {
    return {weights.data() + offsets[i], grads.empty() ? nullptr : grads.data() + offsets[i]};
  }

  // Create's steps: weights into the flat buffers, then the activations and scratch of a step.
  Status LoadWeights(const TensorMap& init, const std::function<void(const Tensor&)>& copied);
  int64_t AllocateLayer(int64_t l);  // the largest SwiGLU [rows, F] of the layer
  void AllocateScratch(int64_t max_ffn);
  Status BuildRopeTables();
  std::map<std::string, size_t> index;  // canonical name -> position in specs
  WG Named(const std::string& name) { return At(index.at(name)); }

  Status CheckBatch(std::span<const int32_t> tokens, std::span<const int32_t> targets) const;
  Status CheckTokens(std::span<const int32_t> tokens) const;
  void Forward(std::span<const int32_t> tokens);
  void AttentionForward(Layer& L, const float* x, float* out);
  void DenseFfnForward(Layer& L, float* out);
  void MoeForward(int64_t l, Layer& L, float* out);
  LossTerms Losses(std::span<const int32_t> targets, bool write_grad, float grad_scale);
  void Backward(std::span<const int32_t> tokens, float grad_scale);
  void MoeBackward(Layer& L, float grad_scale);
};

namespace {

int64_t MoeLayerCount(const ModelConfig& c) {
  int64_t n = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) n += c.IsMoeLayer(l) ? 1 : 0;
  return n;
}

}  // namespace

Status TrainModel::Impl::LoadWeights(const TensorMap& init,
                                     const std::function<void(const Tensor&)>& copied) {
  // Flat buffers in canonical order: wq/wk/wv, bq/bk/bv and gate/up are adjacent by construction.
  specs = CanonicalTensors(c);
  size_t total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    offsets.push_back(total);
    index[specs[i].name] = i;
    total += Z(ShapeNumel(specs[i].shape));
  }
  weights.assign(total, 0.0f);
  if (shape.training) grads.assign(total, 0.0f);
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    auto it = init.find(spec.name);
    if (it == init.end())
      return NotFound("tensor '" + spec.name + "' is missing from the initial weights");
    if (it->second.shape() != spec.shape)
      return FormatError("tensor '" + spec.name + "' has shape " +
                         ShapeToString(it->second.shape()) + ", the config needs " +
                         ShapeToString(spec.shape));
    Status st = ConvertToF32(it->second.dtype(), it->second.bytes(), Z(ShapeNumel(spec.shape)),
                             weights.data() + offsets[i]);
    if (!st.ok()) return st.WithContext("tensor '" + spec.name + "'");
    if (copied) copied(it->second);
    const size_t n = Z(ShapeNumel(spec.shape));
    const bool no_decay = spec.role == TensorRole::kEmbed || IsNormRole(spec.role) ||
                          spec.role == TensorRole::kBq || spec.role == TensorRole::kBk ||
                          spec.role == TensorRole::kBv;
    params.push_back(
        {spec.name, std::span<float>(weights.data() + offsets[i], n),
         shape.training ? std::span<float>(grads.data() + offsets[i], n) : std::span<float>(),
         !no_decay});
  }
  return Status::Ok();
}

int64_t TrainModel::Impl::AllocateLayer(int64_t l) {
  Layer& ly = layers[Z(l)];
  ly.a = &acts[shape.training ? Z(l) : 0];
  int64_t max_ffn = 0;
  ly.attn_norm = Named(LayerTensorName(l, "attn_norm"));
  ly.wqkv = Named(LayerTensorName(l, "wq"));
  if (c.qkv_bias) ly.bqkv = Named(LayerTensorName(l, "bq"));
  if (c.qk_norm == QkNorm::kPerHead) {
    ly.q_norm = Named(LayerTensorName(l, "q_norm"));
    ly.k_norm = Named(LayerTensorName(l, "k_norm"));
    Fit(ly.a->q_raw, N * qd);
    Fit(ly.a->k_raw, N * kvd);
    Fit(ly.a->q_rstd, N * c.num_heads);
    Fit(ly.a->k_rstd, N * c.num_kv_heads);
  }
  ly.wo = Named(LayerTensorName(l, "wo"));
  ly.ffn_norm = Named(LayerTensorName(l, "ffn_norm"));
  Fit(ly.a->rstd1, N);
  Fit(ly.a->xn1, N * H);
  Fit(ly.a->qkv, N * qkvd);
  Fit(ly.a->att, N * qd);
  Fit(ly.a->lse, N * c.num_heads);
  Fit(ly.a->rstd2, N);
  Fit(ly.a->xn2, N * H);
  ly.moe = c.IsMoeLayer(l);
  if (!ly.moe) {
    ly.gu = Named(LayerTensorName(l, "ffn.gate"));
    ly.down = Named(LayerTensorName(l, "ffn.down"));
    Fit(ly.a->gu_act, N * 2 * F);
    Fit(ly.a->h, N * F);
    max_ffn = std::max(max_ffn, N * F);
    return max_ffn;
  }
  const int64_t A = N * K;
  ly.router = Named(LayerTensorName(l, "moe.router"));
  for (int64_t e = 0; e < E; ++e) {
    ly.expert_gu.push_back(Named(ExpertTensorName(l, e, "gate")));
    ly.expert_down.push_back(Named(ExpertTensorName(l, e, "down")));
    ly.egu_w.push_back(ly.expert_gu.back().w);
    ly.egu_g.push_back(ly.expert_gu.back().g);
    ly.edown_w.push_back(ly.expert_down.back().w);
    ly.edown_g.push_back(ly.expert_down.back().g);
  }
  Fit(ly.a->rlogits, N * E);
  Fit(ly.a->softmax, N * E);
  Fit(ly.a->prob, A);
  Fit(ly.a->expert, A);
  Fit(ly.a->kept, A);
  Fit(ly.a->load, E);
  Fit(ly.a->slot_of, A);
  Fit(ly.a->slot_row, A);
  Fit(ly.a->expert_start, E + 1);
  Fit(ly.a->xe, A * H);
  Fit(ly.a->gue, A * 2 * Fe);
  Fit(ly.a->he, A * Fe);
  Fit(ly.a->oe, A * H);
  max_ffn = std::max(max_ffn, A * Fe);
  if (Fs > 0) {
    ly.shared_gu = Named(LayerTensorName(l, "moe.shared.gate"));
    ly.shared_down = Named(LayerTensorName(l, "moe.shared.down"));
    ly.shared_router = Named(LayerTensorName(l, "moe.shared_router"));
    Fit(ly.a->sgu, N * 2 * Fs);
    Fit(ly.a->sh, N * Fs);
    Fit(ly.a->sout, N * H);
    Fit(ly.a->sgate, N);
    max_ffn = std::max(max_ffn, N * Fs);
  }
  MoeLayerStats st;
  st.layer = l;
  st.tokens_per_expert.assign(Z(E), 0);
  stats.push_back(std::move(st));
  return max_ffn;
}

void TrainModel::Impl::AllocateScratch(int64_t max_ffn) {
  rstd_f.assign(Z(N), 0);
  xn_f.assign(Z(N * H), 0);
  logits.assign(Z(shape.kv_positions > 0 ? V : N * V), 0);  // decoding: the last position's only
  attn_scratch.assign(Z(fast::AttentionScratchPerThread(shape.seq_len) * threads), 0);
  loss_rows.assign(Z(3 * N), 0);
  if (c.is_moe()) route_scratch.assign(Z(N * K + E + 1), 0);
  if (shape.kv_positions > 0) {
    for (Layer& L : layers) {
      L.k_cache.assign(Z(shape.kv_positions * kvd), 0);
      L.v_cache.assign(Z(shape.kv_positions * kvd), 0);
    }
    kv_scratch.assign(Z(fast::CachedAttentionScratch(shape.kv_positions, threads)), 0);
  }
  if (!shape.training) return;
  dx.assign(Z(N * H), 0);
  dxn.assign(Z(N * H), 0);
  dqkv.assign(Z(N * qkvd), 0);
  datt.assign(Z(N * qd), 0);
  dgu.assign(Z(2 * max_ffn), 0);
  dh.assign(Z(max_ffn), 0);
  if (c.is_moe()) {
    const int64_t A = N * K;
    doe.assign(Z(std::max(A, N) * H), 0);
    dxe.assign(Z(A * H), 0);
    dweight.assign(Z(A), 0);
    drlogits.assign(Z(N * E), 0);
    dsgate.assign(Z(N), 0);
  }
}

Status TrainModel::Impl::BuildRopeTables() {
  ESCALE_ASSIGN_OR_RETURN(RopeTables t,
                          ComputeRopeTables(c, std::max(shape.seq_len, shape.kv_positions)));
  rope_cos = std::move(t.cos);
  rope_sin = std::move(t.sin);
  return Status::Ok();
}

Result<std::unique_ptr<TrainModel>> TrainModel::Create(
    const ModelConfig& config, const TensorMap& init, BatchShape shape,
    const LossCoefficients& coef, const std::function<void(const Tensor&)>& copied) {
  ESCALE_RETURN_IF_ERROR(config.Validate());
  if (shape.micro_batch <= 0 || shape.seq_len <= 0)
    return InvalidArgument("micro-batch size and sequence length must be positive (got " +
                           std::to_string(shape.micro_batch) + " x " + std::to_string(shape.seq_len) + ")");
  if (config.head_dim % 2 != 0) return InvalidArgument("head_dim must be even for RoPE");
  if (shape.kv_positions < 0 || (shape.kv_positions > 0 && shape.training))
    return InvalidArgument("a key/value cache is for an inference-mode model only");
  if (shape.training && config.router_untrainable())
    return InvalidArgument("mixtral routing with top-k = 1 gives the router no gradient; use k >= 2 or st routing");
  const int64_t N = shape.micro_batch * shape.seq_len;
  if (N > (int64_t{1} << 30) / std::max<int64_t>(1, config.moe.top_k))
    return InvalidArgument("micro-batch of " + std::to_string(N) + " tokens is too large");

  auto m = std::make_unique<Impl>();
  Impl& s = *m;
  s.c = config;
  s.shape = shape;
  s.coef = coef;
  s.N = N;
  s.rows = N;
  s.H = config.hidden_size;
  s.V = config.vocab_size;
  s.qd = config.q_dim();
  s.kvd = config.kv_dim();
  s.qkvd = s.qd + 2 * s.kvd;
  s.F = config.intermediate_size;
  s.E = config.moe.num_experts;
  s.K = config.moe.top_k;
  s.Fe = config.moe.expert_intermediate;
  s.Fs = config.moe.shared_intermediate;
  s.threads = std::max(1, omp_get_max_threads());
  fast::UseSingleThreadedBlas();
  // Decoding routes dropless: a token's experts must not depend on how the prompt was chunked.
  s.router = {s.E, s.K, config.moe.router == RouterType::kMixtral,
              shape.kv_positions > 0 ? 0.0 : config.moe.capacity_factor,
              config.moe.drop_policy == DropPolicy::kPosition};

  ESCALE_RETURN_IF_ERROR(s.LoadWeights(init, copied));
  s.embed = s.Named("embed");
  s.final_norm = s.Named("norm");
  s.head = config.tie_word_embeddings ? s.embed : s.Named("lm_head");
  const int64_t L = config.num_layers, H = s.H;
  s.layers.resize(Z(L));
  const bool history = shape.training;  // the backward reads every layer's activations
  s.res_store.assign(history ? Z(L + 1) : 1, Buf(Z(N * H)));
  s.mid_store.assign(history ? Z(L) : 1, Buf(Z(N * H)));
  for (int64_t l = 0; l <= L; ++l) s.res.push_back(s.res_store[history ? Z(l) : 0].data());
  for (int64_t l = 0; l < L; ++l) s.mid.push_back(s.mid_store[history ? Z(l) : 0].data());
  s.acts.resize(history ? Z(L) : 1);
  s.router_losses.resize(Z(MoeLayerCount(config)));
  int64_t max_ffn = 0;  // largest [rows, F] of any SwiGLU, for the shared backward scratch
  for (int64_t l = 0; l < L; ++l) max_ffn = std::max(max_ffn, s.AllocateLayer(l));
  s.AllocateScratch(max_ffn);
  ESCALE_RETURN_IF_ERROR(s.BuildRopeTables());
  return std::unique_ptr<TrainModel>(new TrainModel(std::move(m)));
}

TrainModel::TrainModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrainModel::~TrainModel() = default;

Status TrainModel::Impl::CheckBatch(std::span<const int32_t> tokens, std::span<const int32_t> targets) const {
  if (static_cast<int64_t>(tokens.size()) != N || static_cast<int64_t>(targets.size()) != N)
    return InvalidArgument("a micro-batch needs " + std::to_string(N) + " tokens and targets (" +
                           std::to_string(shape.micro_batch) + " x " + std::to_string(shape.seq_len) + "), got " +
                           std::to_string(tokens.size()) + " and " + std::to_string(targets.size()));
  ESCALE_RETURN_IF_ERROR(CheckTokens(tokens));
  for (size_t i = 0; i < targets.size(); ++i)
    if (targets[i] >= V)
      return InvalidArgument("target " + std::to_string(targets[i]) + " at position " +
                             std::to_string(i) + " is outside the vocabulary [0, " +
                             std::to_string(V) + ")");
  return Status::Ok();
}

void TrainModel::Impl::AttentionForward(Layer& L, const float* x, float* out) {
  {
    Timer tm(this, kNormF);
    fast::RmsNormForward(x, rows, H, L.attn_norm.w, static_cast<float>(c.rms_norm_eps),
                         L.a->xn1.data(), L.a->rstd1.data());
  }
  {
    Timer tm(this, kQkvF);
    fast::LinearForward(L.a->xn1.data(), rows, H, L.wqkv.w, qkvd, L.a->qkv.data());
    if (c.qkv_bias) fast::AddBias(L.a->qkv.data(), rows, qkvd, qkvd, L.bqkv.w);
  }
  if (c.qk_norm == QkNorm::kPerHead) {
    Timer tm(this, kNormF);
    const float eps = static_cast<float>(c.rms_norm_eps);
    fast::HeadRmsNormForward(L.a->qkv.data(), rows, qkvd, c.num_heads, c.head_dim, L.q_norm.w, eps,
                             L.a->q_raw.data(), L.a->q_rstd.data());
    fast::HeadRmsNormForward(L.a->qkv.data() + qd, rows, qkvd, c.num_kv_heads, c.head_dim,
                             L.k_norm.w, eps, L.a->k_raw.data(), L.a->k_rstd.data());
  }
  {
    Timer tm(this, kRopeF);
    // q heads and k heads are adjacent in a qkv row: one pass rotates both. Decoding rotates rows
    // at positions pos.., so the tables start there (and a period of `rows` keeps row = offset).
    const int64_t half = c.head_dim / 2, period = decoding ? rows : shape.seq_len;
    fast::RopeForward(L.a->qkv.data(), rows, qkvd, c.num_heads + c.num_kv_heads, c.head_dim, period,
                      rope_cos.data() + pos * half, rope_sin.data() + pos * half);
  }
  if (decoding) {
    Timer tm(this, kAttnF);
    for (int64_t m = 0; m < rows; ++m) {
      std::memcpy(L.k_cache.data() + (pos + m) * kvd, L.a->qkv.data() + m * qkvd + qd,
                  Z(kvd) * sizeof(float));
      std::memcpy(L.v_cache.data() + (pos + m) * kvd, L.a->qkv.data() + m * qkvd + qd + kvd,
                  Z(kvd) * sizeof(float));
    }
    fast::AttentionShape as{1,
                            0,
                            c.num_heads,
                            c.num_kv_heads,
                            c.head_dim,
                            qkvd,
                            kvd,
                            qd,
                            std::min(threads, omp_get_max_threads())};
    fast::CachedAttentionForward(as, pos, rows, L.a->qkv.data(), L.k_cache.data(), L.v_cache.data(),
                                 L.a->att.data(), kv_scratch.data());
  } else {
    Timer tm(this, kAttnF);
    fast::AttentionShape as{shape.micro_batch, shape.seq_len, c.num_heads, c.num_kv_heads, c.head_dim,
                            qkvd, qkvd, qd, std::min(threads, omp_get_max_threads())};
    fast::CausalAttentionForward(as, L.a->qkv.data(), L.a->qkv.data() + qd,
                                 L.a->qkv.data() + qd + kvd, L.a->att.data(), L.a->lse.data(),
                                 attn_scratch.data());
  }
  {
    Timer tm(this, kWoF);
    std::memcpy(out, x, Z(rows * H) * sizeof(float));
    fast::LinearForward(L.a->att.data(), rows, qd, L.wo.w, H, out, 1.0f);
  }
}

void TrainModel::Impl::DenseFfnForward(Layer& L, float* out) {
  {
    Timer tm(this, kFfnGemmF);
    fast::LinearForward(L.a->xn2.data(), rows, H, L.gu.w, 2 * F, L.a->gu_act.data());
  }
  {
    Timer tm(this, kSwiGluF);
    fast::SwiGluForward(L.a->gu_act.data(), rows, F, L.a->h.data());
  }
  Timer tm(this, kFfnGemmF);
  fast::LinearForward(L.a->h.data(), rows, F, L.down.w, H, out, 1.0f);
}

void TrainModel::Impl::MoeForward(int64_t l, Layer& L, float* out) {
  (void)l;
  const int64_t A = rows * K;
  {
    Timer tm(this, kRouterF);
    fast::LinearForward(L.a->xn2.data(), rows, H, L.router.w, E, L.a->rlogits.data());
    fast::RouteTokens(L.a->rlogits.data(), rows, decoding ? rows : shape.seq_len, router, L.a->rb(),
                      route_scratch.data());
  }
  {
    Timer tm(this, kPermuteF);
    // Kept assignments grouped by expert, in assignment order within each expert.
    int32_t* start = L.a->expert_start.data();
    for (int64_t e = 0; e <= E; ++e) start[e] = 0;
    for (int64_t a = 0; a < A; ++a)
      if (L.a->kept[Z(a)]) ++start[L.a->expert[Z(a)] + 1];
    for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
    for (int64_t a = 0; a < A; ++a) {
      if (!L.a->kept[Z(a)]) {
        L.a->slot_of[Z(a)] = -1;
        continue;
      }
      const int32_t slot = start[L.a->expert[Z(a)]]++;
      L.a->slot_of[Z(a)] = slot;
      L.a->slot_row[Z(slot)] = static_cast<int32_t>(a / K);
    }
    for (int64_t e = E; e > 0; --e) start[e] = start[e - 1];
    start[0] = 0;
    const int64_t used = start[E];
    const float* xn = L.a->xn2.data();
    float* xe = L.a->xe.data();
    const int32_t* slot_row = L.a->slot_row.data();
    const int64_t Hh = H;
#pragma omp parallel for schedule(static) if (used * Hh > (1 << 14))
    for (int64_t sl = 0; sl < used; ++sl)
      std::memcpy(xe + sl * Hh, xn + slot_row[sl] * Hh, Z(Hh) * sizeof(float));
  }
  const int32_t* start = L.a->expert_start.data();
  const int64_t used = start[E];
  {
    Timer tm(this, kExpertGemmF);
    fast::GroupedLinearForward(L.a->xe.data(), start, E, H, L.egu_w.data(), 2 * Fe,
                               L.a->gue.data());
  }
  {
    Timer tm(this, kSwiGluF);
    fast::SwiGluForward(L.a->gue.data(), used, Fe, L.a->he.data());
  }
  {
    Timer tm(this, kExpertGemmF);
    fast::GroupedLinearForward(L.a->he.data(), start, E, Fe, L.edown_w.data(), H, L.a->oe.data());
  }
  if (Fs > 0) {
    {
      Timer tm(this, kFfnGemmF);
      fast::LinearForward(L.a->xn2.data(), rows, H, L.shared_gu.w, 2 * Fs, L.a->sgu.data());
    }
    {
      Timer tm(this, kSwiGluF);
      fast::SwiGluForward(L.a->sgu.data(), rows, Fs, L.a->sh.data());
    }
    Timer tm(this, kFfnGemmF);
    fast::LinearForward(L.a->sh.data(), rows, Fs, L.shared_down.w, H, L.a->sout.data());
    fast::LinearForward(L.a->xn2.data(), rows, H, L.shared_router.w, 1, L.a->sgate.data());
  }
  Timer tm(this, kPermuteF);
  const int64_t k = K, Hh = H;
  const bool shared = Fs > 0;
  const float* oe = L.a->oe.data();
  const float* prob = L.a->prob.data();
  const int32_t* slot_of = L.a->slot_of.data();
  const float* sout = shared ? L.a->sout.data() : nullptr;
  const float* sgate = shared ? L.a->sgate.data() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < rows; ++t) {
    float* o = out + t * Hh;
    for (int64_t i = 0; i < k; ++i) {
      const int32_t sl = slot_of[t * k + i];
      if (sl < 0) continue;
      const float w = prob[t * k + i];
      const float* src = oe + int64_t{sl} * Hh;
#pragma omp simd
      for (int64_t h = 0; h < Hh; ++h) o[h] += w * src[h];
    }
    if (shared) {
      const float g = fast::Sigmoid(sgate[t]);
      const float* src = sout + t * Hh;
#pragma omp simd
      for (int64_t h = 0; h < Hh; ++h) o[h] += g * src[h];
    }
  }
}

void TrainModel::Impl::Forward(std::span<const int32_t> tokens) {
  {
    Timer tm(this, kEmbedF);
    float* x = res[0];
    const float* emb = embed.w;
    const int64_t Hh = H;
#pragma omp parallel for schedule(static) if (rows >= 64)
    for (int64_t t = 0; t < rows; ++t)
      std::memcpy(x + t * Hh, emb + int64_t{tokens[Z(t)]} * Hh, Z(Hh) * sizeof(float));
  }
  size_t moe_index = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    Layer& L = layers[Z(l)];
    AttentionForward(L, res[Z(l)], mid[Z(l)]);
    {
      Timer tm(this, kNormF);
      fast::RmsNormForward(mid[Z(l)], rows, H, L.ffn_norm.w, static_cast<float>(c.rms_norm_eps),
                           L.a->xn2.data(), L.a->rstd2.data());
    }
    float* out = res[Z(l + 1)];
    std::memcpy(out, mid[Z(l)], Z(rows * H) * sizeof(float));
    if (!L.moe) {
      DenseFfnForward(L, out);
      continue;
    }
    MoeForward(l, L, out);
    MoeLayerStats& st = stats[moe_index++];
    st.dropped = 0;
    for (int64_t a = 0; a < rows * K; ++a) st.dropped += L.a->kept[Z(a)] ? 0 : 1;
    for (int64_t e = 0; e < E; ++e) st.tokens_per_expert[Z(e)] = L.a->load[Z(e)];
    if (!decoding) {  // now: an inference-mode model reuses this layer's activations for the next
      Timer tr(this, kRouterF);
      const fast::RouterLossValues rv =
          fast::ComputeRouterLosses(L.a->rlogits.data(), rows, router, L.a->rb());
      router_losses[moe_index - 1] = rv;
      st.router_entropy = rv.entropy;
    }
  }
  // Decoding needs the logits of the last position only.
  const int64_t first = decoding ? rows - 1 : 0, n = rows - first;
  {
    Timer tm(this, kNormF);
    fast::RmsNormForward(res[Z(c.num_layers)] + first * H, n, H, final_norm.w,
                         static_cast<float>(c.rms_norm_eps), xn_f.data(), rstd_f.data());
  }
  Timer tm(this, kHeadF);
  fast::LinearForward(xn_f.data(), n, H, head.w, V, logits.data());
}

Status TrainModel::Impl::CheckTokens(std::span<const int32_t> tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= V)
      return InvalidArgument("token " + std::to_string(tokens[i]) + " at position " +
                             std::to_string(i) + " is outside the vocabulary [0, " +
                             std::to_string(V) + ")");
  return Status::Ok();
}

LossTerms TrainModel::Impl::Losses(std::span<const int32_t> targets, bool write_grad, float grad_scale) {
  LossTerms r;
  {
    Timer tm(this, kLossF);
    fast::OutputLossGrad g;
    g.write = write_grad;
    g.scale = grad_scale;
    g.output_z = coef.output_z;
    g.output_max_z = coef.output_max_z;
    const fast::OutputLossValues ov =
        fast::OutputLossForwardBackward(logits.data(), N, V, targets.data(), g, loss_rows.data());
    r.ce = ov.ce;
    r.output_z = ov.output_z;
    r.output_max_z = ov.output_max_z;
  }
  const auto moe_layers = static_cast<int64_t>(router_losses.size());
  for (const fast::RouterLossValues& rv : router_losses) {
    r.aux += rv.aux;
    r.router_max_z += rv.router_max_z;
    r.router_z += rv.router_z;
  }
  if (moe_layers > 0) {
    r.aux /= double(moe_layers);
    r.router_max_z /= double(moe_layers);
    r.router_z /= double(moe_layers);
  }
  r.total = r.ce + coef.aux * r.aux + coef.router_max_z * r.router_max_z + coef.router_z * r.router_z +
            coef.output_z * r.output_z + coef.output_max_z * r.output_max_z;
  return r;
}

void TrainModel::Impl::MoeBackward(Layer& L, float grad_scale) {
  const int64_t k = K, Hh = H;
  const int32_t* start = L.a->expert_start.data();
  const int64_t used = start[E];
  {
    Timer tm(this, kPermuteB);
    const float* dy = dx.data();
    const float* oe = L.a->oe.data();
    const float* prob = L.a->prob.data();
    const int32_t* slot_of = L.a->slot_of.data();
    float* dw = dweight.data();
    float* doe_ = doe.data();
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; ++t) {
      const float* d = dy + t * Hh;
      for (int64_t i = 0; i < k; ++i) {
        const int32_t sl = slot_of[t * k + i];
        if (sl < 0) {
          dw[t * k + i] = 0;
          continue;
        }
        const float* o = oe + int64_t{sl} * Hh;
        float* g = doe_ + int64_t{sl} * Hh;
        const float w = prob[t * k + i];
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t h = 0; h < Hh; ++h) {
          acc += d[h] * o[h];
          g[h] = w * d[h];
        }
        dw[t * k + i] = acc;
      }
    }
  }
  {
    Timer tm(this, kExpertGemmB);
    fast::GroupedLinearBackwardInput(doe.data(), start, E, H, L.edown_w.data(), Fe, dh.data());
    fast::GroupedLinearBackwardWeight(doe.data(), start, E, H, L.a->he.data(), Fe,
                                      L.edown_g.data());
  }
  {
    Timer tm(this, kSwiGluB);
    fast::SwiGluBackward(L.a->gue.data(), dh.data(), used, Fe, dgu.data());
  }
  {
    Timer tm(this, kExpertGemmB);
    fast::GroupedLinearBackwardWeight(dgu.data(), start, E, 2 * Fe, L.a->xe.data(), H,
                                      L.egu_g.data());
    fast::GroupedLinearBackwardInput(dgu.data(), start, E, 2 * Fe, L.egu_w.data(), H, dxe.data());
  }
  {
    Timer tm(this, kPermuteB);
    const float* dxe_ = dxe.data();
    const int32_t* slot_of = L.a->slot_of.data();
    float* out = dxn.data();
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; ++t) {
      float* o = out + t * Hh;
      for (int64_t h = 0; h < Hh; ++h) o[h] = 0;
      for (int64_t i = 0; i < k; ++i) {
        const int32_t sl = slot_of[t * k + i];
        if (sl < 0) continue;
        const float* src = dxe_ + int64_t{sl} * Hh;
#pragma omp simd
        for (int64_t h = 0; h < Hh; ++h) o[h] += src[h];
      }
    }
  }
  {
    Timer tm(this, kRouterB);
    const double per_layer = double(grad_scale) / double(MoeLayerCount(c));
    const fast::RouterGradScales gs{coef.aux * per_layer, coef.router_max_z * per_layer, coef.router_z * per_layer};
    fast::RouterBackward(L.a->rlogits.data(), N, router, L.a->rb(), dweight.data(), gs,
                         drlogits.data());
    fast::LinearBackwardWeight(drlogits.data(), N, E, L.a->xn2.data(), H, L.router.g);
    fast::LinearBackwardInput(drlogits.data(), N, E, L.router.w, H, dxn.data(), 1.0f);
  }
  if (Fs > 0) {
    {
      Timer tm(this, kPermuteB);
      const float* dy = dx.data();
      const float* sout = L.a->sout.data();
      const float* sgate = L.a->sgate.data();
      float* ds = doe.data();
      float* dg = dsgate.data();
#pragma omp parallel for schedule(static)
      for (int64_t t = 0; t < N; ++t) {
        const float g = fast::Sigmoid(sgate[t]);
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t h = 0; h < Hh; ++h) {
          acc += dy[t * Hh + h] * sout[t * Hh + h];
          ds[t * Hh + h] = g * dy[t * Hh + h];
        }
        dg[t] = acc * g * (1.0f - g);
      }
    }
    {
      Timer tm(this, kFfnGemmB);
      fast::LinearBackwardWeight(dsgate.data(), N, 1, L.a->xn2.data(), H, L.shared_router.g);
      fast::LinearBackwardInput(dsgate.data(), N, 1, L.shared_router.w, H, dxn.data(), 1.0f);
      fast::LinearBackwardInput(doe.data(), N, H, L.shared_down.w, Fs, dh.data());
      fast::LinearBackwardWeight(doe.data(), N, H, L.a->sh.data(), Fs, L.shared_down.g);
    }
    {
      Timer tm(this, kSwiGluB);
      fast::SwiGluBackward(L.a->sgu.data(), dh.data(), N, Fs, dgu.data());
    }
    Timer tm(this, kFfnGemmB);
    fast::LinearBackwardWeight(dgu.data(), N, 2 * Fs, L.a->xn2.data(), H, L.shared_gu.g);
    fast::LinearBackwardInput(dgu.data(), N, 2 * Fs, L.shared_gu.w, H, dxn.data(), 1.0f);
  }
}

void TrainModel::Impl::Backward(std::span<const int32_t> tokens, float grad_scale) {
  {
    Timer tm(this, kHeadB);
    // logits now hold d(loss)/d(logits).
    fast::LinearBackwardInput(logits.data(), N, V, head.w, H, dxn.data());
    fast::LinearBackwardWeight(logits.data(), N, V, xn_f.data(), H, head.g);
  }
  {
    Timer tm(this, kNormB);
    std::fill(dx.begin(), dx.end(), 0.0f);
    fast::RmsNormBackward(res[Z(c.num_layers)], rstd_f.data(), N, H, final_norm.w, dxn.data(),
                          dx.data(), final_norm.g);
  }
  for (int64_t l = c.num_layers - 1; l >= 0; --l) {
    Layer& L = layers[Z(l)];
    // dx is the gradient of res[l+1]; the FFN branch adds its input gradient through ffn_norm.
    if (L.moe) {
      MoeBackward(L, grad_scale);
    } else {
      {
        Timer tm(this, kFfnGemmB);
        fast::LinearBackwardInput(dx.data(), N, H, L.down.w, F, dh.data());
        fast::LinearBackwardWeight(dx.data(), N, H, L.a->h.data(), F, L.down.g);
      }
      {
        Timer tm(this, kSwiGluB);
        fast::SwiGluBackward(L.a->gu_act.data(), dh.data(), N, F, dgu.data());
      }
      Timer tm(this, kFfnGemmB);
      fast::LinearBackwardWeight(dgu.data(), N, 2 * F, L.a->xn2.data(), H, L.gu.g);
      fast::LinearBackwardInput(dgu.data(), N, 2 * F, L.gu.w, H, dxn.data());
    }
    {
      Timer tm(this, kNormB);
      fast::RmsNormBackward(mid[Z(l)], L.a->rstd2.data(), N, H, L.ffn_norm.w, dxn.data(), dx.data(),
                            L.ffn_norm.g);
    }
    // dx is now the gradient of mid[l] = res[l] + wo·attention.
    {
      Timer tm(this, kWoB);
      fast::LinearBackwardInput(dx.data(), N, H, L.wo.w, qd, datt.data());
      fast::LinearBackwardWeight(dx.data(), N, H, L.a->att.data(), qd, L.wo.g);
    }
    {
      Timer tm(this, kAttnB);
      fast::AttentionShape as{shape.micro_batch, shape.seq_len, c.num_heads, c.num_kv_heads, c.head_dim,
                              qkvd, qkvd, qd, std::min(threads, omp_get_max_threads())};
      fast::CausalAttentionBackward(as, L.a->qkv.data(), L.a->qkv.data() + qd,
                                    L.a->qkv.data() + qd + kvd, L.a->att.data(), L.a->lse.data(),
                                    datt.data(), dqkv.data(), dqkv.data() + qd,
                                    dqkv.data() + qd + kvd, attn_scratch.data());
    }
    {
      Timer tm(this, kRopeB);
      fast::RopeBackward(dqkv.data(), N, qkvd, c.num_heads + c.num_kv_heads, c.head_dim, shape.seq_len,
                         rope_cos.data(), rope_sin.data());
    }
    if (c.qk_norm == QkNorm::kPerHead) {
      Timer tm(this, kNormB);
      fast::HeadRmsNormBackward(L.a->q_raw.data(), L.a->q_rstd.data(), N, qkvd, c.num_heads,
                                c.head_dim, L.q_norm.w, dqkv.data(), L.q_norm.g);
      fast::HeadRmsNormBackward(L.a->k_raw.data(), L.a->k_rstd.data(), N, qkvd, c.num_kv_heads,
                                c.head_dim, L.k_norm.w, dqkv.data() + qd, L.k_norm.g);
    }
    {
      Timer tm(this, kQkvB);
      if (c.qkv_bias) fast::ColumnSumAccumulate(dqkv.data(), N, qkvd, qkvd, L.bqkv.g);
      fast::LinearBackwardWeight(dqkv.data(), N, qkvd, L.a->xn1.data(), H, L.wqkv.g);
      fast::LinearBackwardInput(dqkv.data(), N, qkvd, L.wqkv.w, H, dxn.data());
    }
    Timer tm(this, kNormB);
    fast::RmsNormBackward(res[Z(l)], L.a->rstd1.data(), N, H, L.attn_norm.w, dxn.data(), dx.data(),
                          L.attn_norm.g);
  }
  Timer tm(this, kEmbedB);
  // Sequential: rows with the same token add into the same embedding row in a fixed order.
  for (int64_t t = 0; t < N; ++t) {
    float* g = embed.g + int64_t{tokens[Z(t)]} * H;
    const float* d = dx.data() + t * H;
    for (int64_t h = 0; h < H; ++h) g[h] += d[h];
  }
}

Result<LossTerms> TrainModel::ForwardBackward(std::span<const int32_t> tokens, std::span<const int32_t> targets,
                                              float grad_scale) {
  Impl& s = *impl_;
  if (!s.shape.training)
    return InternalError("ForwardBackward on a TrainModel created for inference");
  ESCALE_RETURN_IF_ERROR(s.CheckBatch(tokens, targets));
  fast::UseSingleThreadedBlas();  // again: someone (MeasureSgemmRate) may have changed it since Create
  s.Forward(tokens);
  const LossTerms r = s.Losses(targets, /*write_grad=*/true, grad_scale);
  s.Backward(tokens, grad_scale);
  return r;
}

Result<LossTerms> TrainModel::Evaluate(std::span<const int32_t> tokens, std::span<const int32_t> targets) {
  Impl& s = *impl_;
  if (s.shape.kv_positions > 0) return InternalError("Evaluate on a TrainModel made for decoding");
  ESCALE_RETURN_IF_ERROR(s.CheckBatch(tokens, targets));
  fast::UseSingleThreadedBlas();
  s.Forward(tokens);
  return s.Losses(targets, /*write_grad=*/false, 1.0f);
}

Result<std::span<const float>> TrainModel::Decode(std::span<const int32_t> tokens) {
  Impl& s = *impl_;
  const auto n = static_cast<int64_t>(tokens.size());
  if (s.shape.kv_positions == 0)
    return InternalError("Decode on a TrainModel without a key/value cache");
  if (n == 0) return InvalidArgument("nothing to decode");
  if (s.pos + n > s.shape.kv_positions)
    return InvalidArgument("the sequence would reach " + std::to_string(s.pos + n) +
                           " tokens, past the cache of " + std::to_string(s.shape.kv_positions));
  ESCALE_RETURN_IF_ERROR(s.CheckTokens(tokens));
  fast::UseSingleThreadedBlas();
  s.decoding = true;
  for (int64_t at = 0; at < n; at += s.N) {
    s.rows = std::min(s.N, n - at);
    s.Forward(tokens.subspan(Z(at), Z(s.rows)));
    s.pos += s.rows;
  }
  s.decoding = false;
  s.rows = s.N;
  return std::span<const float>(s.logits.data(), Z(s.V));
}

int64_t TrainModel::position() const {
  return impl_->pos;
}
int64_t TrainModel::kv_positions() const {
  return impl_->shape.kv_positions;
}
void TrainModel::Truncate(int64_t n) {
  impl_->pos = std::clamp<int64_t>(n, 0, impl_->pos);
}

void TrainModel::ZeroGrads() { std::fill(impl_->grads.begin(), impl_->grads.end(), 0.0f); }

std::span<TrainModel::Param> TrainModel::params() { return impl_->params; }
std::span<const TrainModel::Param> TrainModel::params() const {
  return impl_->params;
}

const std::vector<MoeLayerStats>& TrainModel::moe_stats() const { return impl_->stats; }

TensorMap TrainModel::ExportTensors() const {
  TensorMap m;
  for (size_t i = 0; i < impl_->specs.size(); ++i) {
    const TensorSpec& spec = impl_->specs[i];
    Tensor t = Tensor::Zeros(DType::kF32, spec.shape);
    std::memcpy(t.mutable_bytes(), impl_->weights.data() + impl_->offsets[i], t.nbytes());
    m.emplace(spec.name, std::move(t));
  }
  return m;
}

const ModelConfig& TrainModel::config() const { return impl_->c; }
BatchShape TrainModel::shape() const { return impl_->shape; }
std::span<const float> TrainModel::logits() const { return impl_->logits; }

void TrainModel::PoisonActivationsForTesting() {
  Impl& s = *impl_;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto poison = [nan](Buf& b) { std::fill(b.begin(), b.end(), nan); };
  for (Layer& L : s.layers) {
    for (Buf* b :
         {&L.a->rstd1,  &L.a->xn1, &L.a->qkv,     &L.a->att,     &L.a->lse,  &L.a->rstd2, &L.a->xn2,
          &L.a->gu_act, &L.a->h,   &L.a->rlogits, &L.a->softmax, &L.a->prob, &L.a->xe,    &L.a->gue,
          &L.a->he,     &L.a->oe,  &L.a->sgu,     &L.a->sh,      &L.a->sout, &L.a->sgate})
      poison(*b);
    std::fill(L.a->expert.begin(), L.a->expert.end(), -7);
    std::fill(L.a->slot_of.begin(), L.a->slot_of.end(), -7);
    std::fill(L.a->slot_row.begin(), L.a->slot_row.end(), -7);
    std::fill(L.a->expert_start.begin(), L.a->expert_start.end(), -7);
    std::fill(L.a->kept.begin(), L.a->kept.end(), uint8_t{7});
    std::fill(L.a->load.begin(), L.a->load.end(), int64_t{-7});
  }
  for (Buf& b : s.res_store) poison(b);
  for (Buf& b : s.mid_store) poison(b);
  for (Buf* b : {&s.rstd_f, &s.xn_f, &s.logits, &s.dx, &s.dxn, &s.dqkv, &s.datt, &s.dgu, &s.dh, &s.doe, &s.dxe,
                 &s.dweight, &s.drlogits, &s.dsgate, &s.attn_scratch})
    poison(*b);
  std::fill(s.loss_rows.begin(), s.loss_rows.end(), std::numeric_limits<double>::quiet_NaN());
  std::fill(s.route_scratch.begin(), s.route_scratch.end(), -7);
}

void TrainModel::SetProfiling(bool on) {
  impl_->profiling = on;
  if (on) impl_->prof.fill(0.0);
}

std::vector<std::pair<std::string, double>> TrainModel::Profile() const {
  std::vector<std::pair<std::string, double>> out;
  for (int i = 0; i < kOpCount; ++i) out.emplace_back(kOpNames[Z(i)], impl_->prof[Z(i)]);
  return out;
}

Result<std::unique_ptr<TrainModel>> CreateDecoder(
    const ModelConfig& config, const TensorMap& weights, int64_t max_seq,
    const std::function<void(const Tensor&)>& copied) {
  if (max_seq < 1) return InvalidArgument("the decoder needs room for at least one position");
  BatchShape shape;
  shape.seq_len = std::min<int64_t>(max_seq, 256);
  shape.training = false;
  shape.kv_positions = max_seq;
  return TrainModel::Create(config, weights, shape, LossCoefficients{}, copied);
}

}  // namespace escale
