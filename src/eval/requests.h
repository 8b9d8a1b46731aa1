// How lm-evaluation-harness turns text into scoring requests (docs/eval.md, "The scoring
// primitive" and "Perplexity"): the context/continuation split of a log-likelihood request and the
// disjoint rolling windows of a perplexity document. Pure functions of token ids and text, so they
// are tested on their own.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace escale::eval {

// One log-likelihood request: the sum of log p(continuation | context).
struct TokenRequest {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;
};

// Number of trailing bytes of `s` that Python's str.rstrip() removes (Unicode whitespace as
// str.isspace defines it). Invalid UTF-8 at the end stops the scan.
size_t TrailingPythonWhitespace(std::string_view s);

// Encodes text the way lm-eval's tok_encode does for a causal model: special tokens in the text
// are parsed, and BOS is added when `add_bos` (the tokenizer's default for Llama 3).
class RequestEncoder {
 public:
  RequestEncoder(const tok::Tokenizer& tok, bool add_bos);
  std::vector<int32_t> Encode(std::string_view text);
  // lm-eval `_encode_pair`: trailing whitespace of the context moves to the continuation, the
  // joint string is tokenised, and the continuation is whatever follows the context's token
  // count. An empty context becomes the prefix token (BOS, else EOS).
  TokenRequest EncodePair(std::string_view context, std::string_view continuation);
  int32_t prefix_token() const { return prefix_; }
  // Ok, or the failure of an Encode since the encoder was made: a pre-tokenizer regex hit its
  // work bound, so those ids are not what the tokenizer means (`what` names the text).
  Status Check(const std::string& what) const;

 private:
  tok::Encoder enc_;
  tok::EncodeOptions opts_;
  int32_t prefix_;
};

// The prefix token of rolling windows and empty contexts: BOS if the tokenizer has one, else EOS,
// else -1 (the caller must refuse).
int32_t PrefixToken(const tok::Tokenizer& tok);

// lm-eval `get_rolling_token_windows(tokens, prefix, max_len, context_len=1)` followed by
// `make_disjoint_window`: every token is predicted exactly once, in blocks of max_len, each
// conditioned on the tokens just before it. Empty `tokens` gives no window.
std::vector<TokenRequest> RollingWindows(std::span<const int32_t> tokens, int32_t prefix,
                                         int64_t max_len);

// The model input of a request (context + continuation, keeping the last max_len+1 tokens and
// dropping the final one) and the number of scored positions at its end.
struct ModelInput {
  std::vector<int32_t> tokens;
  std::vector<int32_t> targets;  // the continuation tokens, predicted by the last positions
};
ModelInput MakeModelInput(const TokenRequest& r, int64_t max_len);

}  // namespace escale::eval

namespace escale::eval {
// len(re.split(r"\s+", text)) in Python: whitespace runs + 1 (lm-eval's word count for
// word_perplexity). Invalid UTF-8 bytes count as non-space.
int64_t CountPythonWords(std::string_view text);
}  // namespace escale::eval
