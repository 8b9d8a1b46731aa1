#!/usr/bin/env bash
# The English text of `escale bench tokenize` (docs/benchmarks.md, "Tokenizer"): the documents of
# the bundled corpus whose file is English ("lang": "en"), repeated REPEAT times (default 2, about
# 5 MB of text), as JSONL in build/bench/english.jsonl. Both escale and the node baseline read
# this one file, one document per line.
#   scripts/bench/english_text.sh [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/../.."
repeat=${1:-2}
scripts/corpus/build_corpus.sh
mkdir -p build/bench
/usr/bin/python3 - "$repeat" build/corpus/corpus.jsonl build/bench/english.jsonl <<'PY'
import json, os, sys
repeat, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lines = [l for l in open(src, encoding="utf-8") if json.loads(l).get("lang") == "en"]
text_bytes = sum(len(json.loads(l)["text"].encode("utf-8")) for l in lines) * repeat
with open(dst + ".tmp", "w", encoding="utf-8") as o:
    for _ in range(repeat):
        o.writelines(lines)
os.replace(dst + ".tmp", dst)
print(f"{dst}: {len(lines) * repeat} English documents ({len(lines)} x {repeat}), {text_bytes / 1e6:.2f} MB of text")
PY
