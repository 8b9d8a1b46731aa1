#!/usr/bin/env bash
# Rules of the source tree that a compiler does not check (DEVELOPERS.md "Code rules"):
#   - no function in src/ longer than LIMIT lines (default 150), from Universal Ctags' start and
#     end lines (a lambda counts toward the function that holds it);
#   - BLAS (cblas_*) is called only under src/ops: the model and everything above compose ops.
# Prints each violation and exits 1; run by ctest (source.rules).
#   scripts/check_sources.sh [LIMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-150}
# Universal Ctags only: other ctags have no end lines, and the check would pass vacuously.
CTAGS=$(command -v ctags-universal || command -v ctags || true)
if [[ -z $CTAGS ]] || ! "$CTAGS" --version 2>/dev/null | grep -q "Universal Ctags"; then
  echo "check_sources: needs universal-ctags (scripts/setup.sh installs it)" >&2
  exit 2
fi
failed=0
tags=$("$CTAGS" -R --languages=C++ --kinds-C++=f --fields=+ne -f - src)
# A check that saw no function bodies would pass by default: insist that it saw them.
seen=$(grep -c $'\tend:' <<<"$tags" || true)
if ((seen < 100)); then
  echo "check_sources: ctags reported end lines for only $seen functions in src/; cannot check" >&2
  exit 2
fi
long=$(printf '%s\n' "$tags" |
  awk -F'\t' -v limit="$limit" '{
    ln = ""; en = ""
    for (i = 4; i <= NF; i++) { if ($i ~ /^line:/) ln = substr($i, 6); if ($i ~ /^end:/) en = substr($i, 5) }
    if (ln != "" && en != "" && en - ln + 1 > limit) printf "%5d  %s:%s  %s\n", en - ln + 1, $2, ln, $1
  }' | sort -rn)
if [[ -n $long ]]; then
  echo "functions over $limit lines (split them into named steps):"
  echo "$long"
  failed=1
fi
blas=$(grep -rn --include='*.cpp' --include='*.h' -E '\bcblas_[a-z]' src | grep -v '^src/ops/' || true)
if [[ -n $blas ]]; then
  echo "cblas_* outside src/ops (add an op in src/ops and call it):"
  echo "$blas"
  failed=1
fi
if ((failed)); then exit 1; fi
echo "source rules hold: no function in src/ over $limit lines, cblas_* only under src/ops"
