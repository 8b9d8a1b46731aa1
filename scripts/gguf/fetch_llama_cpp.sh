#!/usr/bin/env bash
# Fetches node-llama-cpp with its prebuilt CPU binaries (the real llama.cpp) into build/gguf-npm/
# for the GGUF export tests (never committed). Never builds llama.cpp from source: with no usable
# prebuilt binary the tests skip. Idempotent; without npm or network it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
npm_dir=build/gguf-npm
# Pinned: the version the GGUF tests were verified against.
# Optional dependencies (CUDA/Vulkan/ARM builds, ~700 MB) are left out; only the x64 CPU binary.
PACKAGES=(node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1)
if [[ -d $npm_dir/node_modules/node-llama-cpp && -d $npm_dir/node_modules/@node-llama-cpp/linux-x64 &&
      "${1:-}" != --force ]]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "fetch_llama_cpp: npm not found; the llama.cpp GGUF tests will skip" >&2
  exit 0
fi
mkdir -p "$npm_dir"
[[ -f $npm_dir/package.json ]] || echo '{"name":"escale-gguf-check","private":true,"type":"module"}' > "$npm_dir/package.json"
# NODE_LLAMA_CPP_SKIP_DOWNLOAD: the postinstall step must not fetch or compile llama.cpp.
if ! (cd "$npm_dir" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --no-audit --no-fund \
        --loglevel=error "${PACKAGES[@]}" >/dev/null); then
  echo "fetch_llama_cpp: npm install failed (offline?); the llama.cpp GGUF tests will skip" >&2
  exit 0
fi
echo "fetch_llama_cpp: node-llama-cpp in $npm_dir"
