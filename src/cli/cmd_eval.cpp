// escale eval MODEL: perplexity on text or token shards, and multiple-choice tasks scored the way
// lm-evaluation-harness scores them (docs/eval.md).
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "core/atomic_output.h"
#include "eval/eval_run.h"

namespace escale::cli {
namespace {

struct EvalArgs : eval::EvalRunOptions {
  std::string output;
  bool json_out = false;
};

Status RunEval(const EvalArgs& a) {
  ESCALE_ASSIGN_OR_RETURN(eval::EvalReport r, eval::RunEvaluation(a));
  const std::string dumped =
      r.results.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
  if (!a.output.empty()) ESCALE_RETURN_IF_ERROR(WriteFileAtomic(a.output, dumped + "\n"));
  if (a.json_out)
    std::printf("%s\n", dumped.c_str());
  else
    std::fputs(r.table.c_str(), stdout);
  return Status::Ok();
}

CommandRegistration reg(70, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* c = app.add_subcommand(
      "eval", "Perplexity and multiple-choice evaluation (lm-evaluation-harness protocol)");
  c->add_option("model", a->model, "Model directory (Hugging Face safetensors checkpoint)")
      ->required();
  c->add_option("--tokenizer", a->tokenizer, "tokenizer.json (default: MODEL/tokenizer.json)");
  c->add_option("--text", a->text,
                "Perplexity over documents: text files (one document each), JSONL (\"text\" per "
                "line) or directories");
  c->add_option("--shards", a->shards,
                "Perplexity over token shards: a shard directory (its val_*.bin) or .bin files");
  c->add_option("--task", a->tasks,
                "Multiple-choice task JSONL (ARC, HellaSwag, PIQA, Winogrande, MMLU, BoolQ fields "
                "or generic {query, choices, gold})");
  c->add_option(
       "--task-format", a->task_format,
       "auto (from the fields), generic, arc, hellaswag, piqa, winogrande, mmlu, boolq, gsm8k")
      ->capture_default_str();
  c->add_option("--num-fewshot", a->num_fewshot, "Solved examples before each question")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1000}));
  c->add_option("--fewshot-from", a->fewshot_from,
                "JSONL of few-shot examples (another split); default: the task file itself, "
                "without the document being asked");
  c->add_option("--fewshot-sampler", a->fewshot_sampler,
                "auto (first_n for MMLU, else random), random, first_n")
      ->check(CLI::IsMember({"auto", "random", "first_n"}))
      ->capture_default_str();
  c->add_option("--fewshot-seed", a->fewshot_seed,
                "Seed of the random few-shot sampler (lm-eval's default 1234)")
      ->capture_default_str();
  c->add_option("--max-gen-toks", a->max_gen_toks,
                "Generation tasks (GSM8K): tokens generated at most per question")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("--limit", a->limit, "Evaluate only the first N documents of each task (-1: all)")
      ->capture_default_str();
  c->add_option("--max-length", a->max_length,
                "Longest model input in tokens (default: min(2048, max_position_embeddings))");
  c->add_option("--batch", a->batch, "Requests per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  c->add_option("--add-bos", a->add_bos,
                "Add BOS when encoding: auto (the tokenizer's template, like HF), yes, no")
      ->check(CLI::IsMember({"auto", "yes", "no"}))
      ->capture_default_str();
  c->add_option("--threads", a->threads, "OpenMP threads (0: default)")
      ->check(CLI::Range(int64_t{0}, int64_t{1024}));
  c->add_option("--output", a->output, "Write the results JSON here (atomically)");
  c->add_option("--samples", a->samples,
                "Write per-document log-likelihoods and predictions here (JSONL)");
  c->add_flag("--json", a->json_out, "Print the results as JSON");
  return [a]() { return RunEval(*a); };
});

}  // namespace
}  // namespace escale::cli
