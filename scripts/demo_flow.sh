#!/usr/bin/env bash
# The default EfficientScale run on the bundled corpus (run by ./demo.sh): recipes/demo.toml through
# `escale pipeline`, which does
#   preparation (tokenizer, shards, a small dense model trained from scratch)
#   -> scale-up (FPI 2x wide, 4 -> 6 layers, exact) -> continued pretraining
#   -> scale-out (8 copies x 2 slices, top-2 of 16, exact) -> continued pretraining (the only LR decay)
#   -> the same MoE from scratch with 1.5x the compute (stable run + a decay branch)
#   -> evaluation, savings at equal loss, report
# then a generated sample and the final MoE as a GGUF file for llama.cpp. Rerunning resumes:
# finished stages are kept (DEMO_DIR=dir picks another run directory, DEMO_FRESH=1 starts over).
set -euo pipefail
cd "$(dirname "$0")/.."
ESCALE=${ESCALE:-build/release/escale}
RUN=${DEMO_DIR:-build/pipeline-demo}
start=$(date +%s)
[[ ${DEMO_FRESH:-0} == 1 ]] && rm -rf "$RUN"
scripts/corpus/build_corpus.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # cores may be shared: do not spin
$ESCALE pipeline recipes/demo.toml --out "$RUN"
latest() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")/model"; }

echo
echo "== validation loss per stage (whole held-out split; before -> after)"
for stage in prepare up moe baseline; do
  sed -n 's/.*validation loss \([0-9.]*\) -> \([0-9.]*\).*/\1 \2/p' "$RUN/logs/$stage.log" |
    tail -1 | { read -r a b; printf '%-10s %8s -> %8s\n' "$stage" "$a" "$b"; }
done
echo "(up starts where prepare ends and moe where up ends: both conversions keep the function)"
echo
echo "== a sample from the final MoE model (greedy)"
$ESCALE generate "$(latest "$RUN/moe")" --prompt "The meaning of life" --max-new-tokens 40
echo
echo "== export for llama.cpp: the final MoE as one q8_0 GGUF file"
$ESCALE convert "$(latest "$RUN/moe")" "$RUN/final-moe.q8_0.gguf" --dtype q8_0 --overwrite
echo "report: $RUN/report.html (loss against FLOPs beside the scratch baseline, savings table)"
echo "demo finished in $(( $(date +%s) - start )) s"
