#!/usr/bin/env bash
# Builds the bundled corpus build/corpus/corpus.jsonl (+ summary.json) from Debian text packages
# that scripts/setup.sh installs: fortunes, fortunes-zh, debian-reference-en/-zh-cn, dict-foldoc,
# dict-jargon, dict-devil. Provenance and licences: docs/corpus.md. Generated at set-up time,
# never committed. Idempotent: rebuilt only when missing, older than its builder, or with --force.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/corpus
need=(/usr/share/games/fortunes/fortunes /usr/share/games/fortunes/chinese
  /usr/share/debian-reference/debian-reference.en.txt.gz
  /usr/share/debian-reference/debian-reference.zh-cn.txt.gz
  /usr/share/dictd/foldoc.dict.dz /usr/share/dictd/jargon.dict.dz /usr/share/dictd/devil.dict.dz)
for f in "${need[@]}"; do
  if [[ ! -f $f ]]; then
    echo "build_corpus: $f is missing; run scripts/setup.sh to install the corpus packages" >&2
    exit 1
  fi
done
builder=scripts/corpus/build_corpus.py
if [[ -f $out/corpus.jsonl && $out/corpus.jsonl -nt $builder && "${1:-}" != --force ]]; then
  exit 0
fi
mkdir -p "$out"
/usr/bin/python3 "$builder" "$out/corpus.jsonl" "$out/summary.json"
