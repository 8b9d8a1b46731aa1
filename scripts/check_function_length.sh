#!/usr/bin/env bash
# Functions in src/ longer than LIMIT lines (default 150), longest first, from Universal Ctags'
# start and end lines (a lambda counts toward the function that holds it). Exit 1 when any.
#   scripts/check_function_length.sh [LIMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-150}
command -v ctags >/dev/null || { echo "check_function_length: needs universal-ctags (apt-get install universal-ctags)" >&2; exit 2; }
long=$(ctags -R --languages=C++ --kinds-C++=f --fields=+ne -f - src |
  awk -F'\t' -v limit="$limit" '{
    ln = ""; en = ""
    for (i = 4; i <= NF; i++) { if ($i ~ /^line:/) ln = substr($i, 6); if ($i ~ /^end:/) en = substr($i, 5) }
    if (ln != "" && en != "" && en - ln + 1 > limit) printf "%5d  %s:%s  %s\n", en - ln + 1, $2, ln, $1
  }' | sort -rn)
if [[ -n $long ]]; then
  echo "functions over $limit lines:"
  echo "$long"
  exit 1
fi
echo "no function in src/ is over $limit lines"
