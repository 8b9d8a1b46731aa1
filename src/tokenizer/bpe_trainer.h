// Byte-level BPE training (GPT-2 style): GPT-2 pre-tokenization regex, a 256-byte alphabet (ids
// 0..255 in byte order), then merges of the most frequent adjacent pair, ties broken by the
// smaller (left id, right id) so results do not depend on hash order. Output is a tokenizer.json
// that Hugging Face tokenizers and transformers.js load and encode identically.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale::tok {

struct TrainOptions {
  std::vector<std::string> inputs;          // files or directories, see tokenizer/documents.h
  int vocab_size = 0;                       // bytes + merges + special tokens
  std::vector<std::string> special_tokens;  // default: {"<|endoftext|>"}
  int min_frequency = 2;
  bool progress = true;
};

// Returns the tokenizer.json text.
Result<std::string> TrainByteLevelBpe(const TrainOptions& opts);

// Training on in-memory documents (tests).
Result<std::string> TrainByteLevelBpeFromTexts(const std::vector<std::string>& docs,
                                               const TrainOptions& opts);

}  // namespace escale::tok
