// The evaluation of one model (escale eval): perplexity on documents and on token shards, and
// tasks scored the way lm-evaluation-harness scores them -- multiple choice by log-likelihood,
// GSM8K by generation (docs/eval.md). The command line only parses into EvalRunOptions and prints.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale::eval {

struct EvalRunOptions {
  std::string model, tokenizer;  // tokenizer: default MODEL/tokenizer.json
  std::string task_format = "auto", fewshot_from, fewshot_sampler = "auto", add_bos = "auto";
  std::string samples;  // per-document JSONL written here (atomically), or empty
  std::vector<std::string> text, shards, tasks;
  int64_t num_fewshot = 0, limit = -1, max_length = 0, batch = 4, threads = 0, max_gen_toks = 256;
  uint64_t fewshot_seed = 1234;
};

struct EvalReport {
  nlohmann::json results;  // everything measured, with the settings behind it
  std::string table;       // one line per measurement, for a terminal
};

Result<EvalReport> RunEvaluation(const EvalRunOptions& o);

}  // namespace escale::eval
