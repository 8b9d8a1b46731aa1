// config.json <-> ModelConfig: the fields, defaults and our choices are in docs/formats.md.
#include <cmath>
#include <set>

#include "core/atomic_output.h"
#include "core/json_text.h"
#include "io/hf_model.h"

namespace escale {
namespace {

using json = nlohmann::json;

Status Cfg(const std::string& what) { return FormatError("config.json: " + what); }
Status CfgUnsupported(const std::string& what) { return Unsupported("config.json: " + what); }

// Keys this file interprets; every other key goes to ModelConfig::extra unchanged.
const std::set<std::string>& ConsumedKeys() {
  static const std::set<std::string> k = {
      "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
      "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
      "max_position_embeddings", "rope_theta", "rope_scaling", "rope_parameters", "rms_norm_eps",
      "tie_word_embeddings", "torch_dtype", "dtype", "hidden_act", "attention_bias", "mlp_bias",
      "qkv_bias", "num_local_experts", "num_experts", "num_experts_per_tok",
      "router_aux_loss_coef", "moe_intermediate_size", "shared_expert_intermediate_size",
      "decoder_sparse_step", "mlp_only_layers", "norm_topk_prob", "partial_rotary_factor",
      "escale"};
  return k;
}

Result<int64_t> GetInt(const json& j, const char* key, std::optional<int64_t> dflt) {
  if (!j.contains(key) || j[key].is_null()) {
    if (dflt) return *dflt;
    return Cfg(std::string("required field '") + key + "' is missing");
  }
  const json& v = j[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::floor(d) == d && std::abs(d) < 9e15) return static_cast<int64_t>(d);
  }
  return Cfg(std::string("field '") + key + "' must be an integer, got " + v.dump());
}

Result<double> GetNumber(const json& j, const char* key, double dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  if (!j[key].is_number()) return Cfg(std::string("field '") + key + "' must be a number, got " + j[key].dump());
  return j[key].get<double>();
}

Result<bool> GetBool(const json& j, const char* key, bool dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  if (!j[key].is_boolean()) return Cfg(std::string("field '") + key + "' must be true or false, got " + j[key].dump());
  return j[key].get<bool>();
}

Result<const ArchitectureInfo*> DetectArchitecture(const json& j) {
  std::string name;
  if (j.contains("architectures") && !j["architectures"].is_null()) {
    const json& a = j["architectures"];
    if (!a.is_array() || a.size() != 1 || !a[0].is_string())
      return Cfg("'architectures' must be a list with one class name, got " + a.dump());
    name = a[0].get<std::string>();
    for (const ArchitectureInfo& r : Architectures())
      if (r.class_name == name) return &r;
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    name = j["model_type"].get<std::string>();
    for (const ArchitectureInfo& r : Architectures())
      if (r.model_type == name) return &r;
  } else {
    return Cfg("required field 'architectures' is missing");
  }
  if (const RefusedArchitecture* r = FindRefusedArchitecture(name))
    return CfgUnsupported("architecture '" + name +
                          "' is not supported: " + std::string(r->reason) + "; escale reads " +
                          std::string(ArchitectureClassList()));
  return CfgUnsupported("architecture '" + name + "' is not supported; escale reads " +
                        std::string(ArchitectureClassList()));
}

// transformers' layer_types (newer Qwen3 configs): one entry per layer. escale runs full
// attention only, and rewrites the list when the layer count changes.
Status CheckLayerTypes(const json& j) {
  if (!j.contains("layer_types") || j["layer_types"].is_null()) return Status::Ok();
  const json& t = j["layer_types"];
  if (!t.is_array()) return Cfg("'layer_types' must be a list");
  for (const json& v : t)
    if (v != "full_attention")
      return CfgUnsupported("layer_types entry " + v.dump() +
                            " is not supported; escale runs full attention in every layer");
  return Status::Ok();
}

std::optional<DType> ParseTorchDtype(const std::string& s) {
  if (s == "float32" || s == "float") return DType::kF32;
  if (s == "bfloat16") return DType::kBF16;
  if (s == "float16" || s == "half") return DType::kF16;
  if (s == "float64" || s == "double") return DType::kF64;
  return std::nullopt;
}

std::string TorchDtypeName(DType t) {
  switch (t) {
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    case DType::kF64: return "float64";
    default: return "float32";
  }
}

// Normalises the three RoPE spellings (top-level rope_theta + rope_scaling, v5 rope_parameters)
// into rope_theta plus a scaling object without rope_theta (null for plain RoPE).
Status ParseRope(const json& j, ModelConfig& c, double default_theta) {
  json scaling = nullptr;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    if (!j[key].is_object()) return Cfg(std::string("'") + key + "' must be an object, got " + j[key].dump());
    if (!scaling.is_null() && scaling != j[key])
      return Cfg("'rope_scaling' and 'rope_parameters' disagree; keep one of them");
    scaling = j[key];
  }
  ESCALE_ASSIGN_OR_RETURN(c.rope_theta, GetNumber(j, "rope_theta", default_theta));
  if (scaling.is_object() && scaling.contains("rope_theta")) {
    ESCALE_ASSIGN_OR_RETURN(c.rope_theta, GetNumber(scaling, "rope_theta", c.rope_theta));
    scaling.erase("rope_theta");
  }
  if (scaling.is_null()) {
    c.rope_scaling = nullptr;
    return Status::Ok();
  }
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (!scaling.contains(key)) continue;
    // A number or null here is not "default": it would silently train plain RoPE.
    if (!scaling[key].is_string())
      return Cfg(std::string("rope_scaling '") + key +
                 "' must be a string such as \"linear\" or \"llama3\", got " + scaling[key].dump());
    type = scaling[key].get<std::string>();
  }
  if (type == "default") {
    c.rope_scaling = nullptr;
    return Status::Ok();
  }
  // Every factor divides a frequency or a wavelength: zero, negative or non-finite values give
  // infinite or NaN rotations.
  auto positive = [&](const char* k) -> Status {
    if (!scaling.contains(k) || !scaling[k].is_number())
      return Cfg("rope_scaling of type " + type + " needs a numeric '" + k + "'");
    const double v = scaling[k].get<double>();
    if (!(v > 0) || !std::isfinite(v))
      return Cfg("rope_scaling '" + std::string(k) + "' must be a positive number, got " +
                 scaling[k].dump());
    return Status::Ok();
  };
  if (type == "linear") {
    ESCALE_RETURN_IF_ERROR(positive("factor"));
  } else if (type == "llama3") {
    for (const char* k : {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
      ESCALE_RETURN_IF_ERROR(positive(k));
    if (!(scaling["high_freq_factor"].get<double>() > scaling["low_freq_factor"].get<double>()))
      return Cfg("rope_scaling of type llama3 needs high_freq_factor > low_freq_factor (got " +
                 scaling["high_freq_factor"].dump() + " and " + scaling["low_freq_factor"].dump() +
                 ")");
  } else {
    return CfgUnsupported("RoPE scaling type '" + type +
                          "' is not supported; escale handles default, linear and llama3");
  }
  c.rope_scaling = scaling;
  return Status::Ok();
}

Status ParseEscaleKeys(const json& j, ModelConfig& c) {
  if (!j.contains("escale")) return Status::Ok();
  const json& e = j["escale"];
  if (!e.is_object()) return Cfg("'escale' must be an object");
  for (auto it = e.begin(); it != e.end(); ++it)
    if (it.key() != "router" && it.key() != "capacity_factor" && it.key() != "drop_policy")
      return Cfg("unknown key 'escale." + it.key() + "' (known: router, capacity_factor, drop_policy)");
  if (!c.is_moe()) return Cfg("'escale' MoE settings given for a dense model");
  if (e.contains("router")) {
    const std::string r = e["router"].is_string() ? e["router"].get<std::string>() : "";
    RouterType rt;
    if (r == "mixtral") rt = RouterType::kMixtral;
    else if (r == "st") rt = RouterType::kSt;
    else return Cfg("escale.router must be \"mixtral\" or \"st\", got " + e["router"].dump());
    if (ArchInfo(c.arch).router_choice && rt != c.moe.router)
      return Cfg("escale.router disagrees with norm_topk_prob (true means mixtral, false means st)");
    c.moe.router = rt;
  }
  ESCALE_ASSIGN_OR_RETURN(c.moe.capacity_factor, GetNumber(e, "capacity_factor", 0.0));
  if (e.contains("drop_policy")) {
    const std::string d = e["drop_policy"].is_string() ? e["drop_policy"].get<std::string>() : "";
    if (d == "probability") c.moe.drop_policy = DropPolicy::kProbability;
    else if (d == "position") c.moe.drop_policy = DropPolicy::kPosition;
    else return Cfg("escale.drop_policy must be \"probability\" or \"position\", got " + e["drop_policy"].dump());
  }
  return Status::Ok();
}

}  // namespace

