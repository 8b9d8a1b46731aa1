#!/usr/bin/python3
"""PyTorch baseline for `escale bench train`: the same model, batch and optimizer in eager fp32
PyTorch on CPU (Debian's python3-torch), timed the same way (one warm-up step, then N steps of
zero_grad + forward + loss + backward + AdamW). Run with /usr/bin/python3.

  /usr/bin/python3 scripts/bench/pytorch_train_bench.py --preset bench-dense --steps 5 --threads 2

Models (the presets of `escale bench train`, model/presets.cpp):
  bench-dense: vocab 8192, hidden 256, 4 layers, 8 heads, 4 KV heads (GQA), head_dim 32, SwiGLU FFN
    688, QKV bias; batch 8 x seq 256.
  bench-124m: vocab 32000, hidden 768, 12 layers, 12 heads, 4 KV heads, head_dim 64, FFN 2048, no
    bias; batch 4 x seq 1024.
  bench-moe / bench-moe-124m: the same with every FFN as 8 experts of the same FFN, top-2, mixtral
    routing (softmax over the selected logits), dropless, loss = CE + 0.001 * Switch aux
    (E * sum_e f_e P_e) + 0.001 * router z-loss.
All: untied head, RoPE theta 1e4, RMSNorm eps 1e-6.
AdamW lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 (none on norms, biases, embedding).
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# name: (vocab, hidden, layers, heads, kv heads, FFN, seq, batch, QKV bias, MoE)
PRESETS = {
    "bench-dense": (8192, 256, 4, 8, 4, 688, 256, 8, True, False),
    "bench-moe": (8192, 256, 4, 8, 4, 688, 256, 8, True, True),
    "bench-124m": (32000, 768, 12, 12, 4, 2048, 1024, 4, False, False),
    "bench-moe-124m": (32000, 768, 12, 12, 4, 2048, 1024, 4, False, True),
}
E, K = 8, 2
V = H = L = NH = NKV = HD = FF = T = B = 0
BIAS = True


def configure(preset):
    global V, H, L, NH, NKV, HD, FF, T, B, BIAS
    V, H, L, NH, NKV, FF, T, B, BIAS, moe = PRESETS[preset]
    HD = H // NH
    return moe


class RMSNorm(nn.Module):
    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(seq, hd, theta=10000.0):
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.wq = nn.Linear(H, NH * HD, bias=BIAS)
        self.wk = nn.Linear(H, NKV * HD, bias=BIAS)
        self.wv = nn.Linear(H, NKV * HD, bias=BIAS)
        self.wo = nn.Linear(NH * HD, H, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, NH, HD).transpose(1, 2)
        k = self.wk(x).view(b, t, NKV, HD).transpose(1, 2)
        v = self.wv(x).view(b, t, NKV, HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(HD)
        p = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        o = (p @ v).transpose(1, 2).reshape(b, t, NH * HD)
        return self.wo(o)


class SwiGLU(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.gate = nn.Linear(H, f, bias=False)
        self.up = nn.Linear(H, f, bias=False)
        self.down = nn.Linear(f, H, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class MoE(nn.Module):
    """Hugging Face MixtralSparseMoeBlock-style: a loop over experts with index_add_."""

    def __init__(self):
        super().__init__()
        self.router = nn.Linear(H, E, bias=False)
        self.experts = nn.ModuleList([SwiGLU(FF) for _ in range(E)])

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, H)
        logits = self.router(x)
        top, sel = torch.topk(logits, K, dim=-1)
        w = torch.softmax(top, dim=-1)
        out = torch.zeros_like(x)
        for e in range(E):
            tok, slot = torch.where(sel == e)
            if tok.numel() == 0:
                continue
            y = self.experts[e](x[tok]) * w[tok, slot, None]
            out.index_add_(0, tok, y)
        probs = torch.softmax(logits, dim=-1)
        f = torch.zeros(E).index_add_(0, sel.reshape(-1), torch.ones(sel.numel())) / sel.numel()
        aux = E * (f * probs.mean(0)).sum()
        z = torch.logsumexp(logits, dim=-1).pow(2).mean()
        return out.view(shape), aux, z


class Block(nn.Module):
    def __init__(self, moe):
        super().__init__()
        self.attn_norm = RMSNorm(H)
        self.attn = Attention()
        self.ffn_norm = RMSNorm(H)
        self.ffn = MoE() if moe else SwiGLU(FF)
        self.moe = moe

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        if self.moe:
            y, aux, z = self.ffn(self.ffn_norm(x))
            return x + y, aux, z
        return x + self.ffn(self.ffn_norm(x)), None, None


class Model(nn.Module):
    def __init__(self, moe):
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.layers = nn.ModuleList([Block(moe) for _ in range(L)])
        self.norm = RMSNorm(H)
        self.lm_head = nn.Linear(H, V, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        cos, sin = rope_tables(T, HD)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1))

    def forward(self, tokens, targets):
        x = self.embed(tokens)
        aux_sum, z_sum, n_moe = 0.0, 0.0, 0
        for layer in self.layers:
            x, aux, z = layer(x, self.cos, self.sin, self.mask)
            if aux is not None:
                aux_sum, z_sum, n_moe = aux_sum + aux, z_sum + z, n_moe + 1
        logits = self.lm_head(self.norm(x))
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        if n_moe:
            loss = loss + 0.001 * aux_sum / n_moe + 0.001 * z_sum / n_moe
        return loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="bench-dense")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = Model(configure(args.preset))
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and n != "embed.weight"]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and n != "embed.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    data = torch.randint(0, V, (B * T + 1,))
    tokens, targets = data[:-1].view(B, T), data[1:].view(B, T)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(tokens, targets)
        loss.backward()
        opt.step()
        return loss.item()

    first = step()  # warm-up
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        last = step()
        times.append(time.perf_counter() - t0)
    mean = sum(times) / len(times)
    res = {"bench": "pytorch_train", "preset": args.preset, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "tokens_per_step": B * T, "steps": args.steps,
           "tokens_per_s": B * T / mean, "tokens_per_s_best": B * T / min(times),
           "first_loss": first, "last_loss": last}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"pytorch {torch.__version__} {args.preset}: {res['threads']} threads, {res['tokens_per_s']:.0f} tokens/s "
              f"(best step {res['tokens_per_s_best']:.0f}); loss {first:.4f} -> {last:.4f}")


if __name__ == "__main__":
    main()
