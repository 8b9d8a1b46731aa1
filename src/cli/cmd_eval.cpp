// escale eval MODEL: perplexity on text or token shards, and multiple-choice tasks scored the way
// lm-evaluation-harness scores them (docs/eval.md).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "cli/command.h"
#include "core/atomic_output.h"
#include "core/progress.h"
#include "eval/generation_task.h"
#include "eval/lm_scorer.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"
#include "io/hf_model.h"
#include "io/token_shards.h"
#include "io/tokenizer.h"
#include "io/tokenizer_documents.h"
#include "model/decoder.h"

namespace escale::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct EvalArgs {
  std::string model, tokenizer, task_format = "auto", fewshot_from, fewshot_sampler = "auto",
                                add_bos = "auto";
  std::string output, samples;
  std::vector<std::string> text, shards, tasks;
  int64_t num_fewshot = 0, limit = -1, max_length = 0, batch = 4, threads = 0, max_gen_toks = 256;
  uint64_t fewshot_seed = 1234;
  bool json_out = false;
};

Result<std::vector<std::string>> ReadDocuments(const std::vector<std::string>& inputs) {
  ESCALE_ASSIGN_OR_RETURN(std::vector<tok::SourceFile> sources, tok::ListSources(inputs));
  std::vector<std::string> docs;
  for (const auto& s : sources) {
    ESCALE_ASSIGN_OR_RETURN(tok::DocumentReader r, tok::DocumentReader::Open(s));
    std::string doc;
    while (true) {
      ESCALE_ASSIGN_OR_RETURN(bool more, r.Next(doc));
      if (!more) break;
      docs.push_back(doc);
    }
  }
  return docs;
}

// DIR -> its val_*.bin shards (train_*.bin when there is no val split); FILE -> itself.
Result<std::vector<std::string>> ShardFiles(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    std::error_code ec;
    if (!fs::is_directory(in, ec)) {
      if (!fs::is_regular_file(in, ec))
        return NotFound("--shards " + in + " is neither a directory nor a file");
      files.push_back(in);
      continue;
    }
    std::vector<std::string> val, train;
    for (const auto& e : fs::directory_iterator(in, ec)) {
      const std::string name = e.path().filename().string();
      if (e.path().extension() != ".bin") continue;
      if (name.starts_with("val_")) val.push_back(e.path().string());
      if (name.starts_with("train_")) train.push_back(e.path().string());
    }
    if (ec) return IoError("cannot list " + in + ": " + ec.message());
    auto& chosen = val.empty() ? train : val;
    if (chosen.empty())
      return NotFound("--shards " + in + " holds no val_*.bin or train_*.bin shards");
    std::sort(chosen.begin(), chosen.end());
    files.insert(files.end(), chosen.begin(), chosen.end());
  }
  return files;
}

// Progress whose total is only known once the requests are built.
std::function<void(int64_t, int64_t)> ProgressFn(std::optional<Progress>& p, std::string label,
                                                 std::string unit) {
  return [&p, label = std::move(label), unit = std::move(unit)](int64_t done, int64_t total) {
    if (!p) p.emplace(label, static_cast<uint64_t>(total), unit);
    p->Update(static_cast<uint64_t>(done));
  };
}

// The first document of a JSONL task file, to tell generation tasks from multiple choice.
Result<json> FirstDocument(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open task file " + path);
  std::string line;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos)
      return json::parse(line, nullptr, false);
  return FormatError(path + " holds no documents");
}

json PerplexityJson(const eval::PerplexityResult& r, bool text) {
  json j = {{"documents", r.documents},
            {"tokens", r.tokens},
            {"logprob", r.logprob},
            {"token_perplexity", r.token_perplexity()}};
  if (text) {
    j["words"] = r.words;
    j["bytes"] = r.bytes;
    j["word_perplexity"] = r.word_perplexity();
    j["byte_perplexity"] = r.byte_perplexity();
    j["bits_per_byte"] = r.bits_per_byte();
  }
  return j;
}

