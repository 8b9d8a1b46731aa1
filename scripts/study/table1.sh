#!/usr/bin/env bash
# Table 1 analogue (AquilaMoE §3.2.1): validation loss right after initialisation of the grown
# model, for each growth method, from one trained small model.
#   scripts/study/table1.sh SMALL_MODEL SHARD_DIR OUT_DIR [SEQ_LEN]
# SMALL_MODEL: a trained dense checkpoint (the study's preparation stage); every variant grows it to
# hidden x2, FFN x2, heads x2 (KV groups kept) and, where the method grows depth, 4 -> 6 layers.
# Writes OUT_DIR/table1.jsonl (one line per variant) and prints a Markdown table. Rerunnable: a
# variant whose line exists is not redone.
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${ESCALE:-build/release/escale}
small=$1 shards=$2 out=$3 seq=${4:-128}
mkdir -p "$out"
src_hidden=$(sed -n 's/.*"hidden_size": *\([0-9]*\).*/\1/p' "$small/config.json")
src_ffn=$(sed -n 's/.*"intermediate_size": *\([0-9]*\).*/\1/p' "$small/config.json")
src_heads=$(sed -n 's/.*"num_attention_heads": *\([0-9]*\).*/\1/p' "$small/config.json")
src_layers=$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$small/config.json")
width="--hidden $((2 * src_hidden)) --intermediate $((2 * src_ffn)) --heads $((2 * src_heads))"
deep="--layers $((src_layers * 3 / 2))"
declare -A grow=(
  [fpi_width]="--method fpi $width"
  [fpi_width_noise]="--method fpi $width --symmetry-noise 0.05"
  [fpi_stack]="--method fpi $width $deep --depth stack"
  [fpi_interpolate]="--method fpi $width $deep --depth interpolate"
  [fpi_zero_depth]="--method fpi $width $deep --depth zero"
  [aki_stack]="--method aki $width $deep --depth stack"
  [aki_pro]="--method aki-pro $width $deep"
)
order=(original random fpi_width fpi_width_noise fpi_stack fpi_interpolate fpi_zero_depth aki_stack aki_pro)
loss_of() {  # MODEL -> validation loss on every complete SEQ-token window of the held-out split
  $E -q eval "$1" --shards "$shards" --max-length "$seq" --json |
    sed -n 's/.*"validation_loss": *\([-0-9.e+]*\).*/\1/p' | head -1
}
for v in "${order[@]}"; do
  grep -q "\"variant\": \"$v\"" "$out/table1.jsonl" 2>/dev/null && continue
  model=$out/$v
  case $v in
    original) model=$small ;;
    random)
      [[ -d $model ]] || { $E -q scale-up "$small" "$out/shape" --method fpi $width $deep --overwrite >/dev/null
        $E -q init "$model" --config "$out/shape/config.json" --seed 1 >/dev/null; } ;;
    *) [[ -d $model ]] || $E -q scale-up "$small" "$model" ${grow[$v]} --seed 1 >/dev/null ;;
  esac
  loss=$(loss_of "$model")
  params=$($E -q inspect "$model" --json | sed -n 's/.*"total": *\([0-9]*\).*/\1/p' | tail -1)
  echo "{\"variant\": \"$v\", \"validation_loss\": $loss, \"parameters\": ${params:-0}}" >> "$out/table1.jsonl"
done
echo "| variant | parameters | validation loss right after init |"
echo "|---|---|---|"
sed 's/{"variant": "\([^"]*\)", "validation_loss": \([^,]*\), "parameters": \([0-9]*\)}/| \1 | \3 | \2 |/' "$out/table1.jsonl"
