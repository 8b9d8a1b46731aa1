#!/usr/bin/env bash
# Coverage-guided fuzzing of one reader under ASan + UBSan:  scripts/fuzz.sh TARGET SECONDS
#   TARGET: safetensors hf_config tokenizer shards gguf recipe, or "all" (each for SECONDS)
# Builds the fuzz preset (clang, libFuzzer) when needed and starts from the committed seeds
# (tests/fuzz/corpus/TARGET); what it finds is kept in build/fuzz/corpus/TARGET for the next run. A
# crash, a sanitizer report, a leak or an input slower than 10 s stops it, leaves the input in
# build/fuzz/crashes/ and fails. Reproduce one with build/fuzz/tests/fuzz/fuzz_TARGET FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(safetensors hf_config tokenizer shards gguf recipe)
target=${1:?usage: scripts/fuzz.sh TARGET|all SECONDS (TARGET: ${all[*]})}
seconds=${2:-60}
targets=("$target")
[[ $target == all ]] && targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz: no target '$t' (one of: ${all[*]})" >&2; exit 2; }
done
scripts/build.sh fuzz >/dev/null
mkdir -p build/fuzz/crashes
for t in "${targets[@]}"; do
  mkdir -p "build/fuzz/corpus/$t"
  echo "== fuzz $t for ${seconds} s"
  rc=0
  "build/fuzz/tests/fuzz/fuzz_$t" "build/fuzz/corpus/$t" "tests/fuzz/corpus/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
    -artifact_prefix="build/fuzz/crashes/$t-" -print_final_stats=1 > "build/fuzz/$t.log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    tail -n 40 "build/fuzz/$t.log"
    echo "fuzz: $t failed (its input is in build/fuzz/crashes/, the log in build/fuzz/$t.log)" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ +DONE" "build/fuzz/$t.log" | tr '\n' ' '
  echo
done
