#!/usr/bin/env bash
# Writes the fuzz targets' seed corpora (tests/fuzz/corpus/TARGET/) from small, valid inputs made
# by escale itself: a tiny Llama and its Mixtral upcycling (safetensors, config.json, GGUF), a
# 300-token BPE (tokenizer.json), token shards and their manifest, and the bundled recipes.
#   tests/fuzz/make_seeds.sh [ESCALE]     (default build/release/escale; needs build/corpus)
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${1:-build/release/escale}
C=tests/fuzz/corpus
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
[[ -f build/corpus/corpus.jsonl ]] || scripts/corpus/build_corpus.sh
head -n 200 build/corpus/corpus.jsonl > "$w/docs.jsonl"
mkdir -p "$w/tok"
$E -q tokenizer train "$w/docs.jsonl" --vocab-size 300 -o "$w/tok/tokenizer.json" >/dev/null
cat > "$w/tiny.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 300, "hidden_size": 8,
 "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
 "head_dim": 4, "rms_norm_eps": 1e-6, "max_position_embeddings": 64, "rope_theta": 10000.0,
 "tie_word_embeddings": false, "torch_dtype": "float32"}
JSON
$E -q init "$w/dense" --config "$w/tiny.json" --seed 1 --tokenizer-from "$w/tok" >/dev/null
$E -q scale-out "$w/dense" "$w/moe" --experts 2 --top-k 1 --router st >/dev/null
$E -q scale-out "$w/dense" "$w/qmoe" --experts 2 --top-k 2 --shared-experts --format qwen2-moe >/dev/null
$E -q convert "$w/dense" "$w/dense.gguf" >/dev/null
head -n 20 "$w/docs.jsonl" > "$w/few.jsonl"
$E -q tokenize --tokenizer "$w/tok/tokenizer.json" --input "$w/few.jsonl" --output "$w/shards" >/dev/null
rm -rf "$C"
mkdir -p "$C"/{safetensors,hf_config,tokenizer,shards,gguf,recipe}
# Mode byte 0: a .safetensors file; 1: an index beside a small shard.
{ printf '\0'; cat "$w/dense/model.safetensors"; } > "$C/safetensors/dense"
printf '\1%s' '{"metadata":{"total_size":12},"weight_map":{"a.weight":"model-00001-of-00001.safetensors","b.weight":"model-00001-of-00001.safetensors"}}' > "$C/safetensors/index"
for m in dense moe qmoe; do cp "$w/$m/config.json" "$C/hf_config/$m.json"; done
cp "$w/tok/tokenizer.json" "$C/tokenizer/bpe300.json"
cp tests/tokenizer/data/toy_spm/tokenizer.json "$C/tokenizer/toy_spm.json"
# Mode byte 0: a shard file; 1: manifest.json.
{ printf '\0'; cat "$(ls "$w"/shards/train_*.bin | head -1)"; } > "$C/shards/shard"
{ printf '\1'; cat "$w/shards/manifest.json"; } > "$C/shards/manifest"
cp "$w/dense.gguf" "$C/gguf/dense"
cp recipes/demo.toml "$C/recipe/demo.toml"
cp recipes/study/efficientscale.toml "$C/recipe/study.toml"
du -sh "$C"/*
