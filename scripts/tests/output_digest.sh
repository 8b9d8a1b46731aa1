#!/usr/bin/env bash
# Digest of what escale writes, for refactors that must not change behaviour: a shortened demo
# pipeline (tokenizer, shards, dense training, FPI scale-up, granular scale-out, MoE training, the
# scratch baseline and its decay branch), a resumed run, a data-parallel ZeRO-1 run (when MPI is
# built), eval, generation and GGUF export, each reduced to SHA-256 lines. Timings (tokens/s, step
# seconds, MFU, all-reduce seconds, durations) are cut from the logs first; everything else must be
# bit-identical between two builds:
#   scripts/tests/output_digest.sh build/release/escale > before.txt
#   ... change the code, rebuild ...
#   scripts/tests/output_digest.sh build/release/escale > after.txt && diff before.txt after.txt
# About 4 to 5 minutes on 2 cores. Needs the bundled corpus (scripts/corpus/build_corpus.sh, run here).
# The HTML report and SVG plots are left out (they show timings); compare `escale report` output of
# one run directory instead.
set -euo pipefail
ESCALE=$(realpath "${1:?usage: output_digest.sh ESCALE_BINARY}")
cd "$(dirname "$0")/../.."
scripts/corpus/build_corpus.sh >/dev/null
# DIGEST_KEEP=DIR keeps the outputs in DIR (emptied first) to look at them.
if [[ -n ${DIGEST_KEEP:-} ]]; then
  work=$(realpath -m "$DIGEST_KEEP") && rm -rf "$work" && mkdir -p "$work"
else
  work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
fi
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
# Text outputs lose what differs between two identical runs: the work directory's name, times,
# rates and what is derived from them.
strip_timing() {
  sed -E -e "s#$work#WORK#g" \
    -e 's/"([a-z_]*seconds|[a-z_]*_s|time_savings[a-z_]*|tokens_per_second|mfu|sgemm_gflops)": ?[^,}]*//g' "$1"
}
digest_dir() {  # every file of a run, timing-free where the file is a log
  (cd "$1" && find . -type f ! -name '*.log' ! -name '*.done' ! -name '*.html' ! -name '*.svg' \
    ! -name '.lock' ! -name machine.json | LC_ALL=C sort | while read -r f; do
      case "$f" in
        *.jsonl|*.json|*.toml) printf '%s  %s\n' "$(strip_timing "$f" | sha256sum | cut -c1-16)" "$f" ;;
        *) printf '%s  %s\n' "$(sha256sum "$f" | cut -c1-16)" "$f" ;;
      esac
    done)
}

# The demo recipe with every stage shortened.
"$ESCALE" -q pipeline recipes/demo.toml --out "$work/pipe" \
  --set prepare.train.steps=40 --set prepare.train.warmup=5 \
  --set scale_up.train.steps=20 --set scale_up.train.warmup=5 --set scale_up.train.eval_every=10 \
  --set scale_out.train.steps=20 --set scale_out.train.warmup=5 --set scale_out.train.eval_every=10 \
  --set train.save_every=10 --set baseline.train.warmup=5 >/dev/null 2>"$work/pipe.err" ||
  { cat "$work/pipe.err" >&2; exit 1; }
echo "== pipeline"
digest_dir "$work/pipe"

latest() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")/model"; }
moe=$(latest "$work/pipe/moe")
shards="$work/pipe/data/shards"
[[ -d $shards ]] || shards=$(dirname "$(find "$work/pipe" -name manifest.json -path '*shard*' | head -1)")

# A run stopped after 6 steps and resumed to 12, against the same 12 steps unbroken.
TR=(-q train --model "$moe" --data "$shards" --seq-len 64 --micro-batch 2 --global-batch-tokens 256 --lr 1e-3
    --warmup 2 --schedule constant --eval-every 4 --eval-batches 2 --save-every 3 --no-mfu --seed 5)
"$ESCALE" "${TR[@]}" --steps 6 --out "$work/resumed" >/dev/null 2>&1
"$ESCALE" "${TR[@]}" --steps 12 --resume --out "$work/resumed" >/dev/null 2>&1
"$ESCALE" "${TR[@]}" --steps 12 --out "$work/unbroken" >/dev/null 2>&1
echo "== resumed run"
digest_dir "$work/resumed/checkpoints/$(cat "$work/resumed/checkpoints/latest")"
echo "== unbroken run"
digest_dir "$work/unbroken/checkpoints/$(cat "$work/unbroken/checkpoints/latest")"
printf '%s  metrics.jsonl (unbroken)\n' "$(strip_timing "$work/unbroken/metrics.jsonl" | sha256sum | cut -c1-16)"

# The ZeRO-1 run needs mpirun and a binary built with MPI.
if command -v mpirun >/dev/null && ldd "$ESCALE" | grep -q libmpi; then
  mpirun --allow-run-as-root --oversubscribe -np 2 "$ESCALE" "${TR[@]}" --steps 6 --zero-stage 1 \
    --threads 1 --out "$work/zero1" >/dev/null 2>&1
  echo "== data-parallel ZeRO-1 run"
  printf '%s  metrics.jsonl\n' "$(strip_timing "$work/zero1/metrics.jsonl" | sha256sum | cut -c1-16)"
  digest_dir "$work/zero1/checkpoints/$(cat "$work/zero1/checkpoints/latest")"
fi

echo "== eval, generate, GGUF"
"$ESCALE" -q eval "$moe" --shards "$shards" --json 2>/dev/null |
  strip_timing /dev/stdin | sha256sum | cut -c1-16
"$ESCALE" -q generate "$moe" --prompt "The meaning of life" --max-new-tokens 24 2>/dev/null |
  strip_timing /dev/stdin | sha256sum | cut -c1-16
"$ESCALE" -q convert "$moe" "$work/moe.gguf" --dtype q8_0 >/dev/null 2>&1
sha256sum "$work/moe.gguf" | cut -c1-16
