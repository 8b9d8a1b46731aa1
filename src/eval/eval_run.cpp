#include "eval/eval_run.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>

#include "core/atomic_output.h"
#include "core/progress.h"
#include "data/token_shards.h"
#include "eval/generation_task.h"
#include "eval/lm_scorer.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"
#include "io/hf_model.h"
#include "model/train_model.h"
#include "tokenizer/documents.h"
#include "tokenizer/tokenizer.h"

namespace escale::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

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

json PerplexityJson(const PerplexityResult& r, bool text) {
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

// One evaluation: the model and what scores it, loaded once, then each requested measurement
// adding its entry to the results and its line to the table.
class Session {
 public:
  explicit Session(const EvalRunOptions& o) : a_(o) {}
  Status Open();
  Status TextPerplexitySection();
  Status ShardPerplexitySection();
  Status Task(const std::string& path);
  Status Finish();
  EvalReport Report() && { return {std::move(results_), std::move(table_)}; }

 private:
  Status Gsm8kTask(const std::string& path, const std::string& name);
  Status MultipleChoiceTask(const std::string& path, const std::string& name);
  Status WriteSample(const json& s);
  // --samples: one line per document of a task, {"task", "doc"} and the document's fields.
  template <class Doc, class Fields>
  Status WriteSamples(const std::string& task, const std::vector<Doc>& docs, Fields fields) {
    if (!samples_) return Status::Ok();
    for (size_t i = 0; i < docs.size(); ++i) {
      json s = fields(docs[i]);
      s["task"] = task;
      s["doc"] = i;
      ESCALE_RETURN_IF_ERROR(WriteSample(s));
    }
    return Status::Ok();
  }
  void AddLine(const char* line) { table_ += line; }

  const EvalRunOptions& a_;
  HfModel model_;
  int64_t max_length_ = 0;
  std::unique_ptr<LmScorer> scorer_;
  std::shared_ptr<const tok::Tokenizer> tokenizer_;
  std::unique_ptr<RequestEncoder> enc_;
  std::unique_ptr<TrainModel> decoder_;  // for generation tasks, made on first use
  std::optional<TaskFormat> forced_;
  std::optional<AtomicFile> samples_;
  json results_;
  std::string table_;
};

Status Session::Open() {
  if (a_.text.empty() && a_.shards.empty() && a_.tasks.empty())
    return InvalidArgument("nothing to evaluate: give --text, --shards and/or --task");
  if (a_.threads > 0) omp_set_num_threads(static_cast<int>(a_.threads));
  ESCALE_ASSIGN_OR_RETURN(model_, ReadHfModel(a_.model));
  max_length_ = a_.max_length > 0 ? a_.max_length
                                  : std::min<int64_t>(2048, model_.config.max_position_embeddings);
  // The engine's fp32 copy replaces the mapped file in memory (pages re-read from the page cache
  // if a longer input rebuilds it).
  ESCALE_ASSIGN_OR_RETURN(scorer_,
                          LmScorer::Create(model_.config, model_.tensors, max_length_, a_.batch,
                                           [this](const Tensor& t) { ReleasePages(model_, t); }));
  results_ = {{"model", a_.model}, {"max_length", max_length_}, {"batch", a_.batch}};
  if (!a_.text.empty() || !a_.tasks.empty()) {
    const std::string path = a_.tokenizer.empty() ? a_.model + "/tokenizer.json" : a_.tokenizer;
    auto t = tok::Tokenizer::FromFile(path);
    if (!t.ok())
      return Status(t.status().code(),
                    t.status().message() + (a_.tokenizer.empty() ? " (pass --tokenizer)" : ""));
    tokenizer_ = *t;
    if (tokenizer_->vocab_size() > model_.config.vocab_size)
      return InvalidArgument("the tokenizer has " + std::to_string(tokenizer_->vocab_size()) +
                             " ids but the model's vocabulary is " +
                             std::to_string(model_.config.vocab_size) +
                             "; they do not belong together");
    bool bos = tokenizer_->template_adds_bos();
    if (a_.add_bos == "yes") bos = true;
    if (a_.add_bos == "no") bos = false;
    enc_ = std::make_unique<RequestEncoder>(*tokenizer_, bos);
    results_["tokenizer"] = {{"path", path}, {"sha256", tokenizer_->sha256()}, {"add_bos", bos}};
  }
  if (a_.task_format != "auto" && a_.task_format != "gsm8k") {
    ESCALE_ASSIGN_OR_RETURN(TaskFormat f, ParseTaskFormat(a_.task_format));
    forced_ = f;
  }
  if (!a_.fewshot_from.empty() && a_.tasks.size() != 1)
    return InvalidArgument("--fewshot-from applies to one task; evaluate tasks one at a time");
  if (!a_.samples.empty()) {
    ESCALE_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(a_.samples));
    samples_.emplace(std::move(f));
  }
  return Status::Ok();
}

