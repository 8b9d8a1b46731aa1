#!/usr/bin/env bash
# Set up, build, and run the default EfficientScale pipeline (recipes/demo.toml) on the bundled corpus.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
scripts/build.sh release
exec scripts/demo_flow.sh
