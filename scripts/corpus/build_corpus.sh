#!/usr/bin/env bash
# Builds the bundled corpus build/corpus/corpus.jsonl (+ summary.json) from Debian text packages
# that scripts/setup.sh installs (fortunes, fortunes-zh, debian-reference-en/-zh-cn) and the data
# files of dict-foldoc, dict-jargon and dict-devil, which are downloaded from the Debian archive and
# unpacked under build/corpus/pkg rather than installed (installing them pulls in the dictd
# server daemon, which escale does not need). Provenance and licences: docs/corpus.md. Generated at set-up time,
# never committed. Idempotent: rebuilt only when missing, older than its builder, or with --force.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/corpus
dict_dir=/usr/share/dictd
dicts=(foldoc jargon devil)
have_dicts() { for d in "${dicts[@]}"; do [[ -f $1/$d.dict.dz && -f $1/$d.index ]] || return 1; done; }
if ! have_dicts "$dict_dir"; then
  dict_dir=$out/pkg/usr/share/dictd
  if ! have_dicts "$dict_dir"; then
    mkdir -p "$out/debs"
    rm -f "$out"/debs/*.deb
    if ! (cd "$out/debs" && apt-get download dict-foldoc dict-jargon dict-devil >/dev/null 2>&1); then
      echo "build_corpus: cannot download dict-foldoc, dict-jargon, dict-devil (apt-get download; run apt-get update, or check the network)" >&2
      exit 1
    fi
    for deb in "$out"/debs/*.deb; do dpkg-deb -x "$deb" "$out/pkg"; done
  fi
fi
need=(/usr/share/games/fortunes/fortunes /usr/share/games/fortunes/chinese
  /usr/share/debian-reference/debian-reference.en.txt.gz
  /usr/share/debian-reference/debian-reference.zh-cn.txt.gz)
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
/usr/bin/python3 "$builder" "$out/corpus.jsonl" "$out/summary.json" "$dict_dir"
