// escale convert SRC DST: re-write a Hugging Face model directory with another dtype, shard size
// or (compatible) architecture class, streaming one tensor at a time.
#include <algorithm>
#include <cctype>
#include <cstdio>

#include "cli/command.h"
#include "io/gguf_export.h"
#include "io/hf_model.h"

namespace escale::cli {
namespace {

struct ConvertArgs {
  std::string src, dst, dtype, arch, format;
  uint64_t max_shard_bytes = 5'000'000'000;
  bool overwrite = false;
};

bool EndsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

Status RunGguf(const ConvertArgs& a) {
  if (!a.arch.empty()) return InvalidArgument("--arch applies to Hugging Face output, not GGUF");
  gguf::ExportOptions opt;
  if (!a.dtype.empty()) {
    ESCALE_ASSIGN_OR_RETURN(opt.type, gguf::ParseExportType(a.dtype));
  }
  opt.overwrite = a.overwrite;
  ESCALE_ASSIGN_OR_RETURN(std::string summary, gguf::ExportGguf(a.src, a.dst, opt));
  std::printf("%s\n", summary.c_str());
  return Status::Ok();
}

Status RunConvert(const ConvertArgs& a) {
  if (!a.format.empty() && a.format != "hf" && a.format != "gguf")
    return InvalidArgument("--format must be hf or gguf, got '" + a.format + "'");
  if (a.format == "gguf" || (a.format.empty() && EndsWith(a.dst, ".gguf"))) return RunGguf(a);
  ESCALE_ASSIGN_OR_RETURN(HfModel m, ReadHfModel(a.src));
  WriteOptions opt;
  opt.inputs = {a.src};
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
    const ArchitectureInfo* x = FindArchitecture(a.arch);
    if (x == nullptr)
      return InvalidArgument("--arch '" + a.arch + "' is not one of " +
                             std::string(ArchitectureCliList(false)));
    out.arch = x->arch;
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
                                                "architecture class); tokenizer files are carried along. "
                                                "A DST ending in .gguf (or --format gguf) writes one "
                                                "GGUF file for llama.cpp instead");
  sub->add_option("src", args->src, "Source model directory")->required();
  sub->add_option("dst", args->dst, "Output directory (must not exist unless --overwrite)")->required();
  sub->add_option("--dtype", args->dtype, "Output dtype: f32, bf16 or f16 (default: the source's); "
                                   "GGUF also q8_0 (default f32)");
  sub->add_option("--format", args->format, "hf or gguf (default: gguf when DST ends in .gguf, else hf)");
  sub->add_option(
      "--arch", args->arch,
      "Output class: " + std::string(ArchitectureCliList(false)) + " (default: the source's)");
  sub->add_option("--max-shard-bytes", args->max_shard_bytes, "Shard past this many bytes")->capture_default_str();
  sub->add_flag("--overwrite", args->overwrite, "Replace an existing output directory");
  return [args]() { return RunConvert(*args); };
});

}  // namespace
}  // namespace escale::cli