Result<ModelConfig> ParseHfConfig(const json& j) {
  if (!j.is_object()) return Cfg("must hold a JSON object");
  ESCALE_ASSIGN_OR_RETURN(const ArchitectureInfo* row, DetectArchitecture(j));
  const ArchitectureInfo& ai = *row;
  ModelConfig c;
  c.arch = ai.arch;
  c.qk_norm = ai.qk_norm;
  ESCALE_RETURN_IF_ERROR(CheckLayerTypes(j));

  if (j.contains("quantization_config"))
    return CfgUnsupported("quantized checkpoints (quantization_config) are not supported; "
                          "use the unquantized model");
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    return CfgUnsupported("hidden_act " + j["hidden_act"].dump() + " is not supported; escale uses silu (SwiGLU)");
  ESCALE_ASSIGN_OR_RETURN(double prf, GetNumber(j, "partial_rotary_factor", 1.0));
  if (prf != 1.0) return CfgUnsupported("partial_rotary_factor other than 1 is not supported");
  if (ai.qkv_bias != QkvBias::kConfigKey && !ai.qkv_bias_key.empty()) {
    ESCALE_ASSIGN_OR_RETURN(bool ab, GetBool(j, std::string(ai.qkv_bias_key).c_str(), false));
    if (ab)
      return CfgUnsupported(std::string(ai.qkv_bias_key) +
                            " true (q/k/v/o biases) is not supported: escale has no o_proj "
                            "bias; convert q/k/v-bias models as " +
                            ArchitectureClassesWhere([](const ArchitectureInfo& r) {
                              return !r.moe && r.qkv_bias != QkvBias::kNever;
                            }));
  }
  ESCALE_ASSIGN_OR_RETURN(bool mb, GetBool(j, "mlp_bias", false));
  if (mb)
    return CfgUnsupported("mlp_bias true is not supported: escale's SwiGLU FFN has no biases");

  ESCALE_ASSIGN_OR_RETURN(c.vocab_size, GetInt(j, "vocab_size", std::nullopt));
  ESCALE_ASSIGN_OR_RETURN(c.hidden_size, GetInt(j, "hidden_size", std::nullopt));
  ESCALE_ASSIGN_OR_RETURN(c.intermediate_size, GetInt(j, "intermediate_size", std::nullopt));
  ESCALE_ASSIGN_OR_RETURN(c.num_layers, GetInt(j, "num_hidden_layers", std::nullopt));
  ESCALE_ASSIGN_OR_RETURN(c.num_heads, GetInt(j, "num_attention_heads", std::nullopt));
  ESCALE_ASSIGN_OR_RETURN(c.num_kv_heads, GetInt(j, "num_key_value_heads", c.num_heads));
  if (!j.contains("head_dim") || j["head_dim"].is_null()) {
    if (c.num_heads <= 0 || c.hidden_size % c.num_heads != 0)
      return Cfg("head_dim is missing and hidden_size (" + std::to_string(c.hidden_size) +
                 ") is not a multiple of num_attention_heads (" + std::to_string(c.num_heads) + ")");
    c.head_dim = c.hidden_size / c.num_heads;
  } else {
    ESCALE_ASSIGN_OR_RETURN(c.head_dim, GetInt(j, "head_dim", std::nullopt));
  }
  ESCALE_ASSIGN_OR_RETURN(c.max_position_embeddings,
                          GetInt(j, "max_position_embeddings", ai.default_max_positions));
  ESCALE_ASSIGN_OR_RETURN(c.rms_norm_eps, GetNumber(j, "rms_norm_eps", ai.default_rms_norm_eps));
  ESCALE_RETURN_IF_ERROR(ParseRope(j, c, ai.default_rope_theta));
  ESCALE_ASSIGN_OR_RETURN(c.tie_word_embeddings, GetBool(j, "tie_word_embeddings", false));
  for (const char* key : {"dtype", "torch_dtype"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const auto d = j[key].is_string() ? ParseTorchDtype(j[key].get<std::string>()) : std::nullopt;
    if (!d) return CfgUnsupported(std::string("'") + key + "' " + j[key].dump() +
                                  " is not supported; use float32, bfloat16 or float16");
    c.dtype = *d;
    break;
  }

  c.qkv_bias = ai.qkv_bias == QkvBias::kAlways;
  if (ai.qkv_bias == QkvBias::kConfigKey) {
    ESCALE_ASSIGN_OR_RETURN(c.qkv_bias,
                            GetBool(j, std::string(ai.qkv_bias_key).c_str(), ai.qkv_bias_default));
  }

  if (ai.moe) {
    const std::string ekey(ai.experts_key);
    // Mixtral configs of some exporters say num_experts.
    const char* key = j.contains(ekey) || !j.contains("num_experts") ? ekey.c_str() : "num_experts";
    if (!j.contains(key)) return Cfg("required field '" + ekey + "' is missing");
    ESCALE_ASSIGN_OR_RETURN(c.moe.num_experts, GetInt(j, key, std::nullopt));
    if (c.moe.num_experts <= 0) return Cfg(ekey + " must be positive");
    ESCALE_ASSIGN_OR_RETURN(c.moe.top_k, GetInt(j, "num_experts_per_tok", ai.default_top_k));
    if (ai.expert_size_is_intermediate) {
      c.moe.expert_intermediate = c.intermediate_size;
    } else {
      ESCALE_ASSIGN_OR_RETURN(c.moe.expert_intermediate,
                              GetInt(j, "moe_intermediate_size", std::nullopt));
    }
    if (ai.shared_expert) {
      ESCALE_ASSIGN_OR_RETURN(c.moe.shared_intermediate,
                              GetInt(j, "shared_expert_intermediate_size", std::nullopt));
    }
    if (ai.sparse_layers) {
      ESCALE_ASSIGN_OR_RETURN(c.moe.every, GetInt(j, "decoder_sparse_step", 1));
      if (j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null()) {
        const json& m = j["mlp_only_layers"];
        if (!m.is_array()) return Cfg("'mlp_only_layers' must be a list of layer indices");
        for (const json& v : m) {
          if (!v.is_number_integer())
            return Cfg("'mlp_only_layers' must be a list of layer indices");
          c.moe.dense_layers.push_back(v.get<int64_t>());
        }
      }
    }
    c.moe.router = RouterType::kMixtral;
    if (ai.router_choice) {
      ESCALE_ASSIGN_OR_RETURN(bool norm, GetBool(j, "norm_topk_prob", false));
      c.moe.router = norm ? RouterType::kMixtral : RouterType::kSt;
    }
    ESCALE_ASSIGN_OR_RETURN(c.moe.aux_loss_coef, GetNumber(j, "router_aux_loss_coef", 0.001));
  }
  ESCALE_RETURN_IF_ERROR(ParseEscaleKeys(j, c));

  for (auto it = j.begin(); it != j.end(); ++it)
    if (!ConsumedKeys().count(it.key())) c.extra[it.key()] = *it;
  const Status v = c.Validate();
  if (!v.ok()) return Cfg(v.message());
  return c;
}

Result<ModelConfig> ReadHfConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  auto parsed = ParseJsonText(text, path);
  if (!parsed.ok()) return FormatError(parsed.status().message() + "; fix or re-download it");
  auto c = ParseHfConfig(*parsed);
  if (!c.ok()) return c.status().WithContext(dir);
  return c;
}

