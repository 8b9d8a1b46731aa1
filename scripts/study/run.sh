#!/usr/bin/env bash
# The reproduction study of docs/reproduction.md, resumable: every piece is skipped when its
# output is complete, and an interrupted training run resumes from its last checkpoint.
#   scripts/study/run.sh [STUDY_DIR]        (default build/study)
# STUDY_SEEDS (default "1 2 3") picks the seeds; STUDY_PARTS (default "sweep es sweep_small
# sweep_up moments table1 fig3 fig4 report") the pieces; STUDY_REF_SEED (default 1) the seed whose
# pipeline run the sweeps, Table 1 and Figure 3 start from. About 100 minutes on 2 cores for everything; a benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${ESCALE:-build/release/escale}
S=${1:-build/study}
seeds=${STUDY_SEEDS:-1 2 3}
parts=${STUDY_PARTS:-sweep es sweep_small sweep_up moments table1 fig3 fig4 report}
ref=$S/es-${STUDY_REF_SEED:-1}
lrs5=${SWEEP_LRS:-5e-4 1e-3 2e-3 4e-3 8e-3}
recipe=recipes/study/efficientscale.toml
fig4_best=${FIG4_BEST:-3.75e-4}  # seed 1's best learning rate for both Figure 4 arms (docs/reproduction.md)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$S"
latest() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")/model"; }
want() { [[ " $parts " == *" $1 "* ]]; }
# Trains OUT from MODEL with CONFIG's options (the stage's own TOML) unless OUT is finished.
train_like() {  # CONFIG MODEL OUT [extra flags]
  local config=$1 model=$2 out=$3
  shift 3
  [[ -f $out/done ]] && return 0
  local resume=()
  [[ -f $out/checkpoints/latest ]] && resume=(--resume)
  $E train --config "$config" --model "$model" --data "$ref/shards" --out "$out" "${resume[@]}" "$@" \
    > "$out.log" 2>&1
  touch "$out/done"
}
[[ -f build/corpus/corpus.jsonl ]] || scripts/corpus/build_corpus.sh

# 0. The scratch baseline's learning rate: the final MoE shape from random initialisation, fully
#    decayed runs of a quarter of the baseline's budget (SWEEP_STEPS), at SWEEP_LRS — as many points
#    as Figure 4 sweeps for the MoE stage. Needs seed 1's data and upcycled shape (part es).
if want sweep && [[ -f $S/es-1/upcycled/config.json ]]; then
  echo "== scratch learning-rate sweep"
  mkdir -p "$S/sweep"
  [[ -d $S/sweep/scratch.model ]] ||
    $E -q init "$S/sweep/scratch.model" --config "$S/es-1/upcycled/config.json" --seed 1 >/dev/null
  for lr in $lrs5; do
    train_like "$S/es-1/configs/baseline.toml" "$S/sweep/scratch.model" "$S/sweep/scratch-lr$lr" \
      --seed 1 --lr "$lr" --steps "${SWEEP_STEPS:-280}" --keep-steps ""
  done
fi

# 1. The EfficientScale run and its from-scratch baseline (envelope of decay branches), per seed.
if want es; then
  for seed in $seeds; do
    echo "== EfficientScale, seed $seed"
    $E pipeline "$recipe" --seed "$seed" --out "$S/es-$seed" > "$S/es-$seed.log" 2>&1 ||
      { tail -5 "$S/es-$seed.log"; exit 1; }
    tail -4 "$S/es-$seed.log"
  done
fi
small=$S/es-1/prepare/checkpoints/latest  # (resolved below, once seed 1 has run)
[[ -f $small ]] && small=$(latest "$S/es-1/prepare")
# The pipeline's scale-up (recipes/study/efficientscale.toml [scale_up]).
grow="--method fpi --hidden 256 --intermediate 688 --heads 8 --kv-heads 2 --layers 6 --depth zero --symmetry-noise 0.05"

# 1b. The small model's and the grown stage's learning rates, swept like the baseline's: five
#     points of the same grid, each stage with its pipeline options (constant LR, the stage's
#     steps), judged by the validation loss it hands to the next stage. The small model starts from
#     seed 1's initialisation; the grown stage from seed 1's small model grown by the pipeline's
#     scale-up (the 2e-3 point of the small sweep is the pipeline's own stage, bit for bit).
if want sweep_small && [[ -f $ref/configs/prepare.toml ]]; then
  echo "== small-model learning-rate sweep"
  mkdir -p "$S/sweep"
  [[ -d $S/sweep/small.model ]] ||
    $E -q init "$S/sweep/small.model" --preset demo-small --seed 1 --tokenizer-from "$ref/tokenizer" \
      --vocab "$(sed -n 's/^vocab_size = \([0-9]*\).*/\1/p' "$recipe")" >/dev/null
  for lr in $lrs5; do
    train_like "$ref/configs/prepare.toml" "$S/sweep/small.model" "$S/sweep/small-lr$lr" --seed 1 --lr "$lr"
  done
