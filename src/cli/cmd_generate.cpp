// escale generate MODEL --prompt TEXT: greedy or sampled continuation with a KV cache.
#include <omp.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/atomic_output.h"
#include "eval/generation.h"
#include "io/hf_model.h"
#include "model/train_model.h"
#include "tokenizer/tokenizer.h"

namespace escale::cli {
namespace {

struct GenerateArgs {
  std::string model, tokenizer, prompt, prompt_file, add_bos = "auto";
  std::vector<std::string> stop;
  eval::GenerateOptions opt;
  int64_t max_length = 0, threads = 0;
  bool json_out = false, no_eos = false;
};

Status RunGenerate(GenerateArgs& a) {
  if (a.prompt.empty() == a.prompt_file.empty())
    return InvalidArgument("give exactly one of --prompt and --prompt-file");
  if (a.threads > 0) omp_set_num_threads(static_cast<int>(a.threads));
  std::string prompt = a.prompt;
  if (!a.prompt_file.empty()) {
    ESCALE_ASSIGN_OR_RETURN(prompt, ReadSmallFile(a.prompt_file));
  }
  ESCALE_ASSIGN_OR_RETURN(HfModel model, ReadHfModel(a.model));
  const std::string tpath = a.tokenizer.empty() ? a.model + "/tokenizer.json" : a.tokenizer;
  auto t = tok::Tokenizer::FromFile(tpath);
  if (!t.ok())
    return Status(t.status().code(),
                  t.status().message() + (a.tokenizer.empty() ? " (pass --tokenizer)" : ""));
  const tok::Tokenizer& tokenizer = **t;
  if (tokenizer.vocab_size() > model.config.vocab_size)
    return InvalidArgument("the tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                           " ids but the model's vocabulary is " +
                           std::to_string(model.config.vocab_size) +
                           "; they do not belong together");
  tok::EncodeOptions eo;
  eo.add_special_tokens =
      a.add_bos == "yes" || (a.add_bos == "auto" && tokenizer.template_adds_bos());
  ESCALE_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, tokenizer.TryEncode(prompt, eo));
  ESCALE_ASSIGN_OR_RETURN(
      const int64_t ctx, eval::KvCacheLength(static_cast<int64_t>(ids.size()), a.opt.max_new_tokens,
                                             model.config.max_position_embeddings, a.max_length));
  if (!a.no_eos) {
    ESCALE_ASSIGN_OR_RETURN(a.opt.stop_ids,
                            eval::ModelStopIds(a.model, model.config.extra, tokenizer.eos_id()));
  }
  // Rows of a padded head beyond the tokenizer decode to nothing: never sample them.
  a.opt.vocab_limit = tokenizer.vocab_size();
  // The decoder holds its own fp32 copy: each mapped tensor's pages go once copied.
  ESCALE_ASSIGN_OR_RETURN(
      auto dec, CreateDecoder(model.config, model.tensors, ctx,
                              [&model](const Tensor& copied) { ReleasePages(model, copied); }));
  model = HfModel();
  a.opt.stop = a.stop;
  auto stream = [&](std::string_view s) {
    if (!a.json_out) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    }
  };
  ESCALE_ASSIGN_OR_RETURN(eval::GenerateResult r,
                          eval::Generate(*dec, tokenizer, ids, a.opt, stream));
  const double tps =
      r.decode_seconds > 0 ? static_cast<double>(r.tokens.size()) / r.decode_seconds : 0;
  if (a.json_out) {
    nlohmann::json j = {{"prompt_tokens", r.prompt_tokens},
                        {"tokens", r.tokens},
                        {"text", r.text},
                        {"finish_reason", r.finish_reason},
                        {"prefill_seconds", r.prefill_seconds},
                        {"decode_seconds", r.decode_seconds},
                        {"decode_tokens_per_second", tps}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
    std::fflush(stdout);  // the summary on stderr comes after the text
    std::fprintf(stderr, "[%lld prompt tokens, %zu generated (%s), %.1f tokens/s]\n",
                 static_cast<long long>(r.prompt_tokens), r.tokens.size(), r.finish_reason.c_str(),
                 tps);
  }
  return Status::Ok();
}

CommandRegistration reg(71, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* c = app.add_subcommand(
      "generate", "Continue a prompt: greedy or sampled generation with a KV cache");
  c->add_option("model", a->model, "Model directory (Hugging Face safetensors checkpoint)")
      ->required();
  c->add_option("--prompt", a->prompt, "Prompt text");
  c->add_option("--prompt-file", a->prompt_file, "Read the prompt from this file");
  c->add_option("--tokenizer", a->tokenizer, "tokenizer.json (default: MODEL/tokenizer.json)");
  c->add_option("--max-new-tokens", a->opt.max_new_tokens, "Tokens to generate at most")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  c->add_option("--temperature", a->opt.sampling.temperature,
                "0 = greedy; else sample from softmax(logits / T)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-k", a->opt.sampling.top_k, "Sample among the k most likely tokens (0 = all)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  c->add_option("--top-p", a->opt.sampling.top_p, "Nucleus sampling mass")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--seed", a->opt.sampling.seed, "Seed of the sampler")->capture_default_str();
  c->add_option("--stop", a->stop, "Stop when this string appears (repeatable; it is not printed)");
  c->add_flag("--ignore-eos", a->no_eos,
              "Keep going after EOS (the tokenizer's, and generation_config.json's eos_token_id)");
  c->add_option("--add-bos", a->add_bos,
                "Add BOS to the prompt: auto (the tokenizer's template), yes, no")
      ->check(CLI::IsMember({"auto", "yes", "no"}))
      ->capture_default_str();
  c->add_option(
      "--max-length", a->max_length,
      "KV cache length (default: prompt + --max-new-tokens, at most max_position_embeddings)");
  c->add_option("--threads", a->threads, "OpenMP threads (0: default)")
      ->check(CLI::Range(int64_t{0}, int64_t{1024}));
  c->add_flag("--json", a->json_out, "Print the result as JSON instead of streaming the text");
  return [a]() { return RunGenerate(*a); };
});

}  // namespace
}  // namespace escale::cli
