#!/usr/bin/python3
"""Write a Llama-shaped Hugging Face model directory (config.json + model.safetensors) of a
chosen size, for benchmarks of checkpoint reading and writing. Independent of escale's own
writer: the header is laid out here with json + struct, the data with numpy, one tensor at a
time so the script itself never holds the model in memory.

Usage: /usr/bin/python3 scripts/make_safetensors_fixture.py OUT_DIR [--layers 8] [--hidden 2048]
       [--intermediate 5632] [--vocab 32000] [--heads 16] [--kv-heads 4] [--dtype F32|BF16]
Defaults give about 492M parameters, 1.97 GB in F32.
"""
import argparse
import json
import os
import struct

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--dtype", choices=["F32", "BF16"], default="F32")
    a = p.parse_args()

    H, F, V, L = a.hidden, a.intermediate, a.vocab, a.layers
    hd = H // a.heads
    q, kv = a.heads * hd, a.kv_heads * hd
    tensors = [("model.embed_tokens.weight", (V, H))]
    for i in range(L):
        pre = f"model.layers.{i}."
        tensors += [
            (pre + "input_layernorm.weight", (H,)),
            (pre + "self_attn.q_proj.weight", (q, H)),
            (pre + "self_attn.k_proj.weight", (kv, H)),
            (pre + "self_attn.v_proj.weight", (kv, H)),
            (pre + "self_attn.o_proj.weight", (H, q)),
            (pre + "post_attention_layernorm.weight", (H,)),
            (pre + "mlp.gate_proj.weight", (F, H)),
            (pre + "mlp.up_proj.weight", (F, H)),
            (pre + "mlp.down_proj.weight", (H, F)),
        ]
    tensors += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]

    esize = 4 if a.dtype == "F32" else 2
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * esize
        header[name] = {"dtype": a.dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)

    os.makedirs(a.out, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V,
        "hidden_size": H, "intermediate_size": F, "num_hidden_layers": L,
        "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "torch_dtype": "float32" if a.dtype == "F32" else "bfloat16",
        "hidden_act": "silu",
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    rng = np.random.default_rng(0)
    block = rng.standard_normal(1 << 20, dtype=np.float32) * 0.02  # tiled: fast, not all-zero
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape in tensors:
            n = int(np.prod(shape))
            data = np.resize(block, n)
            if a.dtype == "BF16":
                data = (data.view(np.uint32) >> 16).astype(np.uint16)
            f.write(data.tobytes())
    print(f"wrote {len(tensors)} tensors, {off} data bytes, to {a.out}")


if __name__ == "__main__":
    main()
