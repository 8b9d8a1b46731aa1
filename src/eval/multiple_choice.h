// Multiple-choice evaluation by log-likelihood, as lm-evaluation-harness scores it
// (docs/eval.md, "Multiple choice"): task files are JSONL in the field layout of the Hugging Face
// datasets (ARC, HellaSwag, PIQA, Winogrande, MMLU, BoolQ) or escale's generic
// {"query", "choices", "gold"}; prompts are built with lm-eval's templates and few-shot
// assembly (its seeded sampler reproduced with CPython's generator), and each choice is one
// log-likelihood request. Metrics: acc, acc_norm (per character), acc_bytes (per UTF-8 byte).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "eval/lm_scorer.h"
#include "eval/requests.h"

namespace escale::eval {

enum class TaskFormat { kGeneric, kArc, kHellaswag, kPiqa, kWinogrande, kMmlu, kBoolq };
Result<TaskFormat> ParseTaskFormat(
    const std::string& name);  // "auto" is resolved by DetectTaskFormat
std::string TaskFormatName(TaskFormat f);
// From the fields of the first document.
Result<TaskFormat> DetectTaskFormat(const nlohmann::json& doc);

// One document, rendered. Ordinary tasks have one context and a continuation per choice;
// Winogrande has a context per choice and one shared continuation.
struct McDoc {
  nlohmann::json source;              // the JSON object as read (few-shot exclusion compares these)
  std::vector<std::string> contexts;  // 1, or one per choice
  std::vector<std::string> continuations;  // one per choice, or 1 (shared)
  std::vector<std::string> choice_texts;   // for acc_norm / acc_bytes lengths
  int gold = 0;
  std::string fewshot_example;  // how this document reads as a solved example (text + answer)
  std::string description;      // MMLU's task description, else empty
  int64_t choices() const { return static_cast<int64_t>(choice_texts.size()); }
};

Result<McDoc> RenderDoc(TaskFormat f, const nlohmann::json& doc);
// Reads a JSONL file of documents (one clear error naming the line for anything malformed).
Result<std::vector<McDoc>> LoadTaskFile(const std::string& path, std::optional<TaskFormat> format,
                                        TaskFormat* detected = nullptr);

enum class FewshotSampler { kRandom, kFirstN };

struct McOptions {
  int64_t num_fewshot = 0;
  FewshotSampler sampler = FewshotSampler::kRandom;
  uint64_t fewshot_seed = 1234;  // lm-eval's default fewshot_random_seed
  int64_t limit = -1;            // evaluate only the first N documents
};

struct McDocResult {
  std::vector<double> logprobs;  // per choice
  std::vector<bool> greedy;
  int gold = 0;
  int pred = 0, pred_norm = 0, pred_bytes = 0;
  std::string context;  // the first context, for the samples log
};

struct McResult {
  int64_t documents = 0;
  double acc = 0, acc_norm = 0, acc_bytes = 0;
  double acc_stderr = 0;  // sqrt(p(1-p)/(n-1)), as lm-eval reports it
  std::vector<McDocResult> docs;
};

// `pool`: few-shot examples (another split); empty = the evaluated documents themselves, in
// which case the document being evaluated is excluded from its own examples, as lm-eval does.
Result<McResult> EvaluateMultipleChoice(LmScorer& scorer, RequestEncoder& enc,
                                        const std::vector<McDoc>& docs,
                                        const std::vector<McDoc>& pool, const McOptions& opt,
                                        const std::function<void(int64_t, int64_t)>& done = {});

}  // namespace escale::eval
