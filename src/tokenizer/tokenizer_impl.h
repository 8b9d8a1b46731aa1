// Internal state of a loaded tokenizer (shared by loading, encoding and the trainer's writer).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer_regex.h"
#include "tokenizer/tokenizer.h"

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

// One normalizer step, applied in file order.
struct NormStep {
  enum class Kind { kNfc, kPrepend, kReplace } kind = Kind::kNfc;
  std::string a;  // Prepend: the prefix; Replace: the literal pattern
  std::string b;  // Replace: its replacement
};

// Metaspace pre-tokenizer (older SentencePiece conversions): spaces -> replacement, an optional
// prefix, and optionally a split before every replacement (MergedWithNext).
struct MetaspaceStep {
  enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
  std::string replacement = "\xe2\x96\x81";  // U+2581
  bool split = true;
};

// One decoder step of a SentencePiece-style tokenizer.json, applied to the token strings in order.
struct DecodeStep {
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind = Kind::kFuse;
  std::string a, b;  // Replace: pattern -> b; Strip: a is the character; Metaspace: a = replacement
  int start = 0, stop = 0;   // Strip
  bool strip_first = false;  // Metaspace: replacement dropped from the first token
};

class TokenizerImpl {
 public:
  BpeModel bpe;
  std::vector<PreTokStep> pretok;
  bool prefix_space = false;   // ByteLevel(add_prefix_space) as the first pre-tokenizer step
  bool nfc = false;            // the normalizer is exactly NFC (byte-level fast path)
  std::vector<NormStep> norm;  // the whole normalizer; empty = none
  // SentencePiece-style BPE (Llama 2, Mistral v0.1): vocabulary strings are literal UTF-8, the
  // model starts from characters with byte fallback, and decoding follows `decoder`.
  bool literal = false;
  std::optional<MetaspaceStep> metaspace;
  // No vocabulary token has U+2581 after another character, so no merge crosses the start of a
  // U+2581 run that follows other text: segments are cut there and cached per word.
  bool split_at_metaspace = false;
  // With split_at_metaspace and all 256 byte tokens: ASCII bytes outside the vocabulary whose
  // <0xNN> token no merge uses; such a character is a word of its own (newline, tab in Llama 2).
  std::array<bool, 256> cut_ascii{};
  bool has_decoder = false;
  std::vector<DecodeStep> decoder;
  std::vector<AddedToken> added;
  AddedMatcher raw_matcher;           // normalized == false
  AddedMatcher normalized_matcher;    // normalized == true
  std::vector<std::string> id_bytes;  // exact bytes each id decodes to
  std::vector<std::string> id_token;  // the token's string in tokenizer.json
  std::vector<uint8_t> id_special;
  std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>>
      token_to_id;                       // tokenizer.json strings
  std::vector<int32_t> template_prefix;  // post-processor ids before the text
  std::vector<int32_t> template_suffix;  // and after it
  std::optional<int32_t> bos;
  std::optional<int32_t> eos;
  std::string sha256;
};

// SHA-256 of `data`, lowercase hex.
std::string Sha256Hex(const void* data, size_t n);

}  // namespace escale::tok
