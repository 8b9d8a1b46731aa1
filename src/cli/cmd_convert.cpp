// escale convert SRC DST: re-write a Hugging Face model directory with another dtype, shard size
// or (compatible) architecture class, streaming one tensor at a time.
#include <algorithm>
#include <cctype>

#include "cli/command.h"
#include "io/hf_model.h"

namespace escale::cli {
namespace {

struct ConvertArgs {
  std::string src, dst, dtype, arch;
  uint64_t max_shard_bytes = 5'000'000'000;
  bool overwrite = false;
};

Status RunConvert(const ConvertArgs& a) {
  ESCALE_ASSIGN_OR_RETURN(HfModel m, ReadHfModel(a.src));
  WriteOptions opt;
  opt.dtype = m.config.dtype;
  if (!a.dtype.empty()) {
    std::string d = a.dtype;
    std::transform(d.begin(), d.end(), d.begin(), [](unsigned char c) { return std::toupper(c); });
    const auto t = ParseDType(d);
    if (!t || (*t != DType::kF32 && *t != DType::kBF16 && *t != DType::kF16))
      return InvalidArgument("--dtype must be f32, bf16 or f16, got '" + a.dtype + "'");
    opt.dtype = *t;
  }
  ModelConfig out = m.config;
  if (!a.arch.empty()) {
    bool found = false;
    for (Architecture x : {Architecture::kLlama, Architecture::kQwen2, Architecture::kMistral,
                           Architecture::kMixtral, Architecture::kQwen2Moe})
      if (ArchitectureClassName(x) == a.arch || ArchitectureModelType(x) == a.arch) {
        out.arch = x;
        found = true;
      }
    if (!found) return InvalidArgument("--arch '" + a.arch + "' is not one of llama, qwen2, mistral, mixtral, qwen2_moe");
  }
  if (a.max_shard_bytes == 0) return InvalidArgument("--max-shard-bytes must be positive");
  opt.max_shard_bytes = a.max_shard_bytes;
  opt.overwrite = a.overwrite;
  opt.copy_tokenizer_from = a.src;
  opt.metadata = m.metadata;
  opt.metadata.erase("format");
  return WriteHfModel(a.dst, out, m, opt);
}

CommandRegistration reg(15, [](CLI::App& app) -> RunFn {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* sub = app.add_subcommand("convert", "Re-write a Hugging Face model directory (dtype, shard size, "
                                                "architecture class); tokenizer files are carried along");
  sub->add_option("src", args->src, "Source model directory")->required();
  sub->add_option("dst", args->dst, "Output directory (must not exist unless --overwrite)")->required();
  sub->add_option("--dtype", args->dtype, "Output dtype: f32, bf16 or f16 (default: the source's)");
  sub->add_option("--arch", args->arch, "Output class: llama, qwen2, mistral, mixtral, qwen2_moe (default: the source's)");
  sub->add_option("--max-shard-bytes", args->max_shard_bytes, "Shard past this many bytes")->capture_default_str();
  sub->add_flag("--overwrite", args->overwrite, "Replace an existing output directory");
  return [args]() { return RunConvert(*args); };
});

}  // namespace
}  // namespace escale::cli