std::string RopeScalingWarning(const ModelConfig& c) {
  const ArchitectureInfo& ai = ArchInfo(c.arch);
  if (c.rope_scaling.is_null() || ai.rope_scaling_ignored_by.empty()) return "";
  const std::string type = c.rope_scaling.value("rope_type", c.rope_scaling.value("type", "?"));
  return std::string(ai.class_name) + " with rope_scaling '" + type +
         "': " + std::string(ai.rope_scaling_ignored_by) +
         " build plain RoPE for this class and compute other logits than escale does; load it with "
         "a transformers release that applies rope_scaling to " +
         std::string(ai.class_name) + " (docs/formats.md, RoPE scaling)";
}

Result<json> HfConfigToJson(const ModelConfig& c) {
  ESCALE_RETURN_IF_ERROR(c.Validate());
  const ArchitectureInfo& ai = ArchInfo(c.arch);
  const std::string cls(ai.class_name);
  if (ai.moe != c.is_moe())
    return InvalidArgument(cls + (c.is_moe() ? " cannot hold MoE layers; write one of " +
                                                   std::string(ArchitectureCliList(true))
                                             : " needs experts; write a dense architecture"));
  if (c.qkv_bias && ai.qkv_bias == QkvBias::kNever)
    return Unsupported(cls + " cannot express q/k/v biases without an o_proj bias; write " +
                       ArchitectureClassesWhere([](const ArchitectureInfo& r) {
                         return r.qkv_bias != QkvBias::kNever;
                       }));
  if (!c.qkv_bias && ai.qkv_bias == QkvBias::kAlways)
    return Unsupported(cls + " always has q/k/v biases; for a bias-free model write " +
                       ArchitectureClassesWhere([](const ArchitectureInfo& r) {
                         return !r.moe && r.qkv_bias != QkvBias::kAlways &&
                                r.qk_norm == QkNorm::kNone;
                       }));
  if (c.qk_norm != ai.qk_norm)
    return Unsupported(c.qk_norm == QkNorm::kPerHead
                           ? cls + " has no q/k norm; write " +
                                 ArchitectureClassesWhere([](const ArchitectureInfo& r) {
                                   return r.qk_norm == QkNorm::kPerHead;
                                 })
                           : cls + " needs q/k norm weights, which this model has not");
  if (c.is_moe() && c.moe.shared_intermediate > 0 && !ai.shared_expert)
    return Unsupported(
        cls + " has no shared expert; write " +
        ArchitectureClassesWhere([](const ArchitectureInfo& r) { return r.shared_expert; }));
  if (c.is_moe() && (c.moe.every != 1 || !c.moe.dense_layers.empty()) && !ai.sparse_layers)
    return Unsupported(
        cls + " makes every layer MoE; write " +
        ArchitectureClassesWhere([](const ArchitectureInfo& r) { return r.sparse_layers; }));

  json j = c.extra.is_object() ? c.extra : json::object();
  j["architectures"] = json::array({cls});
  j["model_type"] = std::string(ai.model_type);
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] =
      ai.expert_size_is_intermediate ? c.moe.expert_intermediate : c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  if (!c.rope_scaling.is_null()) j["rope_scaling"] = c.rope_scaling;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = TorchDtypeName(c.dtype);
  j["hidden_act"] = "silu";
  if (ai.qkv_bias == QkvBias::kConfigKey)
    j[std::string(ai.qkv_bias_key)] = c.qkv_bias;
  else if (!ai.qkv_bias_key.empty())
    j[std::string(ai.qkv_bias_key)] = false;
  if (ai.qkv_bias_key == "attention_bias") j["mlp_bias"] = false;
  if (j.contains("layer_types") && j["layer_types"].is_array())
    j["layer_types"] =
        json(std::vector<std::string>(static_cast<size_t>(c.num_layers), "full_attention"));
  if (c.is_moe()) {
    j[std::string(ai.experts_key)] = c.moe.num_experts;
    j["num_experts_per_tok"] = c.moe.top_k;
    j["router_aux_loss_coef"] = c.moe.aux_loss_coef;
    if (!ai.expert_size_is_intermediate) j["moe_intermediate_size"] = c.moe.expert_intermediate;
    if (ai.shared_expert) j["shared_expert_intermediate_size"] = c.moe.shared_intermediate;
    if (ai.sparse_layers) {
      j["decoder_sparse_step"] = c.moe.every;
      j["mlp_only_layers"] = c.moe.dense_layers;
    }
    if (ai.router_choice) j["norm_topk_prob"] = c.moe.router == RouterType::kMixtral;
    j["escale"] = {{"router", std::string(RouterTypeName(c.moe.router))},
                   {"capacity_factor", c.moe.capacity_factor},
                   {"drop_policy", c.moe.drop_policy == DropPolicy::kPosition ? "position" : "probability"}};
  }
  return j;
}

}  // namespace escale
