#!/usr/bin/env bash
# The EfficientScale flow on the bundled corpus, end to end, with the commands that exist:
#   preparation (tokenizer, shards, a small dense model trained from scratch)
#   -> scale-up (AKI-Pro: wider and deeper) -> continued pretraining
#   -> scale-out (8 experts, top-2) -> continued pretraining
# printing the validation loss before and after each stage. Steps per stage can be set with
# DEMO_PREP_STEPS, DEMO_UP_STEPS, DEMO_MOE_STEPS; the run directory with DEMO_DIR. The default
# steps add up to 1.3M tokens, about a third of the corpus (3.7M tokens with the demo's 8k
# tokenizer), and each stage draws its batches in another seeded order.
set -euo pipefail
cd "$(dirname "$0")/.."
ESCALE=${ESCALE:-build/release/escale}
RUN=${DEMO_DIR:-build/demo}
PREP_STEPS=${DEMO_PREP_STEPS:-800}
UP_STEPS=${DEMO_UP_STEPS:-300}
MOE_STEPS=${DEMO_MOE_STEPS:-200}
TRAIN=(--seq-len 128 --micro-batch 8 --eval-every 50 --eval-batches 8 --save-every 100 --keep-last 1)
start=$(date +%s)
rm -rf "$RUN"
mkdir -p "$RUN/tokenizer"

latest() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")/model"; }
val_losses() { sed -n 's/.*validation loss \([0-9.]*\) -> \([0-9.]*\).*/\1 \2/p' "$1"; }

echo "== preparation: corpus, tokenizer, shards"
scripts/corpus/build_corpus.sh
$ESCALE -q tokenizer train build/corpus/corpus.jsonl --vocab-size 8192 -o "$RUN/tokenizer/tokenizer.json"
$ESCALE -q tokenize --tokenizer "$RUN/tokenizer/tokenizer.json" --input build/corpus/corpus.jsonl \
  --output "$RUN/shards" --val-fraction 0.02 --workers 2

echo "== preparation: a small dense model from scratch ($PREP_STEPS steps)"
$ESCALE -q init "$RUN/dense-init" --preset demo-small --vocab 8192 --tokenizer-from "$RUN/tokenizer"
$ESCALE -q inspect "$RUN/dense-init" | head -3
$ESCALE train --model "$RUN/dense-init" --data "$RUN/shards" --out "$RUN/prep" --steps "$PREP_STEPS" \
  --seed 1 --lr 3e-3 --min-lr 3e-4 --warmup 30 "${TRAIN[@]}" | tee "$RUN/prep.log"

echo "== scale-up: AKI-Pro, hidden 128->256, FFN 344->688, heads 4->8 (2 KV groups), layers 4->8"
$ESCALE -q scale-up "$(latest "$RUN/prep")" "$RUN/grown" --method aki-pro --hidden 256 --intermediate 688 \
  --heads 8 --kv-heads 2 --layers 8
$ESCALE train --model "$RUN/grown" --data "$RUN/shards" --out "$RUN/up" --steps "$UP_STEPS" \
  --seed 2 --lr 1e-3 --min-lr 1e-4 --warmup 10 "${TRAIN[@]}" | tee "$RUN/up.log"

echo "== scale-out: 8 experts, top-2, mixtral routing (function-preserving at step 0)"
$ESCALE -q scale-out "$(latest "$RUN/up")" "$RUN/moe" --experts 8 --top-k 2 --seed 1
$ESCALE -q verify "$(latest "$RUN/up")" "$RUN/moe" | head -4
$ESCALE train --model "$RUN/moe" --data "$RUN/shards" --out "$RUN/out" --steps "$MOE_STEPS" \
  --seed 3 --lr 3e-4 --min-lr 3e-5 --warmup 20 "${TRAIN[@]}" | tee "$RUN/out.log"

echo
echo "== validation loss per stage (before -> after)"
printf '%-34s %10s %10s\n' stage before after
read -r a b < <(val_losses "$RUN/prep.log"); printf '%-34s %10s %10s\n' "preparation (dense, from scratch)" "$a" "$b"
read -r a b < <(val_losses "$RUN/up.log");   printf '%-34s %10s %10s\n' "scale-up (AKI-Pro) + training" "$a" "$b"
read -r a b < <(val_losses "$RUN/out.log");  printf '%-34s %10s %10s\n' "scale-out (8x top-2) + training" "$a" "$b"
echo "(the scale-out row starts where the scale-up row ends: upcycling keeps the function)"
echo
echo "== a sample from the final MoE model (greedy)"
$ESCALE generate "$(latest "$RUN/out")" --prompt "The meaning of life" --max-new-tokens 40
echo
echo "== export for llama.cpp: the final MoE as one q8_0 GGUF file"
$ESCALE convert "$(latest "$RUN/out")" "$RUN/final-moe.q8_0.gguf" --dtype q8_0 --overwrite
$ESCALE -q report "$RUN" --title "escale demo: EfficientScale on the bundled corpus"
echo "demo finished in $(( $(date +%s) - start )) s; models under $RUN"