Status Session::TextPerplexitySection() {
  ESCALE_ASSIGN_OR_RETURN(std::vector<std::string> docs, ReadDocuments(a_.text));
  std::optional<Progress> p;
  ESCALE_ASSIGN_OR_RETURN(
      PerplexityResult r,
      TextPerplexity(*scorer_, *enc_, docs, ProgressFn(p, "perplexity (text)", "windows")));
  if (p) p->Finish();
  results_["text_perplexity"] = PerplexityJson(r, true);
  char line[512];
  std::snprintf(line, sizeof line,
                "text perplexity: %lld documents, %lld tokens: token ppl %.4f, word ppl %.4f, "
                "byte ppl %.4f, "
                "bits/byte %.4f\n",
                static_cast<long long>(r.documents), static_cast<long long>(r.tokens),
                r.token_perplexity(), r.word_perplexity(), r.byte_perplexity(), r.bits_per_byte());
  AddLine(line);
  return Status::Ok();
}

Status Session::ShardPerplexitySection() {
  ESCALE_ASSIGN_OR_RETURN(std::vector<std::string> files, ShardFiles(a_.shards));
  std::vector<std::vector<int32_t>> streams;
  for (const std::string& f : files) {
    ESCALE_ASSIGN_OR_RETURN(tok::TokenShard s, tok::TokenShard::Open(f, model_.config.vocab_size));
    streams.push_back(s.Slice(0, s.size()));
  }
  std::optional<Progress> p;
  ESCALE_ASSIGN_OR_RETURN(
      PerplexityResult r,
      TokenPerplexity(*scorer_, streams, ProgressFn(p, "perplexity (shards)", "windows")));
  if (p) p->Finish();
  json j = PerplexityJson(r, false);
  j["files"] = files;
  j["loss"] = r.tokens ? -r.logprob / static_cast<double>(r.tokens) : NAN;
  j["validation_loss"] = r.full_window_loss();
  j["validation_tokens"] = r.full_window_tokens;
  results_["shard_perplexity"] = j;
  char line[512];
  std::snprintf(line, sizeof line,
                "shard perplexity: %zu shards, %lld tokens: loss %.4f, token ppl %.4f; "
                "validation loss %.4f (%lld tokens in complete %lld-token windows)\n",
                files.size(), static_cast<long long>(r.tokens), j["loss"].get<double>(),
                r.token_perplexity(), r.full_window_loss(),
                static_cast<long long>(r.full_window_tokens),
                static_cast<long long>(scorer_->max_length()));
  AddLine(line);
  return Status::Ok();
}

// One JSON object per line; invalid UTF-8 in generated text is replaced, never an error.
Status Session::WriteSample(const json& s) {
  const std::string text = s.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  return samples_->Write(text.data(), text.size());
}

Status Session::Task(const std::string& path) {
  const std::string name = fs::path(path).stem().string();
  ESCALE_ASSIGN_OR_RETURN(json first, FirstDocument(path));
  if (a_.task_format == "gsm8k" || (a_.task_format == "auto" && LooksLikeGsm8k(first)))
    return Gsm8kTask(path, name);
  return MultipleChoiceTask(path, name);
}

