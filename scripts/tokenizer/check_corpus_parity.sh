#!/usr/bin/env bash
# Whole-corpus parity: escale's ids vs Hugging Face tokenizers (Rust, via node) on the bundled
# corpus text, for the fetched Llama 3 / Qwen3 / Llama 2 tokenizers and any tokenizer.json
# directories given.
#   scripts/tokenizer/check_corpus_parity.sh [DIR_WITH_TOKENIZER_JSON...]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/tokenizer/fetch_tokenizers.sh
scripts/corpus/build_corpus.sh
escale=${ESCALE:-build/release/escale}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -c '
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as o:
    for line in f:
        o.write(json.loads(line)["text"] + "\n")
' build/corpus/corpus.jsonl "$tmp/corpus.txt"
status=0
for dir in build/tokenizers/llama3 build/tokenizers/qwen3 build/tokenizers/llama2 "$@"; do
  NODE_PATH=build/tokenizer-npm/node_modules node scripts/tokenizer/make_golden.mjs --encode "$dir" "$tmp/corpus.txt" > "$tmp/hf.json"
  "$escale" -q tokenizer encode "$dir/tokenizer.json" --file "$tmp/corpus.txt" --json > "$tmp/es.json"
  /usr/bin/python3 -c '
import json, sys
hf = json.load(open(sys.argv[1])); es = json.load(open(sys.argv[2]))["ids"]
first = next((i for i, (a, b) in enumerate(zip(hf, es)) if a != b), None)
same = hf == es
print(f"{sys.argv[3]}: {len(es)} tokens, " + ("identical to Hugging Face" if same else f"DIFFERENT (first at {first}, lengths {len(hf)} vs {len(es)})"))
sys.exit(0 if same else 1)
' "$tmp/hf.json" "$tmp/es.json" "$dir" || status=1
done
exit $status
