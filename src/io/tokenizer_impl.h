// Internal state of a loaded tokenizer (shared by loading, encoding and the trainer's writer).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/tokenizer.h"
#include "io/tokenizer_bpe.h"
#include "io/tokenizer_regex.h"

namespace escale::tok {

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };

struct PreTokStep {
  enum class Kind { kSplit, kByteLevelRegex } kind = Kind::kSplit;
  std::shared_ptr<const Regex> regex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
};

// Added tokens matched in one pass (leftmost, then longest).
struct AddedMatcher {
  std::vector<int32_t> tokens;  // indices into TokenizerImpl::added, longest first
  std::array<bool, 256> first_byte{};
  bool empty() const { return tokens.empty(); }
};

class TokenizerImpl {
 public:
  BpeModel bpe;
  std::vector<PreTokStep> pretok;
  bool prefix_space = false;  // ByteLevel(add_prefix_space) as the first pre-tokenizer step
  bool nfc = false;
  std::vector<AddedToken> added;
  AddedMatcher raw_matcher;         // normalized == false
  AddedMatcher normalized_matcher;  // normalized == true
  std::vector<std::string> id_bytes;   // exact bytes each id decodes to
  std::vector<std::string> id_token;   // the token's string in tokenizer.json
  std::vector<uint8_t> id_special;
  std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>> token_to_id;  // tokenizer.json strings
  std::vector<int32_t> template_prefix;  // post-processor ids before the text
  std::vector<int32_t> template_suffix;  // and after it
  std::optional<int32_t> bos;
  std::optional<int32_t> eos;
  std::string sha256;
};

// SHA-256 of `data`, lowercase hex.
std::string Sha256Hex(const void* data, size_t n);

}  // namespace escale::tok
