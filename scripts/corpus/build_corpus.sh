#!/usr/bin/env bash
# Builds the bundled corpus build/corpus/fortunes.jsonl from Debian's `fortunes` (English) and
# `fortunes-zh` (Chinese) packages, which scripts/setup.sh installs. Provenance and licences:
# docs/corpus.md. Generated at set-up time, never committed. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=/usr/share/games/fortunes
out=build/corpus
if [[ ! -f $src/fortunes || ! -f $src/chinese ]]; then
  echo "build_corpus: $src lacks the fortunes / fortunes-zh files; run scripts/setup.sh" >&2
  exit 1
fi
if [[ -f $out/fortunes.jsonl && "${1:-}" != --force ]]; then exit 0; fi
mkdir -p "$out"
/usr/bin/python3 scripts/corpus/build_corpus.py "$src" "$out/fortunes.jsonl" "$out/summary.json"
