#!/usr/bin/env bash
# Set up, build, and run the EfficientScale flow on the bundled corpus as far as it exists today.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
scripts/build.sh release
exec scripts/demo_flow.sh
