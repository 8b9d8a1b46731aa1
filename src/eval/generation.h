// Text generation on the KV-cache decoder: greedy or sampled (temperature, top-k, top-p) with a
// seeded portable RNG, stopping at EOS, at any stop string (trimmed from the output, as lm-eval's
// generate_until does) or after max_new_tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "io/tokenizer.h"
#include "model/decoder.h"

namespace escale::eval {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (the first maximum)
  int64_t top_k = 0;         // 0: no limit
  double top_p = 1.0;        // nucleus: the smallest set of most likely tokens with mass >= top_p
  uint64_t seed = 0;
};

// Picks the next token from logits [V]. `rng_state` advances with every sampled token.
int32_t SampleToken(std::span<const float> logits, const SamplingOptions& opt, uint64_t& rng_state,
                    std::vector<std::pair<float, int32_t>>& scratch);

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // stop strings
  std::optional<int32_t> eos;     // stop token (not part of the output)
};

struct GenerateResult {
  std::string text;             // generated text, cut before the first stop string
  std::vector<int32_t> tokens;  // generated ids (including those after the cut)
  std::string finish_reason;    // "eos", "stop", "length"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Runs the prompt through a reset decoder, then generates. `on_text` receives output text as soon
// as it can no longer turn into a stop string (streaming); the concatenation is `text`.
Result<GenerateResult> Generate(Decoder& decoder, const tok::Tokenizer& tokenizer,
                                const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                const std::function<void(std::string_view)>& on_text = {});

}  // namespace escale::eval
