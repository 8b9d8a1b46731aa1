#include "eval/generation_task.h"

#include <cmath>
#include <fstream>

#include "eval/answer_extraction.h"
#include "eval/fewshot.h"
#include "eval/generation.h"

namespace escale::eval {

namespace {
std::string Example(const Gsm8kDoc& d) {
  return "Question: " + d.question + "\nAnswer: " + d.answer;
}
}  // namespace

bool LooksLikeGsm8k(const nlohmann::json& d) {
  return d.is_object() && d.contains("question") && d["question"].is_string() &&
         d.contains("answer") && d["answer"].is_string() && !d.contains("choices");
}

Result<std::vector<Gsm8kDoc>> LoadGsm8kFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open task file " + path);
  std::vector<Gsm8kDoc> docs;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto doc = nlohmann::json::parse(line, nullptr, false);
    if (doc.is_discarded()) return FormatError(path + ":" + std::to_string(n) + ": not valid JSON");
    if (!LooksLikeGsm8k(doc))
      return FormatError(path + ":" + std::to_string(n) +
                         ": a GSM8K document needs string fields \"question\" and \"answer\"");
    docs.push_back({doc, doc["question"].get<std::string>(), doc["answer"].get<std::string>()});
  }
  if (docs.empty()) return FormatError(path + " holds no documents");
  return docs;
}

Result<Gsm8kResult> EvaluateGsm8k(TrainModel& dec, const tok::Tokenizer& tokenizer,
                                  RequestEncoder& enc, const std::vector<Gsm8kDoc>& all,
                                  const std::vector<Gsm8kDoc>& pool_in,
                                  const GenerationTaskOptions& opt,
                                  const std::function<void(int64_t, int64_t)>& done) {
  ESCALE_ASSIGN_OR_RETURN(const Gsm8kExtractors x, Gsm8kExtractors::Create());
  const size_t n =
      opt.limit >= 0 ? std::min(all.size(), static_cast<size_t>(opt.limit)) : all.size();
  const bool same_split = pool_in.empty();
  const auto& pool = same_split ? all : pool_in;
  ESCALE_ASSIGN_OR_RETURN(FewshotDraw draw,
                          FewshotDraw::Create(static_cast<int64_t>(pool.size()), opt.num_fewshot,
                                              same_split, false, opt.fewshot_seed));
  const int64_t max_ctx = dec.kv_positions() - opt.max_gen_toks;
  if (max_ctx < 1)
    return InvalidArgument("--max-length must exceed the generation budget of " +
                           std::to_string(opt.max_gen_toks));
  GenerateOptions g;
  g.max_new_tokens = opt.max_gen_toks;
  g.stop = opt.until;
  if (auto eos = tokenizer.eos_id()) g.stop_ids = {*eos};
  g.vocab_limit = tokenizer.vocab_size();
  Gsm8kResult r;
  r.docs.resize(n);
  double strict = 0, flexible = 0;
  for (size_t i = 0; i < n; ++i) {
    std::string prompt;
    for (int64_t p :
         draw.Next([&](int64_t j) { return pool[static_cast<size_t>(j)].source == all[i].source; }))
      prompt += Example(pool[static_cast<size_t>(p)]) + "\n\n";
    prompt += "Question: " + all[i].question + "\nAnswer:";
    std::vector<int32_t> ids = enc.Encode(prompt);
    ESCALE_RETURN_IF_ERROR(enc.Check("the prompt of document " + std::to_string(i + 1)));
    if (static_cast<int64_t>(ids.size()) > max_ctx) ids.erase(ids.begin(), ids.end() - max_ctx);
    ESCALE_ASSIGN_OR_RETURN(GenerateResult gen, Generate(dec, tokenizer, ids, g));
    Gsm8kDocResult& d = r.docs[i];
    d.prompt = std::move(prompt);
    d.generation = std::move(gen.text);
    d.strict = x.Strict(d.generation);
    d.flexible = x.Flexible(d.generation);
    d.strict_correct = x.ExactMatch(d.strict, all[i].answer);
    d.flexible_correct = x.ExactMatch(d.flexible, all[i].answer);
    strict += d.strict_correct;
    flexible += d.flexible_correct;
    if (done) done(static_cast<int64_t>(i + 1), static_cast<int64_t>(n));
  }
  r.documents = static_cast<int64_t>(n);
  if (n > 0) {
    const auto dn = static_cast<double>(n);
    r.exact_match_strict = strict / dn;
    r.exact_match_flexible = flexible / dn;
    if (n > 1) {
      r.strict_stderr = std::sqrt(r.exact_match_strict * (1 - r.exact_match_strict) / (dn - 1));
      r.flexible_stderr =
          std::sqrt(r.exact_match_flexible * (1 - r.exact_match_flexible) / (dn - 1));
    }
  }
  return r;
}

}  // namespace escale::eval
