#!/usr/bin/env bash
# The EfficientScale flow as far as it exists today (see README "Status").
set -euo pipefail
cd "$(dirname "$0")/.."
ESCALE=build/release/escale
echo "== escale $($ESCALE --version)"
$ESCALE --help
