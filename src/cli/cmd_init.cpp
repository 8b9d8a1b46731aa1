// escale init: a randomly initialised model (the from-scratch baseline, or a fixture).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/atomic_output.h"
#include "core/json_text.h"
#include "io/hf_model.h"
#include "model/init.h"
#include "model/layout.h"
#include "model/presets.h"
#include "surgery/convert.h"

namespace escale::cli {
namespace {

struct Args {
  std::string out;
  std::string preset;
  std::string config;
  int64_t vocab = 0;
  uint64_t seed = 1234;
  double std = 0.02;
  std::string dtype = "f32";
  std::string tokenizer_from;
  bool overwrite = false;
};

Status RunInit(const Args& a) {
  if (a.preset.empty() == a.config.empty()) return InvalidArgument("give exactly one of --preset or --config");
  ModelConfig c;
  if (!a.preset.empty()) {
    ESCALE_ASSIGN_OR_RETURN(c, FindModelPreset(a.preset));
  } else {
    ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(a.config));
    ESCALE_ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonText(text, a.config));
    ESCALE_ASSIGN_OR_RETURN(c, ParseHfConfig(j));
  }
  if (a.vocab > 0) c.vocab_size = a.vocab;
  ESCALE_RETURN_IF_ERROR(c.Validate());
  ESCALE_ASSIGN_OR_RETURN(DType dt, surgery::ParseOutputDType(a.dtype));
  c.dtype = dt;
  TensorMap weights = RandomInit(c, {.seed = a.seed, .std = a.std});
  WriteOptions wo;
  wo.dtype = dt;
  wo.overwrite = a.overwrite;
  wo.copy_tokenizer_from = a.tokenizer_from;
  wo.inputs = {a.tokenizer_from};
  wo.metadata = {{"escale.init", "random normal std " + std::to_string(a.std) + " seed " + std::to_string(a.seed)}};
  ESCALE_RETURN_IF_ERROR(WriteHfModel(a.out, c, weights, wo));
  std::printf("wrote %s: %s, %.2fM parameters\n", a.out.c_str(), std::string(ArchitectureClassName(c.arch)).c_str(),
              static_cast<double>(CountParameters(c).total) / 1e6);
  return Status::Ok();
}

CommandRegistration reg(15, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("init", "Write a randomly initialised model (from a preset or a config.json)");
  c->add_option("OUT", a->out, "Output model directory")->required();
  std::string presets;
  for (const auto& p : ModelPresets()) presets += "\n  " + p.name + ": " + p.description;
  c->add_option("--preset", a->preset, "Named shape:" + presets);
  c->add_option("--config", a->config, "A Hugging Face config.json to instantiate");
  c->add_option("--vocab", a->vocab, "Override the vocabulary size (e.g. your tokenizer's)");
  c->add_option("--seed", a->seed, "Random seed");
  c->add_option("--std", a->std, "Standard deviation of the normal initialisation");
  c->add_option("--dtype", a->dtype, "Weight dtype: f32, bf16, f16 or f64");
  c->add_option("--tokenizer-from", a->tokenizer_from, "Copy tokenizer files from this directory");
  c->add_flag("--overwrite", a->overwrite, "Replace an existing output directory");
  return [a] { return RunInit(*a); };
});

}  // namespace
}  // namespace escale::cli