Status RunEval(const EvalArgs& a) {
  if (a.text.empty() && a.shards.empty() && a.tasks.empty())
    return InvalidArgument("nothing to evaluate: give --text, --shards and/or --task");
  if (a.threads > 0) omp_set_num_threads(static_cast<int>(a.threads));
  ESCALE_ASSIGN_OR_RETURN(HfModel model, ReadHfModel(a.model));
  const int64_t max_length = a.max_length > 0
                                 ? a.max_length
                                 : std::min<int64_t>(2048, model.config.max_position_embeddings);
  ESCALE_ASSIGN_OR_RETURN(auto scorer,
                          eval::LmScorer::Create(model.config, model.tensors, max_length, a.batch));
  json results = {{"model", a.model}, {"max_length", max_length}, {"batch", a.batch}};

  std::shared_ptr<const tok::Tokenizer> tokenizer;
  std::unique_ptr<eval::RequestEncoder> enc;
  if (!a.text.empty() || !a.tasks.empty()) {
    const std::string path = a.tokenizer.empty() ? a.model + "/tokenizer.json" : a.tokenizer;
    auto t = tok::Tokenizer::FromFile(path);
    if (!t.ok())
      return Status(t.status().code(),
                    t.status().message() + (a.tokenizer.empty() ? " (pass --tokenizer)" : ""));
    tokenizer = *t;
    if (tokenizer->vocab_size() > model.config.vocab_size)
      return InvalidArgument("the tokenizer has " + std::to_string(tokenizer->vocab_size()) +
                             " ids but the model's vocabulary is " +
                             std::to_string(model.config.vocab_size) +
                             "; they do not belong together");
    bool bos = tokenizer->template_adds_bos();
    if (a.add_bos == "yes") bos = true;
    if (a.add_bos == "no") bos = false;
    enc = std::make_unique<eval::RequestEncoder>(*tokenizer, bos);
    results["tokenizer"] = {{"path", path}, {"sha256", tokenizer->sha256()}, {"add_bos", bos}};
  }

  std::string table;
  char line[512];
  if (!a.text.empty()) {
    ESCALE_ASSIGN_OR_RETURN(std::vector<std::string> docs, ReadDocuments(a.text));
    std::optional<Progress> p;
    ESCALE_ASSIGN_OR_RETURN(
        eval::PerplexityResult r,
        eval::TextPerplexity(*scorer, *enc, docs, ProgressFn(p, "perplexity (text)", "windows")));
    if (p) p->Finish();
    results["text_perplexity"] = PerplexityJson(r, true);
    std::snprintf(line, sizeof line,
                  "text perplexity: %lld documents, %lld tokens: token ppl %.4f, word ppl %.4f, "
                  "byte ppl %.4f, "
                  "bits/byte %.4f\n",
                  static_cast<long long>(r.documents), static_cast<long long>(r.tokens),
                  r.token_perplexity(), r.word_perplexity(), r.byte_perplexity(),
                  r.bits_per_byte());
    table += line;
  }
  if (!a.shards.empty()) {
    ESCALE_ASSIGN_OR_RETURN(std::vector<std::string> files, ShardFiles(a.shards));
    std::vector<std::vector<int32_t>> streams;
    for (const std::string& f : files) {
      ESCALE_ASSIGN_OR_RETURN(tok::TokenShard s, tok::TokenShard::Open(f, model.config.vocab_size));
      streams.push_back(s.Slice(0, s.size()));
    }
    std::optional<Progress> p;
    ESCALE_ASSIGN_OR_RETURN(
        eval::PerplexityResult r,
        eval::TokenPerplexity(*scorer, streams, ProgressFn(p, "perplexity (shards)", "windows")));
    if (p) p->Finish();
    json j = PerplexityJson(r, false);
    j["files"] = files;
    j["loss"] = r.tokens ? -r.logprob / static_cast<double>(r.tokens) : NAN;
    j["validation_loss"] = r.full_window_loss();
    j["validation_tokens"] = r.full_window_tokens;
    results["shard_perplexity"] = j;
    std::snprintf(line, sizeof line,
                  "shard perplexity: %zu shards, %lld tokens: loss %.4f, token ppl %.4f; "
                  "validation loss %.4f (%lld tokens in complete %lld-token windows)\n",
                  files.size(), static_cast<long long>(r.tokens), j["loss"].get<double>(),
                  r.token_perplexity(), r.full_window_loss(),
                  static_cast<long long>(r.full_window_tokens),
                  static_cast<long long>(scorer->max_length()));
    table += line;
  }

  std::optional<eval::TaskFormat> forced;
  if (a.task_format != "auto" && a.task_format != "gsm8k") {
    ESCALE_ASSIGN_OR_RETURN(eval::TaskFormat f, eval::ParseTaskFormat(a.task_format));
    forced = f;
  }
  if (!a.fewshot_from.empty() && a.tasks.size() != 1)
    return InvalidArgument("--fewshot-from applies to one task; evaluate tasks one at a time");
  std::optional<AtomicFile> samples;
  if (!a.samples.empty()) {
    ESCALE_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(a.samples));
    samples.emplace(std::move(f));
  }
  // One JSON object per line; invalid UTF-8 in generated text is replaced, never an error.
  const auto write_sample = [&samples](const json& s) {
    const std::string text = s.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    return samples->Write(text.data(), text.size());
  };
  std::unique_ptr<Decoder> decoder;
  for (const std::string& path : a.tasks) {
    const std::string name = fs::path(path).stem().string();
    ESCALE_ASSIGN_OR_RETURN(json first, FirstDocument(path));
    if (a.task_format == "gsm8k" || (a.task_format == "auto" && eval::LooksLikeGsm8k(first))) {
      ESCALE_ASSIGN_OR_RETURN(std::vector<eval::Gsm8kDoc> docs, eval::LoadGsm8kFile(path));
      std::vector<eval::Gsm8kDoc> pool;
      if (!a.fewshot_from.empty()) {
        ESCALE_ASSIGN_OR_RETURN(pool, eval::LoadGsm8kFile(a.fewshot_from));
      }
      if (!decoder) {
        ESCALE_ASSIGN_OR_RETURN(decoder, Decoder::Create(model.config, model.tensors, max_length));
      }
      eval::GenerationTaskOptions go;
      go.num_fewshot = a.num_fewshot;
      go.fewshot_seed = a.fewshot_seed;
      go.limit = a.limit;
      go.max_gen_toks = a.max_gen_toks;
      std::optional<Progress> p;
      ESCALE_ASSIGN_OR_RETURN(eval::Gsm8kResult r,
                              eval::EvaluateGsm8k(*decoder, *tokenizer, *enc, docs, pool, go,
                                                  ProgressFn(p, "task " + name, "documents")));
      if (p) p->Finish();
      results["tasks"][name] = {{"file", path},
                                {"format", "gsm8k"},
                                {"documents", r.documents},
                                {"num_fewshot", a.num_fewshot},
                                {"fewshot_seed", a.fewshot_seed},
                                {"max_gen_toks", a.max_gen_toks},
                                {"exact_match_strict", r.exact_match_strict},
                                {"exact_match_strict_stderr", r.strict_stderr},
                                {"exact_match_flexible", r.exact_match_flexible},
                                {"exact_match_flexible_stderr", r.flexible_stderr}};
      std::snprintf(line, sizeof line,
                    "task %-20s %-10s %6lld docs  %lld-shot  exact_match strict %.4f ± %.4f  "
                    "flexible %.4f ± %.4f\n",
                    name.c_str(), "gsm8k", static_cast<long long>(r.documents),
                    static_cast<long long>(a.num_fewshot), r.exact_match_strict, r.strict_stderr,
                    r.exact_match_flexible, r.flexible_stderr);
      table += line;
      if (samples) {
        for (size_t i = 0; i < r.docs.size(); ++i) {
          const auto& d = r.docs[i];
          json s = {{"task", name},
                    {"doc", i},
                    {"prompt", d.prompt},
                    {"generation", d.generation},
                    {"strict", d.strict},
                    {"flexible", d.flexible},
                    {"strict_correct", d.strict_correct},
                    {"flexible_correct", d.flexible_correct}};
          ESCALE_RETURN_IF_ERROR(write_sample(s));
        }
      }
      continue;
    }
    eval::TaskFormat format = eval::TaskFormat::kGeneric;
    ESCALE_ASSIGN_OR_RETURN(std::vector<eval::McDoc> docs,
                            eval::LoadTaskFile(path, forced, &format));
    std::vector<eval::McDoc> pool;
    if (!a.fewshot_from.empty()) {
      ESCALE_ASSIGN_OR_RETURN(pool, eval::LoadTaskFile(a.fewshot_from, format));
    }
    eval::McOptions mo;
    mo.num_fewshot = a.num_fewshot;
    mo.limit = a.limit;
    mo.fewshot_seed = a.fewshot_seed;
    // MMLU takes the first n dev examples in lm-eval; every other task samples.
    const bool first_n = a.fewshot_sampler == "first_n" ||
                         (a.fewshot_sampler == "auto" && format == eval::TaskFormat::kMmlu);
    mo.sampler = first_n ? eval::FewshotSampler::kFirstN : eval::FewshotSampler::kRandom;
    std::optional<Progress> p;
    ESCALE_ASSIGN_OR_RETURN(
        eval::McResult r, eval::EvaluateMultipleChoice(*scorer, *enc, docs, pool, mo,
                                                       ProgressFn(p, "task " + name, "requests")));
    if (p) p->Finish();
    results["tasks"][name] = {{"file", path},
                              {"format", eval::TaskFormatName(format)},
                              {"documents", r.documents},
                              {"num_fewshot", a.num_fewshot},
                              {"fewshot_sampler", first_n ? "first_n" : "random"},
                              {"fewshot_seed", a.fewshot_seed},
                              {"acc", r.acc},
                              {"acc_stderr", r.acc_stderr},
                              {"acc_norm", r.acc_norm},
                              {"acc_bytes", r.acc_bytes}};
    std::snprintf(
        line, sizeof line,
        "task %-20s %-10s %6lld docs  %lld-shot  acc %.4f ± %.4f  acc_norm %.4f  acc_bytes %.4f\n",
        name.c_str(), eval::TaskFormatName(format).c_str(), static_cast<long long>(r.documents),
        static_cast<long long>(a.num_fewshot), r.acc, r.acc_stderr, r.acc_norm, r.acc_bytes);
    table += line;
    if (samples) {
      for (size_t i = 0; i < r.docs.size(); ++i) {
        const auto& d = r.docs[i];
        json s = {{"task", name},
                  {"doc", i},
                  {"gold", d.gold},
                  {"pred", d.pred},
                  {"pred_norm", d.pred_norm},
                  {"logprobs", d.logprobs},
                  {"greedy", d.greedy},
                  {"context", d.context}};
        ESCALE_RETURN_IF_ERROR(write_sample(s));
      }
    }
  }
  if (samples) ESCALE_RETURN_IF_ERROR(samples->Commit());
  const std::string dumped = results.dump(2, ' ', false, json::error_handler_t::replace);
  if (!a.output.empty()) ESCALE_RETURN_IF_ERROR(WriteFileAtomic(a.output, dumped + "\n"));
  if (a.json_out)
    std::printf("%s\n", dumped.c_str());
  else
    std::fputs(table.c_str(), stdout);
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
