// escale tokenize: text corpus -> llm.c token shards + manifest.json.
#include <cstdio>
#include <memory>
#include <thread>

#include "cli/command.h"
#include "core/progress.h"
#include "data/token_shards.h"

namespace escale::cli {
namespace {

CommandRegistration reg(61, [](CLI::App& app) -> RunFn {
  auto o = std::make_shared<tok::TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Corpus (plain text files, JSONL with a \"text\" field, or directories) -> token shards");
  cmd->add_option("--tokenizer", o->tokenizer_path, "tokenizer.json")->required()->check(CLI::ExistingFile);
  cmd->add_option("--input", o->inputs, "Input files or directories (repeatable)")->required()->check(CLI::ExistingPath);
  cmd->add_option("--output", o->output_dir, "Output directory (created; must not exist unless --overwrite)")
      ->required();
  cmd->add_option("--val-fraction", o->val_fraction, "Fraction of documents sent to the val split")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--workers", o->workers, "Encoding threads")->check(CLI::Range(1, 1024));
  cmd->add_option("--seed", o->seed, "Seed of the train/val document split");
  cmd->add_option("--shard-tokens", o->shard_tokens, "Tokens per shard (default 100000000)");
  cmd->add_option("--delimiter", o->delimiter,
                  "Token put before every document (default: BOS, else <|endoftext|>, else EOS)");
  cmd->add_option("--jsonl-filter", o->jsonl_filter,
                  "Only JSONL documents whose field KEY equals VALUE, as KEY=VALUE (e.g. lang=en)");
  cmd->add_flag("--overwrite", o->overwrite, "Replace an existing output directory");
  return [o]() -> Status {
    ESCALE_ASSIGN_OR_RETURN(tok::TokenizeSummary s, tok::TokenizeToShards(*o));
    const double mbs = s.seconds > 0 ? static_cast<double>(s.bytes) / 1e6 / s.seconds : 0;
    const double cpu_mbs = s.cpu_seconds > 0 ? static_cast<double>(s.bytes) / 1e6 / s.cpu_seconds : 0;
    std::fprintf(stderr,
                 "tokenized %llu documents, %s, into %llu tokens in %s (%.1f MB/s, %d workers; %.1f MB per CPU-second)"
                 " -> %s\n",
                 static_cast<unsigned long long>(s.documents), FormatBytes(static_cast<double>(s.bytes)).c_str(),
                 static_cast<unsigned long long>(s.tokens), FormatDuration(s.seconds).c_str(), mbs, o->workers,
                 cpu_mbs, o->output_dir.c_str());
    return Status::Ok();
  };
});

}  // namespace
}  // namespace escale::cli
