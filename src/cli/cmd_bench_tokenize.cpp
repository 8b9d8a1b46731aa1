// `escale bench tokenize`: flags only; the harness is src/bench/tokenize_bench.cpp.
#include <memory>
#include <string>

#include "bench/tokenize_bench.h"
#include "cli/command.h"

namespace escale::cli {
namespace {

CommandRegistration reg(202, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<bench::TokenizeBenchOptions>();
  CLI::App* bench =
      CommandGroup(app, "bench", "Throughput benchmarks (results belong in docs/benchmarks.md)");
  CLI::App* c = bench->add_subcommand("tokenize",
                                      "Tokenizer encode throughput (MB/s, MB per CPU-second, "
                                      "tokens/s; load time excluded) against Hugging Face's "
                                      "transformers.js and Rust tokenizers (node, " +
                                          std::string(bench::kTokenizeBaselineScript) +
                                          ") on the same documents in the same run");
  c->add_option("--tokenizer", a->tokenizer, "tokenizer.json")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option(
       "--input", a->input,
       "Text file: .jsonl = one document per line (\"text\" field), any other file = one document")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--workers", a->workers,
                "Encoding threads; also RAYON_NUM_THREADS of the Rust batch baseline")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  c->add_option("--repeat", a->repeat, "Timed passes of each implementation; the best is reported")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  c->add_option("--baseline", a->baseline,
                "auto: run the node baseline when node and the npm packages are found (else a "
                "note); none: skip it")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "none"}));
  c->add_option("--node-modules", a->node_modules,
                "node_modules holding @huggingface/tokenizers and @anush008/tokenizers "
                "(default: $NODE_PATH, else build/tokenizer-npm/node_modules of the repository)");
  c->add_flag("--json", a->json, "Print one JSON object");
  return [a]() -> Status { return bench::RunTokenizeBench(*a); };
});

}  // namespace
}  // namespace escale::cli
