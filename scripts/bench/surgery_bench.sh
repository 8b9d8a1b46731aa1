#!/bin/bash
# Throughput of `escale scale-up` and `escale scale-out` against `cp` writing the same bytes
# (docs/benchmarks.md, issues #4 and #5). Each run converts, then copies exactly the files the
# conversion wrote with `cp` and fsyncs the copies (`sync FILE...`; escale fsyncs its own output), so
# both sides write and sync the same bytes back to back under the same load.
#
# Usage: scripts/bench/surgery_bench.sh [--escale BIN] [--dir WORK] [--runs N] [--only up|out]
#   --escale  the binary (default build/release/escale)
#   --dir     scratch directory (default /tmp/escale_surgery_bench); needs about 2 GB for the source
#             plus twice the largest output (9.7 GB for scale-out), which is deleted after each run
#   --runs    runs per conversion (default 3)
# The source is a 491.8M-parameter Llama-shaped F32 checkpoint (1.97 GB; 8 layers, hidden 2048,
# FFN 5632, vocab 32000, 16 heads, 4 KV heads), made once by `escale init --config` and kept.
set -euo pipefail

ESCALE=build/release/escale
WORK=/tmp/escale_surgery_bench
RUNS=3
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --escale) ESCALE=$2; shift 2 ;;
    --dir) WORK=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    *) echo "surgery_bench.sh: unknown argument $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done
[ -x "$ESCALE" ] || { echo "surgery_bench.sh: $ESCALE is not an executable; build it or pass --escale" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "surgery_bench.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
ESCALE=$(readlink -f "$ESCALE")
mkdir -p "$WORK"
SRC=$WORK/src

if [ ! -f "$SRC/model.safetensors" ]; then
  cat > "$WORK/config.json" <<'EOF'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
 "intermediate_size": 5632, "num_hidden_layers": 8, "num_attention_heads": 16,
 "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048,
 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "hidden_act": "silu", "torch_dtype": "float32"}
EOF
  echo "making the source checkpoint in $SRC ..." >&2
  "$ESCALE" -q init "$SRC" --config "$WORK/config.json" --seed 1 > /dev/null
fi

UP_ARGS=(scale-up "$SRC" "$WORK/out" --method fpi --hidden 2560 --heads 20 --intermediate 7040 --layers 12 --depth zero)
OUT_ARGS=(scale-out "$SRC" "$WORK/out" --experts 8 --top-k 2)

# time_cmd LABEL CMD...: runs CMD under /usr/bin/time, prints "wall_s max_rss_kB user_s sys_s".
time_cmd() {
  local t=$WORK/time.txt
  /usr/bin/time -o "$t" -f "%e %M %U %S" "$@" > /dev/null
  cat "$t"
}

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -r), $(nproc) CPUs, escale $("$ESCALE" --version 2>/dev/null | head -1)"
echo "# source: $(du -b "$SRC/model.safetensors" | cut -f1) bytes"
printf "%-9s %3s %14s %9s %9s %7s %12s %12s %s\n" conversion run bytes_written escale_s cp_s ratio escale_rssMB "escale_u+s" "load(1m)"
for conv in up out; do
  [ -z "$ONLY" ] || [ "$ONLY" = "$conv" ] || continue
  for run in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/out" "$WORK/copy"
    load=$(cut -d' ' -f1 /proc/loadavg)
    if [ $conv = up ]; then args=("${UP_ARGS[@]}"); else args=("${OUT_ARGS[@]}"); fi
    read -r e_wall e_rss e_user e_sys < <(time_cmd "$ESCALE" -q "${args[@]}")
    files=$(cd "$WORK/out" && ls | tr "\n" " ")
    bytes=$(cd "$WORK/out" && du -cb $files | tail -1 | cut -f1)
    mkdir -p "$WORK/copy"
    # The same files, copied and fsynced: what `cp` needs to write these bytes.
    read -r c_wall _ _ _ < <(time_cmd bash -c "cd '$WORK/out' && cp $files '$WORK/copy/' && cd '$WORK/copy' && sync $files")
    ratio=$(awk -v a="$e_wall" -v b="$c_wall" 'BEGIN { printf "%.2f", a / b }')
    printf "%-9s %3s %14s %9s %9s %7s %12s %12s %s\n" "scale-$conv" "$run" "$bytes" "$e_wall" "$c_wall" "$ratio" \
      "$((e_rss / 1024))" "$(awk -v u="$e_user" -v s="$e_sys" 'BEGIN { printf "%.1f+%.1f", u, s }')" "$load"
    rm -rf "$WORK/out" "$WORK/copy"
  done
done
rm -f "$WORK/time.txt"
