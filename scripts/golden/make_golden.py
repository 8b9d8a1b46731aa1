#!/usr/bin/python3
"""Writes the golden files of tests/golden/data/ from an independent PyTorch implementation.

Run with Debian's interpreter (it has torch):  /usr/bin/python3 scripts/golden/make_golden.py

The model here is written from docs/method.md §1, §3 and §4, not by calling escale: a
Llama-family decoder (RMSNorm, RoPE rotate-half, causal GQA attention with optional QKV bias, SwiGLU,
final norm, LM head) and Mixtral-style MoE layers (top-k on the router logits, softmax over the k
selected, capacity ceil(CF*T*k/E) per expert per sequence, overflow dropped by lowest routing weight,
ties to the earlier assignment, or the latest positions first with drop_policy "position"); st routing
(softmax over all E, top-k, no renormalisation); a Qwen2-MoE shared expert sigmoid(s.x)*SwiGLU_s(x);
layers listed in dense_layers keep a dense FFN. Losses: mean cross entropy over counted targets (target < 0 is not
counted), Switch aux E*sum_e f_e*P_e (f_e counted before dropping over N*k assignments), router max-z
mean_t(max_e l)^2, router z mean_t lse(l)^2, output z mean_t lse(y)^2, output max-z mean_t(max_v y)^2;
router terms averaged over MoE layers. Autograd gives every parameter gradient. Everything is float64.

File format "escale-golden" version 1 (JSON):
  {"format": "escale-golden", "version": 1, "name": str,
   "config": {vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads,
              head_dim, rope_theta, rms_norm_eps, qkv_bias, tie_word_embeddings,
              qk_norm (optional): "per_head" (Qwen3: RMSNorm of each q and k head before RoPE),
              moe: null | {num_experts, top_k, expert_intermediate, router: "mixtral"|"st",
                           capacity_factor, drop_policy: "probability"|"position",
                           shared_intermediate, dense_layers: [layer indices]}},
   "loss_coefficients": {aux, router_max_z, router_z, output_z, output_max_z},
   "seq_len": T, "tokens": [B*T ints], "targets": [B*T ints],
   "tensors": {canonical name: array},
   "expected": {"loss": {total, ce, aux, router_max_z, router_z, output_z, output_max_z},
                "dropped_assignments": int, "logits": array, "grads": {canonical name: array}}}
  where array = {"shape": [dims], "f64": hex string of the row-major little-endian IEEE-754
  binary64 values, 16 hex digits per value}. Loss values are hex-encoded the same way
  ({"f64": ...}, one value) so nothing is lost to decimal printing.
"""
import json
import math
import os
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden", "data")


def hexify(t):
    flat = t.detach().reshape(-1).tolist()
    return {"shape": list(t.shape), "f64": struct.pack("<%dd" % len(flat), *flat).hex()}


def hex_scalar(v):
    return {"f64": struct.pack("<d", float(v)).hex()}


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(x, theta):
    # x [B, heads, T, hd]; inv_freq[j] = theta^(-2j/hd); emb = cat(freqs, freqs)
    T, hd = x.shape[-2], x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def swiglu(x, gate, up, down):
    return torch.nn.functional.silu(x @ gate.T) * (x @ up.T) @ down.T


