// escale inspect DIR: what a Hugging Face model directory holds, and what it costs to run.
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <map>

#include "cli/command.h"
#include "core/progress.h"
#include "io/gguf.h"
#include "io/hf_model.h"
#include "model/layout.h"

namespace escale::cli {
namespace {

using json = nlohmann::json;

struct InspectArgs {
  std::string dir;
  bool json_out = false;
  bool tensors = false;
  int64_t seq_len = 4096;
};

// Qwen configs carry a sliding_window value even when use_sliding_window is false.
bool SlidingWindowInUse(const ModelConfig& c) {
  const json& x = c.extra;
  if (ArchInfo(c.arch).sliding_window_needs_flag)
    return x.contains("use_sliding_window") && x["use_sliding_window"] == true;
  return x.contains("sliding_window") && !x["sliding_window"].is_null();
}

json ConfigJson(const ModelConfig& c) {
  json j = {{"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_layers", c.num_layers},
            {"num_heads", c.num_heads},
            {"num_kv_heads", c.num_kv_heads},
            {"head_dim", c.head_dim},
            {"max_position_embeddings", c.max_position_embeddings},
            {"rope_theta", c.rope_theta},
            {"rope_scaling", c.rope_scaling},
            {"rms_norm_eps", c.rms_norm_eps},
            {"qkv_bias", c.qkv_bias},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"dtype", std::string(DTypeName(c.dtype))}};
  j["sliding_window"] = SlidingWindowInUse(c) ? c.extra.value("sliding_window", json()) : json();
  if (c.is_moe()) {
    std::vector<int64_t> moe_layers;
    for (int64_t l = 0; l < c.num_layers; ++l)
      if (c.IsMoeLayer(l)) moe_layers.push_back(l);
    j["moe"] = {{"num_experts", c.moe.num_experts},
                {"top_k", c.moe.top_k},
                {"expert_intermediate", c.moe.expert_intermediate},
                {"shared_intermediate", c.moe.shared_intermediate},
                {"every", c.moe.every},
                {"dense_layers", c.moe.dense_layers},
                {"moe_layers", moe_layers},
                {"router", std::string(RouterTypeName(c.moe.router))},
                {"capacity_factor", c.moe.capacity_factor},
                {"drop_policy", c.moe.drop_policy == DropPolicy::kPosition ? "position" : "probability"},
                {"aux_loss_coef", c.moe.aux_loss_coef}};
  }
  return j;
}

std::string Human(double n) {
  char b[32];
  if (n >= 1e12) std::snprintf(b, sizeof b, "%.2fT", n / 1e12);
  else if (n >= 1e9) std::snprintf(b, sizeof b, "%.2fB", n / 1e9);
  else if (n >= 1e6) std::snprintf(b, sizeof b, "%.2fM", n / 1e6);
  else if (n >= 1e3) std::snprintf(b, sizeof b, "%.2fK", n / 1e3);
  else std::snprintf(b, sizeof b, "%.0f", n);
  return b;
}

// One metadata value as JSON; long arrays (vocabularies) are summarised by their length.
json GgufValueJson(const gguf::Value& v, bool full) {
  using gguf::ValueType;
  switch (v.type) {
    case ValueType::kU8: case ValueType::kU16: case ValueType::kU32: case ValueType::kU64: return v.u;
    case ValueType::kI8: case ValueType::kI16: case ValueType::kI32: case ValueType::kI64: return v.i;
    case ValueType::kF32: case ValueType::kF64: return v.f;
    case ValueType::kBool: return v.u != 0;
    case ValueType::kString: return v.s;
    case ValueType::kArray: {
      if (!full && v.arr.size() > 16)
        return "[" + std::string(gguf::ValueTypeName(v.elem)) + " x " + std::to_string(v.arr.size()) + "]";
      json a = json::array();
      for (const auto& e : v.arr) a.push_back(GgufValueJson(e, full));
      return a;
    }
  }
  return nullptr;
}

// escale inspect FILE.gguf: the GGUF metadata and tensor table, read by the strict reader.
Status InspectGguf(const InspectArgs& a) {
  ESCALE_ASSIGN_OR_RETURN(gguf::File f, gguf::ReadFile(a.dir));
  json meta = json::object();
  for (const auto& [k, v] : f.kv) meta[k] = GgufValueJson(v, a.json_out && a.tensors);
  json tensors = json::array();
  uint64_t bytes = 0;
  for (const auto& t : f.tensors) {
    tensors.push_back({{"name", t.name}, {"type", gguf::TensorTypeName(t.type)}, {"ne", t.ne},
                       {"offset", f.data_offset + t.offset}, {"bytes", t.nbytes}});
    bytes += t.nbytes;
  }
  if (a.json_out) {
    json j = {{"file", a.dir}, {"version", f.version}, {"alignment", f.alignment},
              {"metadata", meta}, {"tensor_count", f.tensors.size()}, {"tensor_bytes", bytes}};
    if (a.tensors) j["tensors"] = tensors;
    std::cout << j.dump(2) << "\n";
    return Status::Ok();
  }
  std::printf("%s: GGUF v%u, alignment %u, %zu tensors, %" PRIu64 " bytes of tensor data\n",
              a.dir.c_str(), f.version, f.alignment, f.tensors.size(), bytes);
  for (const auto& [k, v] : meta.items()) std::printf("  %s = %s\n", k.c_str(), v.dump().c_str());
  if (a.tensors)
    for (const auto& t : tensors)
      std::printf("  %-40s %-5s %s\n", t["name"].get<std::string>().c_str(),
                  t["type"].get<std::string>().c_str(), t["ne"].dump().c_str());
  return Status::Ok();
}

Status RunInspect(const InspectArgs& a) {
  if (a.dir.size() > 5 && a.dir.compare(a.dir.size() - 5, 5, ".gguf") == 0) return InspectGguf(a);
  if (a.seq_len < 1) return InvalidArgument("--seq-len must be at least 1");
  ESCALE_ASSIGN_OR_RETURN(HfModel m, ReadHfModel(a.dir));
  const ModelConfig& c = m.config;
  const ParameterCounts p = CountParameters(c);
  const FlopsPerToken f = TrainingFlopsPerToken(c, a.seq_len);
  std::map<std::string, std::pair<int64_t, uint64_t>> dtypes;  // on-disk tensors and bytes
  for (const auto& file : m.files)
    for (const auto& e : file->entries()) {
      auto& d = dtypes[std::string(DTypeName(e.dtype))];
      ++d.first;
      d.second += e.end - e.begin;
    }

  json j;
  j["dir"] = a.dir;
  j["architecture"] = std::string(ArchitectureClassName(c.arch));
  j["model_type"] = std::string(ArchitectureModelType(c.arch));
  j["config"] = ConfigJson(c);
  j["parameters"] = {{"total", p.total},
                     {"embedding", p.embedding},
                     {"active", p.active},
                     {"active_matmul", p.active_matmul},
                     {"routed_experts", p.routed_experts}};
  j["flops_per_token"] = {{"seq_len", a.seq_len},          {"matmul", f.matmul},
                          {"attention", f.attention},      {"attention_causal", f.attention_causal},
                          {"total", f.total()},            {"total_causal", f.total_causal()}};
  j["dtypes"] = json::object();
  for (const auto& [name, d] : dtypes) j["dtypes"][name] = {{"tensors", d.first}, {"bytes", d.second}};
  j["bytes_on_disk"] = m.bytes_on_disk;
  j["shards"] = m.files.size();
  j["metadata"] = m.metadata;
  if (a.tensors) {
    j["tensors"] = json::array();
    for (const TensorSpec& s : CanonicalTensors(c)) {
      const Tensor& t = m.at(s.name);
      j["tensors"].push_back({{"name", s.name},
                              {"hf_name", HfTensorName(c, s)},
                              {"dtype", std::string(DTypeName(t.dtype()))},
                              {"shape", t.shape()}});
    }
  }
  if (a.json_out) {
    std::cout << j.dump(2) << "\n";
    return Status::Ok();
  }

  std::printf("model         %s\n", a.dir.c_str());
  std::printf("architecture  %s (%s)\n", j["architecture"].get<std::string>().c_str(),
              j["model_type"].get<std::string>().c_str());
  std::printf("shape         layers %" PRId64 ", hidden %" PRId64 ", ffn %" PRId64 ", vocab %" PRId64 "\n",
              c.num_layers, c.hidden_size, c.intermediate_size, c.vocab_size);
  std::printf("attention     heads %" PRId64 ", kv heads %" PRId64 ", head_dim %" PRId64 ", qkv bias %s\n",
              c.num_heads, c.num_kv_heads, c.head_dim, c.qkv_bias ? "yes" : "no");
  std::printf("rope          theta %g%s%s, max positions %" PRId64 "\n", c.rope_theta,
              c.rope_scaling.is_null() ? "" : ", scaling ", c.rope_scaling.is_null() ? "" : c.rope_scaling.dump().c_str(),
              c.max_position_embeddings);
  std::printf("norm          rms eps %g, tied embeddings %s, dtype %s\n", c.rms_norm_eps,
              c.tie_word_embeddings ? "yes" : "no", std::string(DTypeName(c.dtype)).c_str());
  if (SlidingWindowInUse(c))
    std::printf("note          sliding_window %s is ignored: escale attends to the full causal context\n",
                c.extra["sliding_window"].dump().c_str());
  if (c.is_moe()) {
    int64_t moe_layers = 0;
    for (int64_t l = 0; l < c.num_layers; ++l) moe_layers += c.IsMoeLayer(l) ? 1 : 0;
    std::printf("moe           %" PRId64 " experts, top-%" PRId64 ", expert ffn %" PRId64 ", shared ffn %" PRId64
                ", router %s, %" PRId64 "/%" PRId64 " layers sparse, capacity factor %g%s, aux coef %g\n",
                c.moe.num_experts, c.moe.top_k, c.moe.expert_intermediate, c.moe.shared_intermediate,
                std::string(RouterTypeName(c.moe.router)).c_str(), moe_layers, c.num_layers,
                c.moe.capacity_factor, c.moe.capacity_factor == 0 ? " (dropless)" : "", c.moe.aux_loss_coef);
  }
  std::printf("parameters    total %" PRId64 " (%s), embedding %" PRId64 ", active/token %" PRId64
              " (%s), active matmul %" PRId64 "\n",
              p.total, Human(static_cast<double>(p.total)).c_str(), p.embedding, p.active,
              Human(static_cast<double>(p.active)).c_str(), p.active_matmul);
  std::printf("flops/token   at seq %" PRId64 ": %s (6N %s + attention %s); causal %s (attention %s)\n",
              a.seq_len, Human(f.total()).c_str(), Human(f.matmul).c_str(), Human(f.attention).c_str(),
              Human(f.total_causal()).c_str(), Human(f.attention_causal).c_str());
  std::string dts;
  for (const auto& [name, d] : dtypes)
    dts += (dts.empty() ? "" : ", ") + name + " x" + std::to_string(d.first);
  std::printf("dtypes        %s\n", dts.c_str());
  std::printf("on disk       %s in %zu file%s\n", FormatBytes(static_cast<double>(m.bytes_on_disk)).c_str(),
              m.files.size(), m.files.size() == 1 ? "" : "s (sharded)");
  if (a.tensors) {
    std::printf("tensors\n");
    for (const auto& t : j["tensors"])
      std::printf("  %-40s %-60s %-5s %s\n", t["name"].get<std::string>().c_str(),
                  t["hf_name"].get<std::string>().c_str(), t["dtype"].get<std::string>().c_str(),
                  ShapeToString(t["shape"].get<Shape>()).c_str());
  }
  return Status::Ok();
}

CommandRegistration reg(10, [](CLI::App& app) -> RunFn {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* sub = app.add_subcommand("inspect", "Show a Hugging Face model directory's config, parameter "
                                                "and activated-parameter counts, FLOPs per token, dtypes and tensors");
  sub->add_option("dir", args->dir, "Model directory (config.json + *.safetensors), or a .gguf file")->required();
  sub->add_flag("--json", args->json_out, "Print one JSON object");
  sub->add_flag("--tensors", args->tensors, "List every tensor (canonical and Hugging Face names, dtype, shape)");
  sub->add_option("--seq-len", args->seq_len, "Sequence length for the attention FLOPs")->capture_default_str();
  return [args]() { return RunInspect(*args); };
});

}  // namespace
}  // namespace escale::cli
