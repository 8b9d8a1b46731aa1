#include "eval/perplexity.h"

#include <cmath>
#include <numbers>

namespace escale::eval {

double PerplexityResult::token_perplexity() const {
  return tokens ? std::exp(-logprob / tokens) : NAN;
}
double PerplexityResult::word_perplexity() const {
  return words ? std::exp(-logprob / words) : NAN;
}
double PerplexityResult::byte_perplexity() const {
  return bytes ? std::exp(-logprob / bytes) : NAN;
}
double PerplexityResult::full_window_loss() const {
  return full_window_tokens ? -full_window_logprob / static_cast<double>(full_window_tokens) : NAN;
}
double PerplexityResult::bits_per_byte() const {
  return bytes ? -logprob / bytes / std::numbers::ln2 : NAN;
}

namespace {

Status ScoreWindows(LmScorer& scorer, const std::vector<TokenRequest>& windows, PerplexityResult& r,
                    const DoneFn& done) {
  const auto total = static_cast<int64_t>(windows.size());
  ESCALE_ASSIGN_OR_RETURN(std::vector<LogLikelihood> lls, scorer.Score(windows, [&](int64_t n) {
    if (done) done(n, total);
  }));
  for (size_t i = 0; i < lls.size(); ++i) {
    const LogLikelihood& ll = lls[i];
    r.logprob += ll.logprob;
    r.tokens += ll.tokens;
    if (static_cast<int64_t>(windows[i].continuation.size()) == scorer.max_length()) {
      r.full_window_logprob += ll.logprob;
      r.full_window_tokens += ll.tokens;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<PerplexityResult> TextPerplexity(LmScorer& scorer, RequestEncoder& enc,
                                        const std::vector<std::string>& docs, const DoneFn& done) {
  if (enc.prefix_token() < 0)
    return InvalidArgument(
        "the tokenizer has neither a BOS nor an EOS token to start rolling windows with");
  PerplexityResult r;
  std::vector<TokenRequest> windows;
  for (const std::string& d : docs) {
    const std::vector<int32_t> ids = enc.Encode(d);
    ESCALE_RETURN_IF_ERROR(enc.Check("document " + std::to_string(r.documents + 1)));
    std::vector<TokenRequest> w = RollingWindows(ids, enc.prefix_token(), scorer.max_length());
    windows.insert(windows.end(), std::make_move_iterator(w.begin()),
                   std::make_move_iterator(w.end()));
    r.words += CountPythonWords(d);
    r.bytes += static_cast<int64_t>(d.size());
    ++r.documents;
  }
  ESCALE_RETURN_IF_ERROR(ScoreWindows(scorer, windows, r, done));
  return r;
}

Result<PerplexityResult> TokenPerplexity(LmScorer& scorer,
                                         const std::vector<std::vector<int32_t>>& streams,
                                         const DoneFn& done) {
  PerplexityResult r;
  std::vector<TokenRequest> windows;
  for (const auto& s : streams) {
    if (s.size() < 2) continue;
    std::vector<TokenRequest> w =
        RollingWindows(std::span<const int32_t>(s).subspan(1), s.front(), scorer.max_length());
    windows.insert(windows.end(), std::make_move_iterator(w.begin()),
                   std::make_move_iterator(w.end()));
    ++r.documents;
  }
  ESCALE_RETURN_IF_ERROR(ScoreWindows(scorer, windows, r, done));
  return r;
}

}  // namespace escale::eval
