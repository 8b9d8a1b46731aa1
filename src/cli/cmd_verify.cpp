// escale verify A B: does B compute A's function? fp64 reference forward of both on the same tokens.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "io/hf_model.h"
#include "surgery/verify.h"
#include "tokenizer/tokenizer.h"

namespace escale::cli {
namespace {

struct VerifyArgs {
  std::string a, b, tokens, text, tokenizer;
  int64_t probe_tokens = 16;
  bool json_out = false;
  double tolerance = -1;
};

Status RunVerify(const VerifyArgs& args) {
  ESCALE_ASSIGN_OR_RETURN(HfModel a, ReadHfModel(args.a));
  ESCALE_ASSIGN_OR_RETURN(HfModel b, ReadHfModel(args.b));
  std::vector<int32_t> tokens;
  if (!args.tokens.empty() && !args.text.empty()) return InvalidArgument("give --tokens or --text, not both");
  if (!args.text.empty()) {
    // The text is encoded with A's tokenizer unless --tokenizer names another tokenizer.json.
    const std::string path = args.tokenizer.empty() ? args.a + "/tokenizer.json" : args.tokenizer;
    ESCALE_ASSIGN_OR_RETURN(auto tok, tok::Tokenizer::FromFile(path));
    ESCALE_ASSIGN_OR_RETURN(tokens, tok->TryEncode(args.text));
    if (tokens.empty()) return InvalidArgument("--text encodes to no tokens");
    for (int32_t t : tokens)
      if (t < 0 || t >= std::min(a.config.vocab_size, b.config.vocab_size))
        return InvalidArgument("token " + std::to_string(t) + " of --text is outside the models' vocabulary");
  } else if (!args.tokens.empty()) {
    ESCALE_ASSIGN_OR_RETURN(tokens, surgery::ParseTokenList(args.tokens, std::min(a.config.vocab_size, b.config.vocab_size)));
  } else {
    if (args.probe_tokens < 1) return InvalidArgument("--probe-tokens must be at least 1");
    tokens = surgery::DefaultProbeTokens(args.probe_tokens, std::min(a.config.vocab_size, b.config.vocab_size));
  }
  std::optional<std::vector<int64_t>> depth_map;
  if (auto it = b.metadata.find("escale.depth_map"); it != b.metadata.end()) depth_map = surgery::ParseIntListJson(it->second);
  ESCALE_ASSIGN_OR_RETURN(surgery::VerifyReport r,
                          surgery::CompareModels(a.config, a.tensors, b.config, b.tensors, tokens, depth_map));
  if (args.json_out) {
    nlohmann::json j = surgery::VerifyReportJson(r);
    if (auto it = b.metadata.find("escale.function_preserving"); it != b.metadata.end())
      j["b_recorded_status"] = it->second;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    if (auto it = b.metadata.find("escale.function_preserving"); it != b.metadata.end())
      std::printf("B records: %s\n", it->second.c_str());
    std::fputs(surgery::FormatVerifyReport(r).c_str(), stdout);
  }
  if (const std::string bad = surgery::NonFiniteProblem(r); !bad.empty())
    return InvalidArgument(bad);
  if (args.tolerance >= 0 && !(r.max_abs <= args.tolerance)) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "max |logit diff| %.3e exceeds --tolerance %.3e", r.max_abs, args.tolerance);
    return InvalidArgument(buf);
  }
  return Status::Ok();
}

CommandRegistration reg(40, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<VerifyArgs>();
  CLI::App* sub = app.add_subcommand("verify", "Function-preservation report: logits, KL, top-1, residual drift");
  sub->add_option("a", a->a, "Reference model directory")->required();
  sub->add_option("b", a->b, "Model to compare (e.g. the output of scale-up or scale-out)")->required();
  sub->add_option("--tokens", a->tokens, "Comma-separated token ids to run (default: seeded probe tokens)");
  sub->add_option("--text", a->text, "Text to run, encoded with A's tokenizer.json (or --tokenizer)");
  sub->add_option("--tokenizer", a->tokenizer, "tokenizer.json for --text (default: A's)");
  sub->add_option("--probe-tokens", a->probe_tokens, "Number of seeded probe tokens when --tokens is not given")
      ->capture_default_str();
  sub->add_option("--tolerance", a->tolerance, "Exit non-zero when max |logit diff| exceeds this");
  sub->add_flag("--json", a->json_out, "Machine-readable report");
  return [a]() { return RunVerify(*a); };
});

}  // namespace
}  // namespace escale::cli
