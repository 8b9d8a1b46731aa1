// Text generation on the KV-cache decoder: greedy or sampled (temperature, top-k, top-p) with a
// seeded portable RNG, stopping at a stop token (EOS), at any stop string (trimmed from the output,
// as lm-eval's generate_until does) or after max_new_tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/train_model.h"
#include "tokenizer/tokenizer.h"

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
  std::vector<int32_t>
      stop_ids;  // stop tokens: EOS and generation_config's eos_token_id (not output)
  // Only ids below this are sampled (0: every row of the head). A head padded past the
  // tokenizer (Qwen2.5-7B: 152064 rows, 151665 tokens) has rows no text decodes to.
  int64_t vocab_limit = 0;
};

// The stop tokens a model directory declares: eos_token_id (an id or a list) of
// generation_config.json when it exists, else of config.json's extra keys; `tokenizer_eos` is
// added. A malformed generation_config.json is an error naming the file.
Result<std::vector<int32_t>> ModelStopIds(const std::string& model_dir,
                                          const nlohmann::json& config_extra,
                                          std::optional<int32_t> tokenizer_eos);

// The KV cache `generate` allocates: `requested` when positive (--max-length), else what the call
// can reach, prompt + max_new_tokens, refused past max_positions. The model's whole context would
// cost a Llama 3.1 8B (131072 positions) ~34 GB of fp32 cache for any prompt.
Result<int64_t> KvCacheLength(int64_t prompt_tokens, int64_t max_new_tokens, int64_t max_positions,
                              int64_t requested);

struct GenerateResult {
  std::string text;             // generated text, cut before the first stop string
  std::vector<int32_t> tokens;  // generated ids (including those after the cut)
  std::string finish_reason;    // "eos", "stop", "length"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Runs the prompt through a reset decoder, then generates. `on_text` receives output text as soon
// as it can no longer turn into a stop string (streaming); the concatenation is `text`.
Result<GenerateResult> Generate(TrainModel& decoder, const tok::Tokenizer& tokenizer,
                                const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                const std::function<void(std::string_view)>& on_text = {});

}  // namespace escale::eval
