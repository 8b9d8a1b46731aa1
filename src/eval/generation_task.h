// Generation tasks scored by answer extraction: GSM8K as lm-evaluation-harness runs it
// (docs/eval.md, "GSM8K"): few-shot "Question: ...\nAnswer: <worked answer>" examples, greedy
// generation until "Question:", "</s>", "<|im_end|>" or EOS (at most max_gen_toks tokens), then
// exact match of the "strict-match" and "flexible-extract" answers against the reference.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "eval/requests.h"
#include "model/train_model.h"
#include "tokenizer/tokenizer.h"

namespace escale::eval {

struct Gsm8kDoc {
  nlohmann::json source;
  std::string question, answer;  // answer: the worked solution ending in "#### <number>"
};

// True for a document with string "question" and "answer" fields and no "choices".
bool LooksLikeGsm8k(const nlohmann::json& doc);
Result<std::vector<Gsm8kDoc>> LoadGsm8kFile(const std::string& path);

struct GenerationTaskOptions {
  int64_t num_fewshot = 5;
  uint64_t fewshot_seed = 1234;
  int64_t limit = -1;
  int64_t max_gen_toks = 256;
  std::vector<std::string> until = {"Question:", "</s>", "<|im_end|>"};
};

struct Gsm8kDocResult {
  std::string prompt, generation, strict, flexible;
  bool strict_correct = false, flexible_correct = false;
};

struct Gsm8kResult {
  int64_t documents = 0;
  double exact_match_strict = 0, exact_match_flexible = 0;
  double strict_stderr = 0, flexible_stderr = 0;
  std::vector<Gsm8kDocResult> docs;
};

// `pool`: few-shot examples (the train split); empty = the evaluated file without the document
// itself. The decoder's cache length is the model's max length (prompts are cut on the left to
// leave max_gen_toks free).
Result<Gsm8kResult> EvaluateGsm8k(TrainModel& decoder, const tok::Tokenizer& tokenizer,
                                  RequestEncoder& enc, const std::vector<Gsm8kDoc>& docs,
                                  const std::vector<Gsm8kDoc>& pool,
                                  const GenerationTaskOptions& opt,
                                  const std::function<void(int64_t, int64_t)>& done = {});

}  // namespace escale::eval
