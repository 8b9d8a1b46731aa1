#!/bin/bash
# GGUF export speed against `cp` of the source checkpoint (docs/benchmarks.md): each run exports
# with `escale convert SRC OUT.gguf --dtype D` (escale fsyncs its output), then copies the source
# model.safetensors with `cp` and `sync`s the copy, back to back under the same load.
#
# Usage: scripts/bench/gguf_bench.sh [--escale BIN] [--dir WORK] [--runs N] [--dtype f32|f16|q8_0]
# The source is a 311M-parameter Llama-shaped F32 checkpoint (1.24 GB; 4 layers, hidden 2048,
# FFN 5632, vocab 32000, 16 heads, 4 KV heads) with an escale-trained tokenizer, made once.
set -euo pipefail
ESCALE=build/release/escale
WORK=/tmp/escale_gguf_bench
RUNS=3
DTYPE=f32
while [ $# -gt 0 ]; do
  case "$1" in
    --escale) ESCALE=$2; shift 2 ;;
    --dir) WORK=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --dtype) DTYPE=$2; shift 2 ;;
    *) echo "gguf_bench.sh: unknown argument $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done
[ -x "$ESCALE" ] || { echo "gguf_bench.sh: $ESCALE is not an executable; build it or pass --escale" >&2; exit 2; }
ESCALE=$(readlink -f "$ESCALE")
mkdir -p "$WORK"
SRC=$WORK/src
if [ ! -f "$SRC/model.safetensors" ]; then
  cat > "$WORK/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
 "intermediate_size": 5632, "num_hidden_layers": 4, "num_attention_heads": 16,
 "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048,
 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "torch_dtype": "float32"}
JSON
  for i in $(seq 200); do echo "the quick brown fox $i jumps over the lazy dog, again and again"; done > "$WORK/corpus.txt"
  mkdir -p "$WORK/tok"
  "$ESCALE" tokenizer train --overwrite --vocab-size 1000 -o "$WORK/tok/tokenizer.json" "$WORK/corpus.txt" >/dev/null
  "$ESCALE" init --config "$WORK/config.json" --tokenizer-from "$WORK/tok" "$SRC" >/dev/null
fi
bytes=$(stat -c %s "$SRC/model.safetensors")
echo "source: $bytes bytes; $(uptime)"
for r in $(seq "$RUNS"); do
  rm -f "$WORK/out.gguf" "$WORK/copy.safetensors"
  t0=$(date +%s.%N)
  "$ESCALE" --quiet convert "$SRC" "$WORK/out.gguf" --dtype "$DTYPE" >/dev/null
  t1=$(date +%s.%N)
  cp "$SRC/model.safetensors" "$WORK/copy.safetensors" && sync "$WORK/copy.safetensors"
  t2=$(date +%s.%N)
  out=$(stat -c %s "$WORK/out.gguf")
  awk -v a="$t0" -v b="$t1" -v c="$t2" -v s="$bytes" -v o="$out" -v r="$r" -v d="$DTYPE" 'BEGIN {
    printf "run %d: gguf %s %.2f s (%.0f MB/s of source, %d bytes out) | cp+sync %.2f s (%.0f MB/s)\n",
      r, d, b - a, s / (b - a) / 1e6, o, c - b, s / (c - b) / 1e6 }'
done
rm -f "$WORK/out.gguf" "$WORK/copy.safetensors"
