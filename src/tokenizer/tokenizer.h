// BPE tokenizer loaded from a Hugging Face tokenizer.json: byte-level (GPT-2, Llama 3, Qwen2
// family) or SentencePiece-style with byte fallback (Llama 2, Mistral v0.1; docs/tokenizer.md).
// Pipeline: added/special tokens split out of the raw text -> normalizer (NFC, Prepend, Replace) ->
// pre-tokenizer (Split regexes run verbatim through PCRE2, ByteLevel; or Metaspace) -> BPE by merge
// rank -> optional template post-processing. Byte-level decoding returns exact bytes:
// decode(encode(x)) == x for any byte string x, including invalid UTF-8 (see docs/tokenizer.md for
// how invalid bytes are segmented and for the SentencePiece-style round trip).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace escale::tok {

struct EncodeOptions {
  // Split special added tokens ("<|eot_id|>") out of the text as control tokens. Off for
  // pretraining text so that user text cannot inject control tokens (tiktoken encode_ordinary).
  bool parse_special = true;
  // Apply the post-processor (BOS for Llama 3 style templates).
  bool add_special_tokens = false;
};

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool normalized = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

class TokenizerImpl;
class Encoder;

class Tokenizer {
 public:
  // `tokenizer_config.json` beside `path`, when present, supplies bos/eos token names.
  static Result<std::shared_ptr<const Tokenizer>> FromFile(const std::string& path);
  static Result<std::shared_ptr<const Tokenizer>> FromJson(const std::string& json_text,
                                                           const std::string& config_json = "");
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Thread-safe; allocates a scratch Encoder per call. Hot loops should hold an Encoder.
  std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& opts = {}) const;
  // The same, failing with one line when a pre-tokenizer regex exceeded its work bound.
  Result<std::vector<int32_t>> TryEncode(std::string_view text,
                                         const EncodeOptions& opts = {}) const;
  // The text as the normalizer leaves it (NFC for Qwen2; unchanged for Llama 3). Round trip:
  // Decode(Encode(x)) == Normalize(x) for any bytes x; invalid bytes are kept as they are.
  std::string Normalize(std::string_view text) const;
  // Exact bytes. Ids out of range are an error, not skipped. SentencePiece-style tokenizers run
  // their decoder chain (U+2581 -> space, <0xNN> bytes, strip one leading space).
  Result<std::string> Decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // Decode(a + b) == Decode(a) + Decode(b) (byte-level BPE); false for SentencePiece-style
  // decoders, whose leading-space strip applies to the whole text.
  bool decodes_by_concatenation() const;

  // One past the largest id (model vocab and added tokens together).
  int32_t vocab_size() const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token's string as written in tokenizer.json (byte-level alphabet for model tokens).
  std::string IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;
  // Document delimiters for token shards: from the post-processor template or tokenizer_config.
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // True when the post-processor template prepends BOS (Llama 3 as shipped by Meta).
  bool template_adds_bos() const;
  // SHA-256 of the tokenizer.json bytes, hex: identifies the tokenizer in shard manifests.
  const std::string& sha256() const;

  const TokenizerImpl& impl() const { return *impl_; }

 private:
  friend class Encoder;
  explicit Tokenizer(std::unique_ptr<TokenizerImpl> impl);
  std::unique_ptr<TokenizerImpl> impl_;
};

// The SHA-256 (hex) of a tokenizer.json's bytes: what Tokenizer::sha256() reports and what
// `escale tokenize` records in a shard set's manifest, without loading the tokenizer.
Result<std::string> TokenizerFileSha256(const std::string& path);

// Per-thread encoding state: PCRE2 match data, a per-word cache, merge scratch. Not thread-safe;
// one per worker thread.
class Encoder {
 public:
  // `tok` must outlive the Encoder.
  explicit Encoder(const Tokenizer& tok, size_t max_cache_entries = 1u << 18);
  ~Encoder();
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;
  // Appends ids to `out`.
  void Encode(std::string_view text, const EncodeOptions& opts, std::vector<int32_t>& out);
  // Non-empty once an Encode() hit a pre-tokenizer regex's work bound (catastrophic
  // backtracking): that text's tail was kept as one piece, so its ids are not what the pattern
  // means. Says which pattern; callers turn it into a failure. Sticky until ClearError().
  const std::string& error() const;
  void ClearError();
  const Tokenizer& tokenizer() const { return *tok_; }

 private:
  struct State;
  const Tokenizer* tok_;
  std::unique_ptr<State> st_;
};

}  // namespace escale::tok
