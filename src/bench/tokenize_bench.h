// escale bench tokenize: encode throughput of the tokenizer on a text file with N worker threads,
// and, in the same run, of two independent Hugging Face implementations (transformers.js and the
// Rust `tokenizers` crate through node, scripts/bench/tokenize_baseline.mjs) on the same documents.
// The token counts of all sides must agree; results belong in docs/benchmarks.md.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace escale::bench {

// The node script that runs the Hugging Face baselines, relative to the repository root.
inline constexpr const char* kTokenizeBaselineScript = "scripts/bench/tokenize_baseline.mjs";

struct TokenizeBenchOptions {
  std::string tokenizer;
  std::string input;
  int workers = 2;
  int repeat = 3;
  std::string baseline = "auto";
  std::string node_modules;
  bool json = false;
};

// Encodes the input with escale and the baselines, prints the figures (text, or one JSON object)
// and fails when the token counts differ.
Status RunTokenizeBench(const TokenizeBenchOptions& options);

}  // namespace escale::bench