def attention(cfg, p, l, x):
    B, T, H = x.shape
    nh, nkv, hd = cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]
    pre = "layers.%d." % l
    q = x @ p[pre + "wq"].T
    k = x @ p[pre + "wk"].T
    v = x @ p[pre + "wv"].T
    if cfg["qkv_bias"]:
        q = q + p[pre + "bq"]
        k = k + p[pre + "bk"]
        v = v + p[pre + "bv"]
    q = q.view(B, T, nh, hd)
    k = k.view(B, T, nkv, hd)
    if cfg.get("qk_norm") == "per_head":  # Qwen3: each head's hd values normalised, before RoPE
        q = rms_norm(q, p[pre + "q_norm"], cfg["rms_norm_eps"])
        k = rms_norm(k, p[pre + "k_norm"], cfg["rms_norm_eps"])
    q = q.transpose(1, 2)
    k = k.transpose(1, 2)
    v = v.view(B, T, nkv, hd).transpose(1, 2)
    q, k = rope(q, cfg["rope_theta"]), rope(k, cfg["rope_theta"])
    # KV head j serves query heads j*g .. j*g+g-1.
    g = nh // nkv
    k = k.repeat_interleave(g, dim=1)
    v = v.repeat_interleave(g, dim=1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    s = s.masked_fill(~mask, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v
    return o.transpose(1, 2).reshape(B, T, nh * hd) @ p[pre + "wo"].T


def moe(cfg, p, l, x, stats):
    m = cfg["moe"]
    E, k, cf = m["num_experts"], m["top_k"], m["capacity_factor"]
    B, T, H = x.shape
    pre = "layers.%d.moe." % l
    logits = x @ p[pre + "router"].T  # [B, T, E]
    if m["router"] == "mixtral":
        top_val, top_idx = torch.topk(logits, k, dim=-1)  # descending
        weights = torch.softmax(top_val, dim=-1)  # softmax over the k selected logits
    else:
        weights, top_idx = torch.topk(torch.softmax(logits, dim=-1), k, dim=-1)  # no renormalisation
    keep = torch.ones(B, T, k, dtype=torch.bool)
    if cf > 0:
        cap = math.ceil(cf * T * k / E)
        for b in range(B):
            for e in range(E):
                assigned = [(t, i) for t in range(T) for i in range(k) if int(top_idx[b, t, i]) == e]
                if m["drop_policy"] == "probability":
                    # highest weight first; equal weights keep the earlier assignment
                    assigned.sort(key=lambda ti: (-float(weights[b, ti[0], ti[1]]), ti[0] * k + ti[1]))
                for (t, i) in assigned[cap:]:
                    keep[b, t, i] = False
                    stats["dropped"] += 1
    out = torch.zeros_like(x)
    for b in range(B):
        for t in range(T):
            for i in range(k):
                if not keep[b, t, i]:
                    continue
                e = int(top_idx[b, t, i])
                ep = pre + "experts.%d." % e
                out[b, t] = out[b, t] + weights[b, t, i] * swiglu(x[b, t], p[ep + "gate"], p[ep + "up"], p[ep + "down"])
    if m["shared_intermediate"] > 0:
        gate = torch.sigmoid(x @ p[pre + "shared_router"].T)  # [B, T, 1]
        out = out + gate * swiglu(x, p[pre + "shared.gate"], p[pre + "shared.up"], p[pre + "shared.down"])
    flat = logits.reshape(B * T, E)
    probs = torch.softmax(flat, dim=-1)
    counts = torch.zeros(E)
    for e in top_idx.reshape(-1).tolist():
        counts[e] += 1
    f = counts / (B * T * k)
    stats["aux"].append(E * (f * probs.mean(0)).sum())
    stats["router_max_z"].append((flat.max(-1).values ** 2).mean())
    stats["router_z"].append((torch.logsumexp(flat, -1) ** 2).mean())
    return out


def is_moe_layer(cfg, l):
    return cfg["moe"] is not None and l not in cfg["moe"]["dense_layers"]


def forward_loss(cfg, p, tokens, targets, coef):
    stats = {"dropped": 0, "aux": [], "router_max_z": [], "router_z": []}
    x = p["embed"][tokens]  # [B, T, H]
    eps = cfg["rms_norm_eps"]
    for l in range(cfg["num_layers"]):
        pre = "layers.%d." % l
        x = x + attention(cfg, p, l, rms_norm(x, p[pre + "attn_norm"], eps))
        h = rms_norm(x, p[pre + "ffn_norm"], eps)
        if is_moe_layer(cfg, l):
            x = x + moe(cfg, p, l, h, stats)
        else:
            x = x + swiglu(h, p[pre + "ffn.gate"], p[pre + "ffn.up"], p[pre + "ffn.down"])
    x = rms_norm(x, p["norm"], eps)
    head = p["embed"] if cfg["tie_word_embeddings"] else p["lm_head"]
    logits = x @ head.T  # [B, T, V]
    V = logits.shape[-1]
    flat, tgt = logits.reshape(-1, V), targets.reshape(-1)
    counted = tgt >= 0
    lse = torch.logsumexp(flat[counted], -1)
    ce = (lse - flat[counted].gather(1, tgt[counted].unsqueeze(1)).squeeze(1)).mean()
    terms = {
        "ce": ce,
        "output_z": (lse ** 2).mean(),
        "output_max_z": (flat[counted].max(-1).values ** 2).mean(),
    }
    for name in ("aux", "router_max_z", "router_z"):
        terms[name] = torch.stack(stats[name]).mean() if stats[name] else torch.zeros(())
    total = terms["ce"]
    for name in ("aux", "router_max_z", "router_z", "output_z", "output_max_z"):
        total = total + coef[name] * terms[name]
    terms["total"] = total
    return logits, terms, stats["dropped"]


def canonical_shapes(cfg):
    V, H, L = cfg["vocab_size"], cfg["hidden_size"], cfg["num_layers"]
    q, kv = cfg["num_heads"] * cfg["head_dim"], cfg["num_kv_heads"] * cfg["head_dim"]
    shapes = {"embed": (V, H)}
    for l in range(L):
        pre = "layers.%d." % l
        shapes[pre + "attn_norm"] = (H,)
        shapes[pre + "wq"], shapes[pre + "wk"], shapes[pre + "wv"] = (q, H), (kv, H), (kv, H)
        if cfg["qkv_bias"]:
            shapes[pre + "bq"], shapes[pre + "bk"], shapes[pre + "bv"] = (q,), (kv,), (kv,)
        if cfg.get("qk_norm") == "per_head":
            shapes[pre + "q_norm"], shapes[pre + "k_norm"] = (cfg["head_dim"],), (cfg["head_dim"],)
        shapes[pre + "wo"] = (H, q)
        shapes[pre + "ffn_norm"] = (H,)
        if is_moe_layer(cfg, l):
            m = cfg["moe"]
            shapes[pre + "moe.router"] = (m["num_experts"], H)
            for e in range(m["num_experts"]):
                ep = pre + "moe.experts.%d." % e
                Fe = m["expert_intermediate"]
                shapes[ep + "gate"], shapes[ep + "up"], shapes[ep + "down"] = (Fe, H), (Fe, H), (H, Fe)
            Fs = m["shared_intermediate"]
            if Fs > 0:
                sp = pre + "moe.shared."
                shapes[sp + "gate"], shapes[sp + "up"], shapes[sp + "down"] = (Fs, H), (Fs, H), (H, Fs)
                shapes[pre + "moe.shared_router"] = (1, H)
        else:
            F = cfg["intermediate_size"]
            shapes[pre + "ffn.gate"], shapes[pre + "ffn.up"], shapes[pre + "ffn.down"] = (F, H), (F, H), (H, F)
    shapes["norm"] = (H,)
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head"] = (V, H)
    return shapes


def make(name, cfg, coef, seed, batch, seq_len):
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for pname, shape in canonical_shapes(cfg).items():
        if pname.endswith("norm"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif pname.endswith("router") and not pname.endswith("shared_router"):
            t = 0.5 * torch.randn(shape, generator=gen)
        else:
            t = 0.2 * torch.randn(shape, generator=gen)
        params[pname] = t.requires_grad_(True)
    V = cfg["vocab_size"]
    tokens = torch.randint(0, V, (batch, seq_len), generator=gen)
    targets = torch.randint(0, V, (batch, seq_len), generator=gen)
    targets[0, 2] = -1  # one position not counted
    logits, terms, dropped = forward_loss(cfg, params, tokens, targets, coef)
    terms["total"].backward()
    doc = {
        "format": "escale-golden",
        "version": 1,
        "name": name,
        "config": cfg,
        "loss_coefficients": coef,
        "seq_len": seq_len,
        "tokens": tokens.reshape(-1).tolist(),
        "targets": targets.reshape(-1).tolist(),
        "tensors": {k: hexify(v) for k, v in params.items()},
        "expected": {
            "loss": {k: hex_scalar(v.item()) for k, v in terms.items()},
            "dropped_assignments": dropped,
            "logits": hexify(logits.reshape(batch * seq_len, V)),
            "grads": {k: hexify(v.grad) for k, v in params.items()},
        },
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, name + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    print("%s: loss %.10f (ce %.10f), dropped %d, %d bytes" % (
        path, terms["total"].item(), terms["ce"].item(), dropped, os.path.getsize(path)))


def main():
    base = {
        "vocab_size": 32, "hidden_size": 16, "intermediate_size": 24, "num_layers": 2,
        "num_heads": 4, "num_kv_heads": 2, "head_dim": 4, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6, "qkv_bias": True, "tie_word_embeddings": False, "moe": None,
    }
    zero = {"aux": 0.0, "router_max_z": 0.0, "router_z": 0.0, "output_z": 0.0, "output_max_z": 0.0}
    dense_coef = dict(zero, output_z=1e-2, output_max_z=1e-2)
    make("dense_gqa_bias", base, dense_coef, seed=1234, batch=2, seq_len=6)

    moe_cfg = dict(base, qkv_bias=False, intermediate_size=0, moe={
        "num_experts": 4, "top_k": 2, "expert_intermediate": 12, "router": "mixtral",
        "capacity_factor": 1.0, "drop_policy": "probability", "shared_intermediate": 0, "dense_layers": []})
    moe_coef = dict(zero, aux=1e-2, router_max_z=1e-2, router_z=1e-2)
    make("moe_mixtral_top2", moe_cfg, moe_coef, seed=4321, batch=2, seq_len=6)

    # Qwen2-MoE style: st routing, shared expert, tied head, layer 0 dense, position dropping.
    st_cfg = dict(base, tie_word_embeddings=True, intermediate_size=20, moe={
        "num_experts": 4, "top_k": 2, "expert_intermediate": 8, "router": "st",
        "capacity_factor": 1.0, "drop_policy": "position", "shared_intermediate": 10, "dense_layers": [0]})
    st_coef = dict(aux=5e-2, router_max_z=1e-2, router_z=2e-2, output_z=1e-3, output_max_z=1e-3)
    make("moe_st_shared_tied", st_cfg, st_coef, seed=777, batch=2, seq_len=5)

    # Qwen3-MoE style: per-head q/k norm, no biases, renormalised top-k, layer 1 dense, head_dim 8
    # so that q_dim (32) differs from hidden.
    qwen3_cfg = dict(base, qkv_bias=False, head_dim=8, qk_norm="per_head", moe={
        "num_experts": 4, "top_k": 2, "expert_intermediate": 8, "router": "mixtral",
        "capacity_factor": 0.0, "drop_policy": "probability", "shared_intermediate": 0, "dense_layers": [1]})
    make("qwen3_moe_qk_norm", qwen3_cfg, moe_coef, seed=2025, batch=2, seq_len=6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