fi
if want sweep_up && [[ -f $S/sweep/small-lr2e-3/done ]]; then
  echo "== grown-stage learning-rate sweep"
  [[ -d $S/sweep/grown.model ]] ||
    $E -q scale-up "$(latest "$S/sweep/small-lr2e-3")" "$S/sweep/grown.model" $grow --seed 1 >/dev/null
  for lr in $lrs5; do
    train_like "$ref/configs/up.toml" "$S/sweep/grown.model" "$S/sweep/up-lr$lr" --seed 1 --lr "$lr"
  done
fi

# 1c. AdamW's moments carried through growth and upcycling (docs/method.md §4.3) against the
#     pipeline's fresh moments: the same stages, options and seed, from the same small model.
#     up-carry keeps the stage's warmup, up-carry-w0 drops it; moe-carry continues up-carry.
if want moments; then
  for seed in $seeds; do
    es=$S/es-$seed
    [[ -f $es/moe/checkpoints/latest ]] || continue
    echo "== carried moments, seed $seed"
    d=$S/moments/seed$seed
    mkdir -p "$d"
    [[ -d $d/grown ]] ||
      $E -q scale-up "$(latest "$es/prepare")" "$d/grown" $grow --seed "$seed" --carry-moments >/dev/null
    train_like "$es/configs/up.toml" "$d/grown" "$d/up-carry" --seed "$seed" --carry-moments
    train_like "$es/configs/up.toml" "$d/grown" "$d/up-carry-w0" --seed "$seed" --carry-moments --warmup 0
    [[ -d $d/upcycled ]] ||
      $E -q scale-out "$(latest "$d/up-carry")" "$d/upcycled" --experts 8 --top-k 1 --granularity 2 \
        --seed "$seed" --carry-moments >/dev/null
    train_like "$es/configs/moe.toml" "$d/upcycled" "$d/moe-carry" --seed "$seed" --carry-moments
  done
fi

# 2. Table 1: validation loss right after each growth method, from seed 1's small model.
if want table1; then
  echo "== Table 1"
  scripts/study/table1.sh "$small" "$S/es-1/shards" "$S/table1" | tee "$S/table1.md"
fi

# 3. Figure 3: each growth method trained like the scale-up stage (same options, steps, LR), and the
#    grown shape from scratch at the same LR; seed 1's small model is the source.
if want fig3; then
  echo "== Figure 3"
  mkdir -p "$S/fig3"
  w="--hidden 256 --intermediate 688 --heads 8 --kv-heads 2 --layers 6 --seed 1"
  declare -A arms=(
    [fpi_zero_noise]="--method fpi $w --depth zero --symmetry-noise 0.05"
    [fpi_zero]="--method fpi $w --depth zero"
    [fpi_interpolate]="--method fpi $w --depth interpolate"
    [aki_pro]="--method aki-pro $w"
  )
  for arm in fpi_zero_noise fpi_zero fpi_interpolate aki_pro; do
    [[ -d $S/fig3/$arm.model ]] || $E -q scale-up "$small" "$S/fig3/$arm.model" ${arms[$arm]} >/dev/null
    train_like "$S/es-1/configs/up.toml" "$S/fig3/$arm.model" "$S/fig3/$arm"
  done
  [[ -d $S/fig3/scratch.model ]] ||
    $E -q init "$S/fig3/scratch.model" --config "$S/fig3/aki_pro.model/config.json" --seed 1 >/dev/null
  train_like "$S/es-1/configs/up.toml" "$S/fig3/scratch.model" "$S/fig3/scratch_m" --warmup 30
  # The small model continued at the same FLOPs instead of grown (from its stable checkpoint).
  up_steps=$(sed -n 's/^steps = \([0-9]*\)/\1/p' "$S/es-1/configs/up.toml")
  prep_steps=$(sed -n 's/^steps = \([0-9]*\)/\1/p' "$S/es-1/configs/prepare.toml")
  ratio=$($E inspect "$S/fig3/aki_pro.model" --json | sed -n 's/.*"active_matmul": *\([0-9]*\).*/\1/p')
  base=$($E inspect "$small" --json | sed -n 's/.*"active_matmul": *\([0-9]*\).*/\1/p')
  cont_steps=$(( prep_steps + up_steps * ratio / base ))
  [[ -f $S/fig3/small_continued/done ]] || {
    $E train --config "$S/es-1/configs/prepare.toml" --from-config "$small/config.json" \
      --data "$S/es-1/shards" --out "$S/fig3/small_continued" --steps "$cont_steps" \
      --branch-from "$(dirname "$small")" --seed 1 > "$S/fig3/small_continued.log" 2>&1
    touch "$S/fig3/small_continued/done"; }
fi

