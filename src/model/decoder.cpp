#include "model/decoder.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/layout.h"
#include "model/rope.h"
#include "ops/cpu/fast_kernels.h"
#include "ops/cpu/fast_routing.h"

namespace escale {

namespace {

using Vec = std::vector<float>;
size_t Z(int64_t i) {
  return static_cast<size_t>(i);
}

void Linear(const float* x, int64_t M, int64_t K, const float* W, int64_t N, float* y) {
  ops::fast::LinearForwardAnyRows(x, M, K, W, N, y);
}

void AddBias(float* y, int64_t M, int64_t N, const Vec& b) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) y[m * N + n] += b[Z(n)];
}

struct Ffn {
  Vec gate_up;  // [2F, H]: gate rows then up rows, so one product gives both
  Vec down;     // [H, F]
  int64_t F = 0;
};

struct Layer {
  Vec attn_norm, ffn_norm, wqkv, bqkv, wo;  // wqkv [q+2kv, H]
  Vec q_norm, k_norm;                       // QkNorm::kPerHead
  Ffn ffn;                                  // dense layers
  Vec router;                               // [E, H]
  std::vector<Ffn> experts;
  Ffn shared;
  Vec shared_router;     // [1, H]
  Vec k_cache, v_cache;  // [max_seq, kv]
};

}  // namespace

struct Decoder::Impl {
  ModelConfig c;
  int64_t max_seq = 0, pos = 0;
  Vec embed, norm, lm_head;  // lm_head empty when tied
  std::vector<Layer> layers;
  Vec rope_cos, rope_sin;  // [max_seq, hd/2]
  // Scratch, grown to the longest chunk seen.
  Vec x, xn, qkv, att, y, gu, h, scores, logits, router_logits, expert_out, rstd, prob, softmax,
      gate, shared, qk_raw, qk_rstd;
  std::vector<int32_t> expert, route_scratch;
  std::vector<uint8_t> kept;
  std::vector<int64_t> load;
};

namespace {

Status Load(const TensorMap& w, const std::string& name, int64_t numel, Vec& out) {
  auto it = w.find(name);
  if (it == w.end()) return NotFound("the model lacks tensor " + name);
  if (it->second.numel() != numel) return FormatError("tensor " + name + " has the wrong size");
  ESCALE_ASSIGN_OR_RETURN(out, ToF32Vector(it->second));
  return Status::Ok();
}

Status LoadFfn(const TensorMap& w, const std::string& prefix, int64_t H, int64_t F, Ffn& f) {
  Vec gate, up;
  ESCALE_RETURN_IF_ERROR(Load(w, prefix + "gate", F * H, gate));
  ESCALE_RETURN_IF_ERROR(Load(w, prefix + "up", F * H, up));
  ESCALE_RETURN_IF_ERROR(Load(w, prefix + "down", H * F, f.down));
  f.gate_up = std::move(gate);
  f.gate_up.insert(f.gate_up.end(), up.begin(), up.end());
  f.F = F;
  return Status::Ok();
}

// out[M,H] (+)= SwiGLU FFN of x[M,H].
void RunFfn(Decoder::Impl& s, const Ffn& f, const float* x, int64_t M, float* out) {
  const int64_t H = s.c.hidden_size, F = f.F;
  if (s.gu.size() < Z(M * 2 * F)) s.gu.resize(Z(M * 2 * F));
  if (s.h.size() < Z(M * F)) s.h.resize(Z(M * F));
  Linear(x, M, H, f.gate_up.data(), 2 * F, s.gu.data());
  ops::fast::SwiGluForward(s.gu.data(), M, F, s.h.data());
  Linear(s.h.data(), M, F, f.down.data(), H, out);
}

}  // namespace

Decoder::Decoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Decoder::~Decoder() = default;
int64_t Decoder::position() const {
  return impl_->pos;
}
int64_t Decoder::max_seq() const {
  return impl_->max_seq;
}
const ModelConfig& Decoder::config() const {
  return impl_->c;
}
void Decoder::Reset() {
  impl_->pos = 0;
}
void Decoder::Truncate(int64_t n) {
  impl_->pos = std::clamp<int64_t>(n, 0, impl_->pos);
}

