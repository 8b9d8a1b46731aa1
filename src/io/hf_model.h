// Hugging Face model directories (config.json + safetensors, sharded or not) <-> the canonical
// config and tensor layout (model/config.h, model/layout.h), for every class of
// model/architecture.h.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/layout.h"

namespace escale {

// config.json <-> ModelConfig. Unknown architectures and unsupported features are refused with
// the reason; unknown keys are kept in ModelConfig::extra and written back.
Result<ModelConfig> ParseHfConfig(const nlohmann::json& j);
Result<ModelConfig> ReadHfConfig(const std::string& dir);
// Fails when the architecture cannot express the config (e.g. Mixtral with a shared expert).
Result<nlohmann::json> HfConfigToJson(const ModelConfig& c);
// What a user must know before loading `c` elsewhere: its class has rope_scaling that some
// loaders ignore (ArchitectureInfo::rope_scaling_ignored_by). "" when nothing is known.
std::string RopeScalingWarning(const ModelConfig& c);

// The Hugging Face tensor name of a canonical tensor, for the config's architecture.
std::string HfTensorName(const ModelConfig& c, const TensorSpec& spec);

// A read model: config plus every canonical tensor as a zero-copy view into the mmapped files
// (transformers-v5 fused expert tensors are split into per-expert views).
struct HfModel {
  std::string dir;
  ModelConfig config;
  std::map<std::string, Tensor> tensors;  // canonical name -> view
  std::vector<std::shared_ptr<const SafetensorsFile>> files;
  uint64_t bytes_on_disk = 0;
  std::map<std::string, std::string> metadata;  // __metadata__ of the first file
  const Tensor& at(const std::string& canonical) const { return tensors.at(canonical); }
};
Result<HfModel> ReadHfModel(const std::string& dir);

// Tells the kernel this process is done with the pages of `t` (a view into one of m's mappings;
// anything else is ignored): they leave the resident set but stay in the page cache, so reading
// them again costs a minor fault, not a disk read.
void ReleasePages(const HfModel& m, const Tensor& t);
// Maps a tensor's pages in one call instead of taking a page fault every few pages.
void PopulatePages(const Tensor& t);

// Produces the bytes of one canonical tensor, already in the output dtype, into `out`
// (pre-sized to the tensor's byte count, 8-byte aligned).
using TensorProducer = std::function<Status(const TensorSpec& spec, std::byte* out)>;

// One tensor handed to the streaming writer: `bytes` (nbytes of them, in the output dtype) stay
// valid and unchanged while `keep` is held; `after_write`, if set, runs once they are in the file.
struct TensorBytes {
  const std::byte* bytes = nullptr;
  std::shared_ptr<const void> keep;
  std::function<void()> after_write;
};
// Called once per tensor of CanonicalTensors (in that order) on a producer thread that runs ahead
// of the writer; at most WriteOptions::in_flight tensors are produced and not yet written.
using TensorStream = std::function<Result<TensorBytes>(const TensorSpec& spec, size_t nbytes)>;

struct WriteOptions {
  DType dtype = DType::kF32;
  uint64_t max_shard_bytes = 5'000'000'000;
  std::map<std::string, std::string> metadata;  // recorded in every shard's __metadata__
  bool overwrite = false;
  std::string copy_tokenizer_from;  // carry tokenizer files over from this directory, if set
  // What the output must not equal, contain or lie inside: the command's inputs. (Tokenizer files
  // are copied into the staging directory before anything is replaced, so copy_tokenizer_from may
  // be the output itself.)
  std::vector<std::string> inputs;
  bool progress = true;
  bool warn = true;  // print RopeScalingWarning on stderr once written (checkpoints do not)
  // Tensors produced ahead of the writer (2: one is produced while the previous one is written).
  size_t in_flight = 2;
  // Called with the staging directory before it is renamed into place, so that files belonging to
  // the output (a grown model's carried moments) appear with it or not at all.
  std::function<Status(const std::string& staging_dir)> write_extra;
};

// Writes config.json and the weights of `config` (Hugging Face v4 per-expert layout) into `dir`,
// tensor by tensor, through a staging directory renamed into place at the end; with
// copy_tokenizer_from, also tokenizer.json, tokenizer_config.json, special_tokens_map.json,
// generation_config.json and the other tokenizer files found there.
Status WriteHfModel(const std::string& dir, const ModelConfig& config, const TensorProducer& produce,
                    const WriteOptions& opt);
// The same, with the producer deciding where each tensor's bytes live (a buffer it keeps, a range
// of a mapped source written as is): production overlaps writing, and memory holds
// opt.in_flight tensors, never the model.
Status StreamHfModel(const std::string& dir, const ModelConfig& config, const TensorStream& stream,
                     const WriteOptions& opt);
// A producer that copies (converting to `out` when it differs) each tensor of a read model and
// then tells the kernel it may drop that tensor's pages, so a model streamed from one
// directory to another never accumulates in memory. `m` must outlive the producer.
TensorProducer CopyFromModel(const HfModel& m, DType out);
// Streams a read model into `dir` (optionally as another dtype or compatible class): tensors
// already in opt.dtype are written straight from the mapping, the rest converted one at a time;
// each source tensor's pages are released once written.
Status WriteHfModel(const std::string& dir, const ModelConfig& config, const HfModel& source,
                    const WriteOptions& opt);
// Convenience: write tensors held in memory (converted to opt.dtype).
Status WriteHfModel(const std::string& dir, const ModelConfig& config,
                    const std::map<std::string, Tensor>& tensors, const WriteOptions& opt);

}  // namespace escale
