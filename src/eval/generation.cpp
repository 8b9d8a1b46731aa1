#include "eval/generation.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <filesystem>

#include "core/atomic_output.h"
#include "core/json_text.h"
#include "core/rng.h"

namespace escale::eval {

int32_t SampleToken(std::span<const float> logits, const SamplingOptions& opt, uint64_t& rng_state,
                    std::vector<std::pair<float, int32_t>>& cand) {
  const auto V = static_cast<int64_t>(logits.size());
  if (opt.temperature <= 0)
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  cand.clear();
  for (int64_t v = 0; v < V; ++v)
    cand.emplace_back(logits[static_cast<size_t>(v)], static_cast<int32_t>(v));
  // Most likely first; equal logits by id, so the order (and the sample) is the same everywhere.
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = cand.size();
  if (opt.top_k > 0 && static_cast<size_t>(opt.top_k) < keep) {
    keep = static_cast<size_t>(opt.top_k);
    std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(keep), cand.end(),
                      by_logit);
  } else {
    std::sort(cand.begin(), cand.end(), by_logit);
  }
  const double mx = cand[0].first;
  std::vector<double> p(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += p[i] = std::exp((cand[i].first - mx) / opt.temperature);
  if (opt.top_p < 1.0) {
    double mass = 0;
    size_t n = 0;
    while (n < keep && mass < opt.top_p * sum) mass += p[n++];
    keep = std::max<size_t>(n, 1);
    sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += p[i];
  }
  Rng rng(rng_state);
  double u = rng.NextUniform() * sum;
  rng_state = rng.NextU64();
  for (size_t i = 0; i < keep; ++i) {
    if (u < p[i]) return cand[i].second;
    u -= p[i];
  }
  return cand[keep - 1].second;
}

namespace {

Status AddIds(const nlohmann::json& v, const std::string& where, std::vector<int32_t>& out) {
  auto one = [&](const nlohmann::json& x) -> Status {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
      return FormatError(where + ": eos_token_id must be a token id or a list of them, got " +
                         x.dump());
    out.push_back(static_cast<int32_t>(x.get<int64_t>()));
    return Status::Ok();
  };
  if (v.is_null()) return Status::Ok();
  if (!v.is_array()) return one(v);
  for (const auto& x : v) ESCALE_RETURN_IF_ERROR(one(x));
  return Status::Ok();
}

}  // namespace

Result<std::vector<int32_t>> ModelStopIds(const std::string& model_dir,
                                          const nlohmann::json& config_extra,
                                          std::optional<int32_t> tokenizer_eos) {
  std::vector<int32_t> ids;
  const std::string path = model_dir + "/generation_config.json";
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) {
    ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
    ESCALE_ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonText(text, path));
    if (!j.is_object()) return FormatError(path + " must hold a JSON object");
    if (j.contains("eos_token_id")) ESCALE_RETURN_IF_ERROR(AddIds(j["eos_token_id"], path, ids));
  } else if (config_extra.is_object() && config_extra.contains("eos_token_id")) {
    ESCALE_RETURN_IF_ERROR(AddIds(config_extra["eos_token_id"], model_dir + "/config.json", ids));
  }
  if (tokenizer_eos) ids.push_back(*tokenizer_eos);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

Result<int64_t> KvCacheLength(int64_t prompt_tokens, int64_t max_new_tokens, int64_t max_positions,
                              int64_t requested) {
  if (requested > 0) return requested;
  const int64_t need = prompt_tokens + max_new_tokens;
  if (need > max_positions)
    return InvalidArgument("the prompt (" + std::to_string(prompt_tokens) +
                           " tokens) plus --max-new-tokens " + std::to_string(max_new_tokens) +
                           " exceed the model's context of " + std::to_string(max_positions) +
                           " (max_position_embeddings); shorten them or pass --max-length");
  return need;
}

Result<GenerateResult> Generate(TrainModel& dec, const tok::Tokenizer& tokenizer,
                                const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                const std::function<void(std::string_view)>& on_text) {
  using Clock = std::chrono::steady_clock;
  if (prompt.empty()) return InvalidArgument("the prompt encodes to no tokens");
  if (opt.max_new_tokens < 0) return InvalidArgument("--max-new-tokens must be >= 0");
  if (opt.sampling.top_p <= 0 || opt.sampling.top_p > 1)
    return InvalidArgument("--top-p must be in (0, 1]");
  if (static_cast<int64_t>(prompt.size()) + opt.max_new_tokens > dec.kv_positions())
    return InvalidArgument("the prompt (" + std::to_string(prompt.size()) +
                           " tokens) plus --max-new-tokens " + std::to_string(opt.max_new_tokens) +
                           " exceed the context of " + std::to_string(dec.kv_positions()) +
                           " tokens");
  if (opt.vocab_limit < 0) return InvalidArgument("the vocabulary limit must be >= 0");
  GenerateResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());
  dec.Truncate(0);
  auto t0 = Clock::now();
  ESCALE_ASSIGN_OR_RETURN(std::span<const float> logits, dec.Decode(prompt));
  const size_t sampled = opt.vocab_limit > 0
                             ? std::min(logits.size(), static_cast<size_t>(opt.vocab_limit))
                             : logits.size();
  r.prefill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  uint64_t rng_state = Rng::Stream(opt.sampling.seed, "sampling").NextU64();
  std::vector<std::pair<float, int32_t>> scratch;
  size_t hold = 0;  // bytes that could still be the start of a stop string
  for (const auto& s : opt.stop) hold = std::max(hold, s.empty() ? 0 : s.size() - 1);
  size_t emitted = 0;
  std::string decoded;
  r.finish_reason = "length";
  for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
    const int32_t next = SampleToken(logits.first(sampled), opt.sampling, rng_state, scratch);
    if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), next) != opt.stop_ids.end()) {
      r.finish_reason = "eos";
      break;
    }
    r.tokens.push_back(next);
    if (tokenizer.decodes_by_concatenation()) {
      ESCALE_ASSIGN_OR_RETURN(std::string piece, tokenizer.Decode({next}));
      decoded += piece;
    } else {
      // SentencePiece-style decoders strip the leading space of the whole text, not of every
      // token: decode all generated ids (as lm-eval decodes the continuation); the result only
      // grows at its end, so the text already emitted stays a prefix.
      ESCALE_ASSIGN_OR_RETURN(decoded, tokenizer.Decode(r.tokens));
    }
    size_t cut = std::string::npos;
    for (const auto& s : opt.stop)
      if (!s.empty())
        cut = std::min(cut, decoded.find(s, emitted > s.size() ? emitted - s.size() : 0));
    if (cut != std::string::npos) {
      decoded.resize(cut);
      r.finish_reason = "stop";
      break;
    }
    if (on_text && decoded.size() > emitted + hold) {
      on_text(std::string_view(decoded).substr(emitted, decoded.size() - hold - emitted));
      emitted = decoded.size() - hold;
    }
    if (i + 1 < opt.max_new_tokens) {
      const std::vector<int32_t> one = {next};
      ESCALE_ASSIGN_OR_RETURN(logits, dec.Decode(one));
    }
  }
  if (on_text && decoded.size() > emitted) on_text(std::string_view(decoded).substr(emitted));
  r.text = std::move(decoded);
  r.decode_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

}  // namespace escale::eval