Status Session::Gsm8kTask(const std::string& path, const std::string& name) {
  ESCALE_ASSIGN_OR_RETURN(std::vector<Gsm8kDoc> docs, LoadGsm8kFile(path));
  std::vector<Gsm8kDoc> pool;
  if (!a_.fewshot_from.empty()) {
    ESCALE_ASSIGN_OR_RETURN(pool, LoadGsm8kFile(a_.fewshot_from));
  }
  if (!decoder_) {
    ESCALE_ASSIGN_OR_RETURN(decoder_,
                            CreateDecoder(model_.config, model_.tensors, max_length_,
                                          [this](const Tensor& t) { ReleasePages(model_, t); }));
  }
  GenerationTaskOptions go;
  go.num_fewshot = a_.num_fewshot;
  go.fewshot_seed = a_.fewshot_seed;
  go.limit = a_.limit;
  go.max_gen_toks = a_.max_gen_toks;
  std::optional<Progress> p;
  ESCALE_ASSIGN_OR_RETURN(Gsm8kResult r,
                          EvaluateGsm8k(*decoder_, *tokenizer_, *enc_, docs, pool, go,
                                        ProgressFn(p, "task " + name, "documents")));
  if (p) p->Finish();
  results_["tasks"][name] = {{"file", path},
                             {"format", "gsm8k"},
                             {"documents", r.documents},
                             {"num_fewshot", a_.num_fewshot},
                             {"fewshot_seed", a_.fewshot_seed},
                             {"max_gen_toks", a_.max_gen_toks},
                             {"exact_match_strict", r.exact_match_strict},
                             {"exact_match_strict_stderr", r.strict_stderr},
                             {"exact_match_flexible", r.exact_match_flexible},
                             {"exact_match_flexible_stderr", r.flexible_stderr}};
  char line[512];
  std::snprintf(line, sizeof line,
                "task %-20s %-10s %6lld docs  %lld-shot  exact_match strict %.4f ± %.4f  "
                "flexible %.4f ± %.4f\n",
                name.c_str(), "gsm8k", static_cast<long long>(r.documents),
                static_cast<long long>(a_.num_fewshot), r.exact_match_strict, r.strict_stderr,
                r.exact_match_flexible, r.flexible_stderr);
  AddLine(line);
  return WriteSamples(name, r.docs, [](const Gsm8kDocResult& d) {
    return json{{"prompt", d.prompt},
                {"generation", d.generation},
                {"strict", d.strict},
                {"flexible", d.flexible},
                {"strict_correct", d.strict_correct},
                {"flexible_correct", d.flexible_correct}};
  });
}

Status Session::MultipleChoiceTask(const std::string& path, const std::string& name) {
  TaskFormat format = TaskFormat::kGeneric;
  ESCALE_ASSIGN_OR_RETURN(std::vector<McDoc> docs, LoadTaskFile(path, forced_, &format));
  std::vector<McDoc> pool;
  if (!a_.fewshot_from.empty()) {
    ESCALE_ASSIGN_OR_RETURN(pool, LoadTaskFile(a_.fewshot_from, format));
  }
  McOptions mo;
  mo.num_fewshot = a_.num_fewshot;
  mo.limit = a_.limit;
  mo.fewshot_seed = a_.fewshot_seed;
  // MMLU takes the first n dev examples in lm-eval; every other task samples.
  const bool first_n = a_.fewshot_sampler == "first_n" ||
                       (a_.fewshot_sampler == "auto" && format == TaskFormat::kMmlu);
  mo.sampler = first_n ? FewshotSampler::kFirstN : FewshotSampler::kRandom;
  std::optional<Progress> p;
  ESCALE_ASSIGN_OR_RETURN(McResult r,
                          EvaluateMultipleChoice(*scorer_, *enc_, docs, pool, mo,
                                                 ProgressFn(p, "task " + name, "requests")));
  if (p) p->Finish();
  results_["tasks"][name] = {{"file", path},
                             {"format", TaskFormatName(format)},
                             {"documents", r.documents},
                             {"num_fewshot", a_.num_fewshot},
                             {"fewshot_sampler", first_n ? "first_n" : "random"},
                             {"fewshot_seed", a_.fewshot_seed},
                             {"acc", r.acc},
                             {"acc_stderr", r.acc_stderr},
                             {"acc_norm", r.acc_norm},
                             {"acc_bytes", r.acc_bytes}};
  char line[512];
  std::snprintf(
      line, sizeof line,
      "task %-20s %-10s %6lld docs  %lld-shot  acc %.4f ± %.4f  acc_norm %.4f  acc_bytes %.4f\n",
      name.c_str(), TaskFormatName(format).c_str(), static_cast<long long>(r.documents),
      static_cast<long long>(a_.num_fewshot), r.acc, r.acc_stderr, r.acc_norm, r.acc_bytes);
  AddLine(line);
  return WriteSamples(name, r.docs, [](const McDocResult& d) {
    return json{{"gold", d.gold},         {"pred", d.pred},     {"pred_norm", d.pred_norm},
                {"logprobs", d.logprobs}, {"greedy", d.greedy}, {"context", d.context}};
  });
}

Status Session::Finish() {
  if (samples_) return samples_->Commit();
  return Status::Ok();
}

}  // namespace

Result<EvalReport> RunEvaluation(const EvalRunOptions& o) {
  Session s(o);
  ESCALE_RETURN_IF_ERROR(s.Open());
  if (!o.text.empty()) ESCALE_RETURN_IF_ERROR(s.TextPerplexitySection());
  if (!o.shards.empty()) ESCALE_RETURN_IF_ERROR(s.ShardPerplexitySection());
  for (const std::string& path : o.tasks) ESCALE_RETURN_IF_ERROR(s.Task(path));
  ESCALE_RETURN_IF_ERROR(s.Finish());
  return std::move(s).Report();
}

}  // namespace escale::eval