Result<std::unique_ptr<Decoder>> Decoder::Create(const ModelConfig& c, const TensorMap& w,
                                                 int64_t max_seq) {
  ESCALE_RETURN_IF_ERROR(c.Validate());
  if (max_seq < 1) return InvalidArgument("the decoder needs room for at least one position");
  ops::fast::UseSingleThreadedBlas();
  auto s = std::make_unique<Impl>();
  s->c = c;
  s->c.moe.capacity_factor = 0;
  s->max_seq = max_seq;
  const int64_t H = c.hidden_size, V = c.vocab_size, q = c.q_dim(), kv = c.kv_dim();
  ESCALE_RETURN_IF_ERROR(Load(w, "embed", V * H, s->embed));
  ESCALE_RETURN_IF_ERROR(Load(w, "norm", H, s->norm));
  if (!c.tie_word_embeddings) ESCALE_RETURN_IF_ERROR(Load(w, "lm_head", V * H, s->lm_head));
  s->layers.resize(Z(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    Layer& L = s->layers[Z(l)];
    auto name = [&](const char* n) { return LayerTensorName(l, n); };
    ESCALE_RETURN_IF_ERROR(Load(w, name("attn_norm"), H, L.attn_norm));
    ESCALE_RETURN_IF_ERROR(Load(w, name("ffn_norm"), H, L.ffn_norm));
    Vec wq, wk, wv;
    ESCALE_RETURN_IF_ERROR(Load(w, name("wq"), q * H, wq));
    ESCALE_RETURN_IF_ERROR(Load(w, name("wk"), kv * H, wk));
    ESCALE_RETURN_IF_ERROR(Load(w, name("wv"), kv * H, wv));
    L.wqkv = std::move(wq);
    L.wqkv.insert(L.wqkv.end(), wk.begin(), wk.end());
    L.wqkv.insert(L.wqkv.end(), wv.begin(), wv.end());
    if (c.qkv_bias) {
      Vec bq, bk, bv;
      ESCALE_RETURN_IF_ERROR(Load(w, name("bq"), q, bq));
      ESCALE_RETURN_IF_ERROR(Load(w, name("bk"), kv, bk));
      ESCALE_RETURN_IF_ERROR(Load(w, name("bv"), kv, bv));
      L.bqkv = std::move(bq);
      L.bqkv.insert(L.bqkv.end(), bk.begin(), bk.end());
      L.bqkv.insert(L.bqkv.end(), bv.begin(), bv.end());
    }
    if (c.qk_norm == QkNorm::kPerHead) {
      ESCALE_RETURN_IF_ERROR(Load(w, name("q_norm"), c.head_dim, L.q_norm));
      ESCALE_RETURN_IF_ERROR(Load(w, name("k_norm"), c.head_dim, L.k_norm));
    }
    ESCALE_RETURN_IF_ERROR(Load(w, name("wo"), H * q, L.wo));
    if (c.IsMoeLayer(l)) {
      const int64_t E = c.moe.num_experts;
      ESCALE_RETURN_IF_ERROR(Load(w, name("moe.router"), E * H, L.router));
      L.experts.resize(Z(E));
      for (int64_t e = 0; e < E; ++e)
        ESCALE_RETURN_IF_ERROR(LoadFfn(w, name(("moe.experts." + std::to_string(e) + ".").c_str()),
                                       H, c.moe.expert_intermediate, L.experts[Z(e)]));
      if (c.moe.shared_intermediate > 0) {
        ESCALE_RETURN_IF_ERROR(
            LoadFfn(w, name("moe.shared."), H, c.moe.shared_intermediate, L.shared));
        ESCALE_RETURN_IF_ERROR(Load(w, name("moe.shared_router"), H, L.shared_router));
      }
    } else {
      ESCALE_RETURN_IF_ERROR(LoadFfn(w, name("ffn."), H, c.intermediate_size, L.ffn));
    }
    L.k_cache.resize(Z(max_seq * kv));
    L.v_cache.resize(Z(max_seq * kv));
  }
  ESCALE_ASSIGN_OR_RETURN(RopeTables rope, ComputeRopeTables(c, max_seq));
  s->rope_cos = std::move(rope.cos);
  s->rope_sin = std::move(rope.sin);
  s->logits.resize(Z(V));
  return std::unique_ptr<Decoder>(new Decoder(std::move(s)));
}

Result<std::span<const float>> Decoder::Append(std::span<const int32_t> tokens) {
  Impl& s = *impl_;
  const ModelConfig& c = s.c;
  const auto M = static_cast<int64_t>(tokens.size());
  if (M == 0) return InvalidArgument("nothing to append");
  if (s.pos + M > s.max_seq)
    return InvalidArgument("the sequence would reach " + std::to_string(s.pos + M) +
                           " tokens, past the cache of " + std::to_string(s.max_seq));
  for (int32_t t : tokens)
    if (t < 0 || t >= c.vocab_size)
      return InvalidArgument("token " + std::to_string(t) + " is outside the vocabulary");
  const int64_t H = c.hidden_size, V = c.vocab_size, q = c.q_dim(), kv = c.kv_dim(),
                hd = c.head_dim;
  const int64_t nh = c.num_heads, group = c.num_heads / c.num_kv_heads, P = s.pos;
  const float eps = static_cast<float>(c.rms_norm_eps);
  auto grow = [](Vec& v, int64_t n) {
    if (v.size() < Z(n)) v.resize(Z(n));
  };
  grow(s.x, M * H);
  grow(s.xn, M * H);
  grow(s.qkv, M * (q + 2 * kv));
  grow(s.att, M * q);
  grow(s.y, M * H);
  grow(s.scores, (P + M) * omp_get_max_threads());
  grow(s.rstd, M);
  if (c.qk_norm == QkNorm::kPerHead) {
    grow(s.qk_raw, M * q);  // scratch: the decoder keeps no tape
    grow(s.qk_rstd, M * nh);
  }
  Vec& rstd = s.rstd;
  for (int64_t m = 0; m < M; ++m)
    std::copy_n(s.embed.data() + tokens[Z(m)] * H, H, s.x.data() + m * H);

  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (Layer& L : s.layers) {
    ops::fast::RmsNormForward(s.x.data(), M, H, L.attn_norm.data(), eps, s.xn.data(), rstd.data());
    const int64_t width = q + 2 * kv;
    Linear(s.xn.data(), M, H, L.wqkv.data(), width, s.qkv.data());
    if (c.qkv_bias) AddBias(s.qkv.data(), M, width, L.bqkv);
    if (c.qk_norm == QkNorm::kPerHead) {
      ops::fast::HeadRmsNormForward(s.qkv.data(), M, width, nh, hd, L.q_norm.data(), eps,
                                    s.qk_raw.data(), s.qk_rstd.data());
      ops::fast::HeadRmsNormForward(s.qkv.data() + q, M, width, c.num_kv_heads, hd, L.k_norm.data(),
                                    eps, s.qk_raw.data(), s.qk_rstd.data());
    }
    // Rotate q and k for positions P..P+M-1 (tables offset to P; seq_len past M so row = offset).
    const int64_t half = hd / 2;
    ops::fast::RopeForward(s.qkv.data(), M, width, nh, hd, M, s.rope_cos.data() + P * half,
                           s.rope_sin.data() + P * half);
    ops::fast::RopeForward(s.qkv.data() + q, M, width, c.num_kv_heads, hd, M,
                           s.rope_cos.data() + P * half, s.rope_sin.data() + P * half);
    for (int64_t m = 0; m < M; ++m) {
      std::copy_n(s.qkv.data() + m * width + q, kv, L.k_cache.data() + (P + m) * kv);
      std::copy_n(s.qkv.data() + m * width + q + kv, kv, L.v_cache.data() + (P + m) * kv);
    }
    // Causal attention of each new row over the cache up to and including its own position.
#pragma omp parallel for collapse(2) schedule(static) if (M * nh * (P + M) * hd > (1 << 16))
    for (int64_t m = 0; m < M; ++m)
      for (int64_t h = 0; h < nh; ++h) {
        float* sc = s.scores.data() + omp_get_thread_num() * (P + M);
        const float* qv = s.qkv.data() + m * width + h * hd;
        const int64_t kvh = h / group, n = P + m + 1;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          const float* kj = L.k_cache.data() + j * kv + kvh * hd;
          float d = 0;
          for (int64_t i = 0; i < hd; ++i) d += qv[i] * kj[i];
          sc[j] = d * scale;
          mx = std::max(mx, sc[j]);
        }
        float sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        float* o = s.att.data() + m * q + h * hd;
        std::fill_n(o, hd, 0.0f);
        for (int64_t j = 0; j < n; ++j) {
          const float p = sc[j] / sum;
          const float* vj = L.v_cache.data() + j * kv + kvh * hd;
          for (int64_t i = 0; i < hd; ++i) o[i] += p * vj[i];
        }
      }
    Linear(s.att.data(), M, q, L.wo.data(), H, s.y.data());
    for (int64_t i = 0; i < M * H; ++i) s.x[Z(i)] += s.y[Z(i)];

    ops::fast::RmsNormForward(s.x.data(), M, H, L.ffn_norm.data(), eps, s.xn.data(), rstd.data());
    if (L.experts.empty()) {
      RunFfn(s, L.ffn, s.xn.data(), M, s.y.data());
    } else {
      const int64_t E = c.moe.num_experts, k = c.moe.top_k;
      grow(s.router_logits, M * E);
      grow(s.expert_out, H);
      Linear(s.xn.data(), M, H, L.router.data(), E, s.router_logits.data());
      grow(s.prob, M * k);
      grow(s.softmax, M * E);
      auto& expert = s.expert;
      auto& kept = s.kept;
      auto& prob = s.prob;
      expert.resize(std::max(expert.size(), Z(M * k)));
      s.route_scratch.resize(std::max(s.route_scratch.size(), Z(M * k + E + 1)));
      kept.resize(std::max(kept.size(), Z(M * k)));
      s.load.resize(Z(E));
      ops::fast::RouterSpec spec{E, k, c.moe.router == RouterType::kMixtral, 0.0, false};
      ops::fast::RoutingBuffers rb{expert.data(), prob.data(), kept.data(), s.softmax.data(),
                                   s.load.data()};
      ops::fast::RouteTokens(s.router_logits.data(), M, M, spec, rb, s.route_scratch.data());
      std::fill_n(s.y.data(), M * H, 0.0f);
      for (int64_t a = 0; a < M * k; ++a) {
        if (!kept[Z(a)]) continue;
        const int64_t m = a / k;
        RunFfn(s, L.experts[Z(expert[Z(a)])], s.xn.data() + m * H, 1, s.expert_out.data());
        for (int64_t i = 0; i < H; ++i) s.y[Z(m * H + i)] += prob[Z(a)] * s.expert_out[Z(i)];
      }
      if (c.moe.shared_intermediate > 0) {
        grow(s.gate, M);
        grow(s.shared, M * H);
        Vec& gate = s.gate;
        Vec& shared = s.shared;
        RunFfn(s, L.shared, s.xn.data(), M, shared.data());
        Linear(s.xn.data(), M, H, L.shared_router.data(), 1, gate.data());
        for (int64_t m = 0; m < M; ++m) {
          const float g = ops::fast::Sigmoid(gate[Z(m)]);
          for (int64_t i = 0; i < H; ++i) s.y[Z(m * H + i)] += g * shared[Z(m * H + i)];
        }
      }
    }
    for (int64_t i = 0; i < M * H; ++i) s.x[Z(i)] += s.y[Z(i)];
  }
  // Only the last position's logits are needed.
  ops::fast::RmsNormForward(s.x.data() + (M - 1) * H, 1, H, s.norm.data(), eps, s.xn.data(),
                            rstd.data());
  Linear(s.xn.data(), 1, H, c.tie_word_embeddings ? s.embed.data() : s.lm_head.data(), V,
         s.logits.data());
  s.pos += M;
  return std::span<const float>(s.logits.data(), Z(V));
}

}  // namespace escale