# 4. Figure 4: the upcycled MoE against continuing the dense grown model at equal FLOPs, per seed,
#    from the grown model's stable checkpoint; the scratch MoE is the pipeline's baseline.
#    (a) The pipeline's own MoE stage (8 copies, top-2) against the dense model continued with the
#        same options for as many more steps as an MoE step costs more, its own decay at the end.
#    (b) Granular upcycling, 8 copies x 2 slices, top-2 of 16 half-width experts: a token costs what
#        a dense token costs, so equal FLOPs is equal steps. Both arms at each learning rate of
#        FIG4_LRS (default: a sweep on seed 1, the sweep's best on the other seeds).
if want fig4; then
  echo "== Figure 4"
  mkdir -p "$S/fig4"
  for seed in $seeds; do
    moe_steps=$(sed -n 's/^steps = \([0-9]*\)/\1/p' "$S/es-$seed/configs/moe.toml")
    dense_model=$(latest "$S/es-$seed/up")
    m_matmul=$($E inspect "$dense_model" --json | sed -n 's/.*"active_matmul": *\([0-9]*\).*/\1/p')
    # (a) needs the first MoE stage's runs, kept in $S/top2-8 when the recipe moved to (b).
    if [[ -d $S/top2-8/es-$seed/moe ]]; then
      e_matmul=$($E inspect "$(latest "$S/top2-8/es-$seed/moe")" --json | sed -n 's/.*"active_matmul": *\([0-9]*\).*/\1/p')
      train_like "$S/es-$seed/configs/moe.toml" "$dense_model" "$S/fig4/dense-$seed" \
        --seed "$seed" --lr 1.5e-3 --steps $(( (moe_steps * e_matmul + m_matmul - 1) / m_matmul ))
    fi
    g=$S/fig4/granular-$seed.model
    [[ -d $g ]] || $E -q scale-out "$dense_model" "$g" --experts 8 --top-k 1 --granularity 2 --seed "$seed" >/dev/null
    g_matmul=$($E inspect "$g" --json | sed -n 's/.*"active_matmul": *\([0-9]*\).*/\1/p')
    if [[ $seed == 1 ]]; then lrs=${FIG4_LRS:-1.875e-4 3.75e-4 7.5e-4 1.5e-3 3e-3}; else lrs=${FIG4_LRS:-$fig4_best}; fi
    for lr in $lrs; do
      train_like "$S/es-$seed/configs/moe.toml" "$g" "$S/fig4/granular-$seed-lr$lr" --seed "$seed" --lr "$lr"
      train_like "$S/es-$seed/configs/moe.toml" "$dense_model" "$S/fig4/dense-$seed-lr$lr" --seed "$seed" --lr "$lr" \
        --steps $(( (moe_steps * g_matmul + m_matmul - 1) / m_matmul ))
    done
  done
fi

# 5. The plots and tables docs/reproduction.md shows.
if want report; then
  echo "== artefacts -> docs/reproduction/"
  d=docs/reproduction
  mkdir -p "$d"
  prep_flops() { sed -n 's/.*"preparation_flops": *\([0-9.e+-]*\).*/\1/p' "$S/es-$1/pipeline.json" | head -1; }
  $E compare "small=$S/es-1/prepare" "fpi_zero_noise=$S/fig3/fpi_zero_noise@small" \
    "fpi_zero=$S/fig3/fpi_zero@small" "fpi_interpolate=$S/fig3/fpi_interpolate@small" \
    "aki_pro=$S/fig3/aki_pro@small" "small_continued=$S/fig3/small_continued" \
    "scratch_M=$S/fig3/scratch_m" --svg "$d/fig3.svg" --markdown "$d/fig3.md" \
    --title "Figure 3 analogue: grown models against scratch (validation loss)" >/dev/null
  for seed in $seeds; do
    [[ -d $S/top2-8/es-$seed/moe ]] &&
      $E compare "dense_grown=$S/es-$seed/up@$(prep_flops "$seed")" \
        "upcycled_moe=$S/top2-8/es-$seed/moe@dense_grown" "dense_continued=$S/fig4/dense-$seed@dense_grown" \
        "scratch_moe=$S/top2-8/es-$seed/baseline" --svg "$d/fig4-seed$seed.svg" --markdown "$d/fig4-seed$seed.md" \
        --title "Figure 4 analogue, seed $seed: upcycled MoE (8 x top-2), dense continuation, scratch MoE" >/dev/null
    [[ -f $S/fig4/granular-$seed-lr$fig4_best/done ]] &&
      $E compare "dense_grown=$S/es-$seed/up@$(prep_flops "$seed")" \
        "granular_moe=$S/fig4/granular-$seed-lr$fig4_best@dense_grown" \
        "dense_continued=$S/fig4/dense-$seed-lr$fig4_best@dense_grown" \
        --svg "$d/fig4-granular-seed$seed.svg" --markdown "$d/fig4-granular-seed$seed.md" \
        --title "Figure 4 analogue, seed $seed: granular upcycled MoE and dense continuation, LR $fig4_best" >/dev/null
    cp "$S/es-$seed/pipeline.json" "$d/pipeline-seed$seed.json"
    [[ -f $S/top2-8/es-$seed/pipeline.json ]] &&
      mkdir -p "$d/before-sweep" && cp "$S/top2-8/es-$seed/pipeline.json" "$d/before-sweep/pipeline-seed$seed.json"
  done
  cp "$S/table1.md" "$d/table1.md"
  echo "wrote $d"
fi
