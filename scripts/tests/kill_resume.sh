#!/usr/bin/env bash
# Kill test (issue "trainer"): SIGKILL `escale train` at random moments -- including during
# checkpoint writes -- at least KILLS times, resume after each kill, and check the finished run
# equals an uninterrupted one bit for bit (losses in metrics.jsonl and the final weights); then the
# same for a two-source --data-blend run (one cursor per source).
# Usage: scripts/tests/kill_resume.sh ESCALE_BINARY [KILLS]
set -euo pipefail
ESCALE=${1:?usage: kill_resume.sh ESCALE_BINARY [KILLS]}
KILLS=${2:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# Data: a small English text from Debian's licence files, a 300-token BPE, shards.
cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 > corpus.txt
mkdir tok
"$ESCALE" -q tokenizer train corpus.txt --vocab-size 300 -o tok/tokenizer.json >/dev/null 2>&1
"$ESCALE" -q tokenize --tokenizer tok/tokenizer.json --input corpus.txt --output shards --val-fraction 0 >/dev/null 2>&1
for lic in GPL-3 Apache-2.0; do
  "$ESCALE" -q tokenize --tokenizer tok/tokenizer.json --input /usr/share/common-licenses/$lic --output $lic \
    --val-fraction 0 >/dev/null 2>&1
done
cat > config.json <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 300, "hidden_size": 32,
 "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 256, "tie_word_embeddings": false}
JSON
"$ESCALE" -q init model --config config.json --seed 3 >/dev/null

TRAIN=(-q train --model model --steps 60 --seq-len 32 --micro-batch 4 --lr 3e-3
       --warmup 5 --save-every 2 --keep-last 2 --eval-every 0 --no-mfu --threads 1)
DATA=(--data shards)
train() { "$ESCALE" "${TRAIN[@]}" "${DATA[@]}" --out "$@"; }  # train RUN_DIR [extra flags]
strip_timing() { sed -E 's/,?"(tokens_per_s|step_s|mfu)":[^,}]*//g' "$1"; }

# SIGTERM: the run saves a checkpoint at the step it reached and exits 0.
"$ESCALE" -q train --model model --data shards --steps 1000000 --seq-len 32 --micro-batch 4 --save-every 0 \
  --eval-every 0 --no-mfu --threads 1 --out termed >/dev/null 2>termed.err &
pid=$!
sleep 1
kill -TERM "$pid"
wait "$pid" || { echo "kill_resume: SIGTERM run exited non-zero" >&2; cat termed.err >&2; exit 1; }
grep -q "stopped by signal" termed.err || { echo "kill_resume: no save on SIGTERM" >&2; exit 1; }
[[ -f termed/checkpoints/latest ]] || { echo "kill_resume: SIGTERM left no checkpoint" >&2; exit 1; }

# kill_test LABEL: an unbroken run, then KILLS SIGKILLed-and-resumed ones, compared bit for bit.
kill_test() {
  train straight >/dev/null
  kills=0
  attempts=0
  while ((kills < KILLS)); do
    attempts=$((attempts + 1))
    if ((attempts > KILLS * 5)); then echo "kill_resume: could not land $KILLS kills" >&2; exit 1; fi
    "$ESCALE" "${TRAIN[@]}" "${DATA[@]}" --out killed --resume >/dev/null 2>&1 &  # not via a function: $! must be escale
    pid=$!
    # Random moment: 0..0.8 s after start (start-up, steps, checkpoint writes all get hit).
    sleep "0.$((RANDOM % 8))$((RANDOM % 10))"
    if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
    wait "$pid" 2>/dev/null || true
    if [[ -f killed/checkpoints/latest ]] && grep -q step-00000060 killed/checkpoints/latest; then
      rm -rf killed  # finished before we could kill it enough: start over, the count stands
    fi
  done
  train killed --resume >/dev/null

  final_a=$(cat straight/checkpoints/latest)
  final_b=$(cat killed/checkpoints/latest)
  [[ $final_a == "$final_b" ]] || { echo "kill_resume: final checkpoints differ: $final_a vs $final_b" >&2; exit 1; }
  cmp straight/checkpoints/$final_a/model/model.safetensors killed/checkpoints/$final_b/model/model.safetensors
  cmp straight/checkpoints/$final_a/optimizer.safetensors killed/checkpoints/$final_b/optimizer.safetensors
  diff <(strip_timing straight/metrics.jsonl) <(strip_timing killed/metrics.jsonl)
  echo "kill_resume ($1): $kills kills, every resume continued to the identical final weights and losses"
  rm -rf straight killed
}

kill_test "--data"
DATA=(--data-blend "gpl=3:GPL-3 apache=1:Apache-2.0")
kill_test "--data-blend"
