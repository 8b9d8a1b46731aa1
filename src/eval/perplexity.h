// Perplexity two ways (docs/method.md §5, docs/eval.md "Perplexity"):
//  * text documents, scored like lm-eval's loglikelihood_rolling (every token once, in disjoint
//    windows of max_length), reported as lm-eval reports wikitext: word and byte perplexity and
//    bits per byte, plus the token-level figure;
//  * token shards (held-out validation data), each shard one stream whose first token (the
//    document delimiter) is the prefix: token perplexity.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "eval/lm_scorer.h"
#include "eval/requests.h"

namespace escale::eval {

struct PerplexityResult {
  int64_t documents = 0;
  int64_t tokens = 0;  // predicted tokens
  int64_t words = 0;   // lm-eval word count of the original text (0 for shards)
  int64_t bytes = 0;   // UTF-8 bytes of the original text (0 for shards)
  double logprob = 0;  // nats, summed over every predicted token
  // The windows that predict a whole max_length block: for shards exactly the trainer's
  // validation windows (every complete seq_len window), so full_window_loss() is the
  // validation loss of `escale train` with --eval-batches 0 at seq_len = max_length.
  int64_t full_window_tokens = 0;
  double full_window_logprob = 0;
  double full_window_loss() const;
  double token_perplexity() const;
  double word_perplexity() const;
  double byte_perplexity() const;
  double bits_per_byte() const;
};

using DoneFn = std::function<void(int64_t done, int64_t total)>;

Result<PerplexityResult> TextPerplexity(LmScorer& scorer, RequestEncoder& enc,
                                        const std::vector<std::string>& docs,
                                        const DoneFn& done = {});
// `streams`: token id sequences (shards); the first token of each is context only.
Result<PerplexityResult> TokenPerplexity(LmScorer& scorer,
                                         const std::vector<std::vector<int32_t>>& streams,
                                         const DoneFn& done = {});

}  // namespace escale::eval
