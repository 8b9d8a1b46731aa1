// HF directory -> GGUF. Names and keys follow llama.cpp's loader (gguf-py's tensor map), facts
// only; see docs/formats.md "GGUF" for the mapping and why Q/K rows are permuted for `llama`.
#include "io/gguf_export.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/atomic_output.h"
#include "core/json_text.h"
#include "core/tensor.h"
#include "io/hf_model.h"
#include "model/layout.h"
#include "model/rope.h"
#include "tokenizer/tokenizer.h"

namespace escale::gguf {
namespace {

namespace fs = std::filesystem;

// llama.cpp's token types (llama_token_type).
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

// Pre-tokenizer regexes as tokenizer.json writes them, and the llama.cpp pre-type whose split is
// the same. escale's trained tokenizers use GPT-2's ByteLevel regex; llama.cpp's "gpt-2" drops
// the final "|\s+" alternative, which only matters for whitespace its own splitter keeps as a
// separate piece anyway (tests/io/gguf_llama_cpp_test.cpp tokenizes such strings in llama.cpp).
struct PreType {
  const char* regex;
  const char* name;
};
constexpr PreType kPreTypes[] = {
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "llama-bpe"},
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "qwen2"},
    {R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", "gpt-2"},
};

// The Split regex of a byte-level pre-tokenizer ("" when none), and whether ByteLevel is there.
void ScanPreTokenizer(const nlohmann::json& p, std::string& regex, bool& byte_level) {
  if (!p.is_object()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence" && p.contains("pretokenizers"))
    for (const auto& q : p["pretokenizers"]) ScanPreTokenizer(q, regex, byte_level);
  if (type == "Split" && p.contains("pattern") && p["pattern"].contains("Regex"))
    regex = p["pattern"]["Regex"].get<std::string>();
  if (type == "ByteLevel") {
    byte_level = true;
    if (p.value("use_regex", true) && regex.empty()) regex = kPreTypes[2].regex;
  }
}

struct Vocab {
  std::vector<Value> tokens, types, merges;
  std::string pre;
  std::optional<int32_t> bos, eos;
  bool add_bos = false;
};

Result<Vocab> ReadVocab(const std::string& dir, int64_t vocab_size) {
  const std::string path = dir + "/tokenizer.json";
  if (!fs::exists(path))
    return NotFound(path +
                    " is missing; a GGUF file needs the vocabulary: copy the model's "
                    "tokenizer.json (and tokenizer_config.json) into " +
                    dir);
  ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, 256u << 20));
  ESCALE_ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonText(text, path));
  const auto& model = j.value("model", nlohmann::json::object());
  std::string regex;
  bool byte_level = false;
  ScanPreTokenizer(j.value("pre_tokenizer", nlohmann::json()), regex, byte_level);
  if (model.value("type", "") != "BPE" || !byte_level)
    return Unsupported(path +
                       " is not a byte-level BPE tokenizer; GGUF export supports byte-level "
                       "BPE (GPT-2, Llama 3, Qwen2 families) only");
  Vocab v;
  for (const auto& p : kPreTypes)
    if (regex == p.regex) v.pre = p.name;
  if (v.pre.empty())
    return Unsupported(
        path +
        ": the pre-tokenizer regex matches none of llama.cpp's pre-types "
        "escale knows (llama-bpe, qwen2, gpt-2); llama.cpp would split text differently");
  ESCALE_ASSIGN_OR_RETURN(auto tok, tok::Tokenizer::FromFile(path));
  if (tok->vocab_size() > vocab_size)
    return FormatError(path + " has " + std::to_string(tok->vocab_size()) +
                       " tokens but the model's vocab_size is " + std::to_string(vocab_size));
  std::vector<int32_t> type(static_cast<size_t>(vocab_size), kUnused);
  std::vector<std::string> str(static_cast<size_t>(vocab_size));
  if (model.contains("vocab") && model["vocab"].is_object())
    for (const auto& [k, id] : model["vocab"].items()) {
      const int64_t i = id.get<int64_t>();
      if (i < 0 || i >= vocab_size)
        return FormatError(path + ": token id " + std::to_string(i) + " out of range");
      str[static_cast<size_t>(i)] = k;
      type[static_cast<size_t>(i)] = kNormal;
    }
  for (const auto& a : tok->added_tokens()) {
    if (a.id < 0 || a.id >= vocab_size) continue;
    str[static_cast<size_t>(a.id)] = a.content;
    type[static_cast<size_t>(a.id)] = a.special ? kControl : kUserDefined;
  }
  for (int64_t i = 0; i < vocab_size; ++i) {
    if (type[static_cast<size_t>(i)] == kUnused)
      str[static_cast<size_t>(i)] = "[PAD" + std::to_string(i) + "]";
    v.tokens.push_back(Value::Str(std::move(str[static_cast<size_t>(i)])));
    v.types.push_back(Value::I32(type[static_cast<size_t>(i)]));
  }
  if (model.contains("merges"))
    for (const auto& m : model["merges"]) {
      if (m.is_string())
        v.merges.push_back(Value::Str(m.get<std::string>()));
      else if (m.is_array() && m.size() == 2)
        v.merges.push_back(Value::Str(m[0].get<std::string>() + " " + m[1].get<std::string>()));
      else
        return FormatError(path + ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
    }
  v.bos = tok->bos_id();
  v.eos = tok->eos_id();
  v.add_bos = tok->template_adds_bos();
  // tokenizer_config.json's add_bos_token, when it says, is what transformers follows.
  if (auto cfg = ReadSmallFile(dir + "/tokenizer_config.json"); cfg.ok()) {
    ESCALE_ASSIGN_OR_RETURN(const nlohmann::json tc,
                            ParseJsonText(*cfg, dir + "/tokenizer_config.json"));
    if (tc.is_object() && tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean())
      v.add_bos = tc["add_bos_token"].get<bool>();
  }
  return v;
}

struct GgufArch {
  std::string name;
  bool permute_qk = false;  // HF rotate-half RoPE -> ggml's adjacent-pair RoPE (llama only)
};

// The factor of a linear rope_scaling ("type" or "rope_type" linear), else 0.
double LinearRopeFactor(const ModelConfig& c) {
  if (!c.rope_scaling.is_object()) return 0;
  const std::string type = c.rope_scaling.value("rope_type", c.rope_scaling.value("type", ""));
  const auto f = c.rope_scaling.find("factor");
  if (type != "linear" || f == c.rope_scaling.end() || !f->is_number()) return 0;
  return f->get<double>();
}

bool IsLlama3Rope(const ModelConfig& c) {
  return c.rope_scaling.is_object() &&
         c.rope_scaling.value("rope_type", c.rope_scaling.value("type", "")) == "llama3";
}

// Why llama.cpp's graph of row `g` cannot compute `c` ("" when it can).
std::string GraphCannotHold(const ArchitectureInfo& g, const ModelConfig& c) {
  const std::string name(g.gguf_arch);
  if (name.empty()) return std::string(g.class_name) + " has no GGUF export";
  if (g.moe != c.is_moe())
    return "llama.cpp's " + name + (g.moe ? " needs experts" : " has no experts");
  if (g.qk_norm != c.qk_norm)
    return "llama.cpp's " + name + (c.qk_norm == QkNorm::kNone ? " needs" : " has no") +
           " q/k norm";
  if (c.qkv_bias && g.qkv_bias == QkvBias::kNever && !g.gguf_optional_qkv_bias)
    return "llama.cpp's " + name + " has no q/k/v biases";
  if (!c.qkv_bias && g.qkv_bias != QkvBias::kNever)
    return "llama.cpp's " + name + " needs q/k/v biases";
  if (IsLlama3Rope(c) && !g.gguf_rope_freqs)
    return "llama.cpp's " + name + " does not read llama3 rope_scaling as rope_freqs";
  if (!c.is_moe()) return "";
  if (c.moe.every != 1 || !c.moe.dense_layers.empty())
    return "llama.cpp's " + name + " needs every layer MoE; this model has dense layers";
  if (g.gguf_shared_expert && c.moe.shared_intermediate <= 0)
    return "llama.cpp's " + name + " needs a shared expert";
  if (!g.gguf_shared_expert && c.moe.shared_intermediate > 0)
    return "llama.cpp's " + name + " has no shared expert";
  const bool renormalises = c.moe.router == RouterType::kMixtral;
  if (renormalises != g.gguf_renormalises_top_k)
    return "llama.cpp's " + name +
           (g.gguf_renormalises_top_k ? " renormalises" : " does not renormalise") +
           " the top-k weights and this model's router " + (renormalises ? "does" : "does not");
  return "";
}

// The model's own row's graph, else the first row's graph that computes the same function (an
// exact Qwen2-MoE upcycle, renormalised and without a shared expert, runs in the llama graph,
// which adds q/k/v biases when they are there).
Result<GgufArch> PickArch(const ModelConfig& c) {
  if (!c.rope_scaling.is_null() && LinearRopeFactor(c) <= 0 && !IsLlama3Rope(c))
    return Unsupported("rope_scaling " + c.rope_scaling.dump() +
                       " is not exported to GGUF (plain, linear and llama3 RoPE are)");
  const ArchitectureInfo& own = ArchInfo(c.arch);
  const std::string why = GraphCannotHold(own, c);
  if (why.empty()) return GgufArch{std::string(own.gguf_arch), own.gguf_permute_qk};
  for (const ArchitectureInfo& g : Architectures())
    if (GraphCannotHold(g, c).empty()) return GgufArch{std::string(g.gguf_arch), g.gguf_permute_qk};
  std::string advice;
  if (c.is_moe() && c.moe.shared_intermediate > 0 && c.moe.router == RouterType::kMixtral)
    advice =
        "; upcycle without --shared-experts (exported as llama), or with --router st "
        "(qwen2moe; not exact)";
  else if (c.is_moe() && c.moe.shared_intermediate == 0 && c.moe.router == RouterType::kSt)
    advice = "; upcycle with mixtral routing (the default; exact)";
  else if (c.is_moe() && (c.moe.every != 1 || !c.moe.dense_layers.empty()))
    advice = "; upcycle every layer (--moe-every 1)";
  return Unsupported(why + ", and no other GGUF architecture computes this model" + advice);
}

std::string GgufName(const TensorSpec& s) {
  const std::string b = "blk." + std::to_string(s.layer) + ".";
  switch (s.role) {
    case TensorRole::kEmbed:
      return "token_embd.weight";
    case TensorRole::kAttnNorm:
      return b + "attn_norm.weight";
    case TensorRole::kWq:
      return b + "attn_q.weight";
    case TensorRole::kWk:
      return b + "attn_k.weight";
    case TensorRole::kWv:
      return b + "attn_v.weight";
    case TensorRole::kBq:
      return b + "attn_q.bias";
    case TensorRole::kBk:
      return b + "attn_k.bias";
    case TensorRole::kBv:
      return b + "attn_v.bias";
    case TensorRole::kQNorm:
      return b + "attn_q_norm.weight";
    case TensorRole::kKNorm:
      return b + "attn_k_norm.weight";
    case TensorRole::kWo:
      return b + "attn_output.weight";
    case TensorRole::kFfnNorm:
      return b + "ffn_norm.weight";
    case TensorRole::kFfnGate:
      return b + "ffn_gate.weight";
    case TensorRole::kFfnUp:
      return b + "ffn_up.weight";
    case TensorRole::kFfnDown:
      return b + "ffn_down.weight";
    case TensorRole::kRouter:
      return b + "ffn_gate_inp.weight";
    case TensorRole::kExpertGate:
      return b + "ffn_gate_exps.weight";
    case TensorRole::kExpertUp:
      return b + "ffn_up_exps.weight";
    case TensorRole::kExpertDown:
      return b + "ffn_down_exps.weight";
    case TensorRole::kSharedGate:
      return b + "ffn_gate_shexp.weight";
    case TensorRole::kSharedUp:
      return b + "ffn_up_shexp.weight";
    case TensorRole::kSharedDown:
      return b + "ffn_down_shexp.weight";
    case TensorRole::kSharedRouter:
      return b + "ffn_gate_inp_shexp.weight";
    case TensorRole::kFinalNorm:
      return "output_norm.weight";
    case TensorRole::kLmHead:
      return "output.weight";
  }
  return "?";
}

bool IsExpert(TensorRole r) {
  return r == TensorRole::kExpertGate || r == TensorRole::kExpertUp || r == TensorRole::kExpertDown;
}

// One GGUF tensor: its canonical sources (several for merged experts), ggml dims, type.
struct Item {
  std::string name;
  std::vector<const TensorSpec*> parts;
  std::vector<uint64_t> ne;
  TensorType type;
  int64_t permute_heads = 0;  // rows form this many heads to permute (0: none)
  std::vector<float> values;  // no parts: the tensor's f32 data (rope_freqs)
};

// llama3 RoPE as llama.cpp takes it: rope_freqs[i] divides frequency i, so it is the plain
// frequency over the scaled one (1 for short wavelengths, `factor` for long ones, smooth between).
Result<std::vector<float>> Llama3RopeFactors(const ModelConfig& c) {
  ESCALE_ASSIGN_OR_RETURN(const RopeFrequencies scaled, ComputeRopeFrequencies(c));
  ModelConfig plain = c;
  plain.rope_scaling = nullptr;
  ESCALE_ASSIGN_OR_RETURN(const RopeFrequencies base, ComputeRopeFrequencies(plain));
  std::vector<float> f(base.inv_freq.size());
  for (size_t i = 0; i < f.size(); ++i)
    f[i] = static_cast<float>(base.inv_freq[i] / scaled.inv_freq[i]);
  return f;
}

// Rows of each head [first half; second half] -> interleaved (0, hd/2, 1, hd/2+1, ...): HF
// applies RoPE to (x[i], x[i+hd/2]) pairs, ggml's normal RoPE to (x[2i], x[2i+1]).
void PermuteRows(const float* in, float* out, int64_t heads, int64_t rows, int64_t cols) {
  const int64_t hd = rows / heads, half = hd / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t s = 0; s < 2; ++s) {
        const float* src = in + (h * hd + s * half + j) * cols;
        std::copy(src, src + cols, out + (h * hd + 2 * j + s) * cols);
      }
}

}  // namespace

Result<TensorType> ParseExportType(const std::string& s) {
  if (s == "f32" || s == "F32") return TensorType::kF32;
  if (s == "f16" || s == "F16") return TensorType::kF16;
  if (s == "bf16" || s == "BF16") return TensorType::kBF16;
  if (s == "q8_0" || s == "Q8_0") return TensorType::kQ8_0;
  return InvalidArgument("--dtype '" + s + "' is not one of f32, f16, bf16, q8_0 for GGUF");
}

// llama.cpp's qwen2moe computes the shared expert's sigmoid gate as silu(x) / x, which is NaN at
// x = 0: a gate whose weights are all zero (as `escale scale-out --shared-experts` leaves it, so
// that sigmoid(0) = 1/2 keeps the function) makes every logit NaN there.
Status CheckSharedGatesNonZero(const HfModel& m) {
  for (const TensorSpec& s : CanonicalTensors(m.config)) {
    if (s.role != TensorRole::kSharedRouter) continue;
    const Tensor& t = m.at(s.name);
    std::vector<float> v(static_cast<size_t>(t.numel()));
    ESCALE_RETURN_IF_ERROR(ConvertToF32(t.dtype(), t.bytes(), v.size(), v.data()));
    if (std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; }))
      return Unsupported(
          s.name +
          " (the shared expert's gate) is all zeros, as scale-out leaves it: llama.cpp "
          "computes this sigmoid as silu(x)/x, NaN at 0; train the model a step first");
  }
  return Status::Ok();
}

// The GGUF metadata: the architecture's hyperparameters under its prefix, and the vocabulary.
void AddMetadata(Writer& w, const ModelConfig& c, const GgufArch& arch, Vocab& vocab,
                 const std::string& src, const ExportOptions& opt) {
  const std::string a = arch.name + ".";
  auto u32 = [](int64_t x) { return Value::U32(static_cast<uint32_t>(x)); };
  w.Add("general.architecture", Value::Str(arch.name));
  w.Add("general.name", Value::Str(fs::path(src).filename().string().empty()
                                       ? fs::path(src).parent_path().filename().string()
                                       : fs::path(src).filename().string()));
  const uint32_t file_type = opt.type == TensorType::kF32    ? 0
                             : opt.type == TensorType::kF16  ? 1
                             : opt.type == TensorType::kQ8_0 ? 7
                                                             : 32;
  w.Add("general.file_type", Value::U32(file_type));
  w.Add("general.quantization_version", Value::U32(2));
  w.Add(a + "context_length", u32(c.max_position_embeddings));
  w.Add(a + "embedding_length", u32(c.hidden_size));
  w.Add(a + "block_count", u32(c.num_layers));
  w.Add(a + "feed_forward_length",
        u32(c.is_moe() ? c.moe.expert_intermediate : c.intermediate_size));
  w.Add(a + "attention.head_count", u32(c.num_heads));
  w.Add(a + "attention.head_count_kv", u32(c.num_kv_heads));
  w.Add(a + "attention.key_length", u32(c.head_dim));
  w.Add(a + "attention.value_length", u32(c.head_dim));
  w.Add(a + "attention.layer_norm_rms_epsilon", Value::F32(static_cast<float>(c.rms_norm_eps)));
  w.Add(a + "rope.freq_base", Value::F32(static_cast<float>(c.rope_theta)));
  w.Add(a + "rope.dimension_count", u32(c.head_dim));
  w.Add(a + "vocab_size", u32(c.vocab_size));
  if (const double factor = LinearRopeFactor(c); factor > 0) {
    w.Add(a + "rope.scaling.type", Value::Str("linear"));
    w.Add(a + "rope.scaling.factor", Value::F32(static_cast<float>(factor)));
  }
  if (c.is_moe()) {
    w.Add(a + "expert_count", u32(c.moe.num_experts));
    w.Add(a + "expert_used_count", u32(c.moe.top_k));
    w.Add(a + "expert_feed_forward_length", u32(c.moe.expert_intermediate));
    if (c.moe.shared_intermediate > 0)
      w.Add(a + "expert_shared_feed_forward_length", u32(c.moe.shared_intermediate));
  }
  w.Add("tokenizer.ggml.model", Value::Str("gpt2"));
  w.Add("tokenizer.ggml.pre", Value::Str(vocab.pre));
  w.Add("tokenizer.ggml.tokens", Value::Array(ValueType::kString, std::move(vocab.tokens)));
  w.Add("tokenizer.ggml.token_type", Value::Array(ValueType::kI32, std::move(vocab.types)));
  w.Add("tokenizer.ggml.merges", Value::Array(ValueType::kString, std::move(vocab.merges)));
  if (vocab.bos)
    w.Add("tokenizer.ggml.bos_token_id", Value::U32(static_cast<uint32_t>(*vocab.bos)));
  if (vocab.eos)
    w.Add("tokenizer.ggml.eos_token_id", Value::U32(static_cast<uint32_t>(*vocab.eos)));
  w.Add("tokenizer.ggml.add_bos_token", Value::Bool(vocab.add_bos));
  w.Add("tokenizer.ggml.add_eos_token", Value::Bool(false));
}

// The tensors of the file in order: llama.cpp's names, shapes (innermost first), types, the
// experts of a layer stacked into one tensor, and the head permutation of q and k.
// Items point into `specs`, which must outlive them.
Result<std::vector<Item>> PlanItems(const ModelConfig& c, const std::vector<TensorSpec>& specs,
                                    const GgufArch& arch, const ExportOptions& opt) {
  std::vector<Item> items;
  if (IsLlama3Rope(c)) {
    Item it;
    it.name = "rope_freqs.weight";
    ESCALE_ASSIGN_OR_RETURN(it.values, Llama3RopeFactors(c));
    it.ne = {static_cast<uint64_t>(it.values.size())};
    it.type = TensorType::kF32;
    items.push_back(std::move(it));
  }
  for (const TensorSpec& s : specs) {
    if (IsExpert(s.role)) {
      if (s.expert > 0) {
        for (Item& it : items)
          if (it.name == GgufName(s)) it.parts.push_back(&s);
        continue;
      }
    }
    Item it;
    it.name = GgufName(s);
    it.parts = {&s};
    for (auto d = s.shape.rbegin(); d != s.shape.rend(); ++d)
      it.ne.push_back(static_cast<uint64_t>(*d));
    if (IsExpert(s.role)) it.ne.push_back(static_cast<uint64_t>(c.moe.num_experts));
    // Vectors and routers stay f32 (llama.cpp's converter does the same); q8_0 needs rows that
    // are whole blocks, else the tensor is written f16.
    const bool vector = s.shape.size() == 1;
    const bool router = s.role == TensorRole::kRouter || s.role == TensorRole::kSharedRouter;
    it.type = vector || router ? TensorType::kF32 : opt.type;
    if (it.type == TensorType::kQ8_0 && it.ne[0] % 32 != 0) it.type = TensorType::kF16;
    if (arch.permute_qk && (s.role == TensorRole::kWq || s.role == TensorRole::kBq))
      it.permute_heads = c.num_heads;
    if (arch.permute_qk && (s.role == TensorRole::kWk || s.role == TensorRole::kBk))
      it.permute_heads = c.num_kv_heads;
    items.push_back(std::move(it));
  }
  return items;
}

// One item's data: converted to its type (and permuted) through the reused buffers.
Status WriteItemData(Writer& w, const HfModel& m, const Item& it, const TensorInfo& info,
                     std::vector<float>& f32, std::vector<float>& tmp,
                     std::vector<std::byte>& bytes) {
  if (it.parts.empty()) {
    return w.WriteTensorData(reinterpret_cast<const std::byte*>(it.values.data()),
                             it.values.size() * sizeof(float));
  }
  // Already f32 and not reordered: written straight from the mapping, no copy.
  if (it.parts.size() == 1 && it.permute_heads == 0 && info.type == TensorType::kF32 &&
      m.at(it.parts[0]->name).dtype() == DType::kF32) {
    const Tensor& t = m.at(it.parts[0]->name);
    PopulatePages(t);
    ESCALE_RETURN_IF_ERROR(w.WriteTensorData(t.bytes(), t.nbytes()));
    ReleasePages(m, t);
    return Status::Ok();
  }
  size_t n = 0;
  for (const TensorSpec* p : it.parts) n += static_cast<size_t>(ShapeNumel(p->shape));
  f32.resize(n);
  size_t at = 0;
  for (const TensorSpec* p : it.parts) {
    const Tensor& t = m.at(p->name);
    PopulatePages(t);
    ESCALE_RETURN_IF_ERROR(
        ConvertToF32(t.dtype(), t.bytes(), static_cast<size_t>(t.numel()), f32.data() + at));
    at += static_cast<size_t>(t.numel());
    ReleasePages(m, t);
  }
  if (it.permute_heads > 0) {
    const Shape& sh = it.parts[0]->shape;
    const int64_t rows = sh[0], cols = sh.size() > 1 ? sh[1] : 1;
    tmp.resize(n);
    PermuteRows(f32.data(), tmp.data(), it.permute_heads, rows, cols);
    f32.swap(tmp);
  }
  bytes.resize(info.nbytes);
  switch (info.type) {
    case TensorType::kF32:
      std::memcpy(bytes.data(), f32.data(), n * 4);
      break;
    case TensorType::kF16:
      ESCALE_RETURN_IF_ERROR(ConvertFromF32(f32.data(), n, DType::kF16, bytes.data()));
      break;
    case TensorType::kBF16:
      ESCALE_RETURN_IF_ERROR(ConvertFromF32(f32.data(), n, DType::kBF16, bytes.data()));
      break;
    case TensorType::kQ8_0:
      QuantizeQ8_0(f32.data(), n, bytes.data());
      break;
  }
  return w.WriteTensorData(bytes.data(), bytes.size());
}

Result<std::string> ExportGguf(const std::string& src, const std::string& out,
                               const ExportOptions& opt) {
  if (!opt.overwrite && fs::exists(out))
    return InvalidArgument(out + " exists; pass --overwrite to replace it");
  ESCALE_ASSIGN_OR_RETURN(HfModel m, ReadHfModel(src));
  const ModelConfig& c = m.config;
  ESCALE_ASSIGN_OR_RETURN(GgufArch arch, PickArch(c));
  ESCALE_ASSIGN_OR_RETURN(Vocab vocab, ReadVocab(src, c.vocab_size));
  if (c.is_moe() && c.moe.shared_intermediate > 0)
    ESCALE_RETURN_IF_ERROR(CheckSharedGatesNonZero(m));

  Writer w;
  AddMetadata(w, c, arch, vocab, src, opt);
  const std::vector<TensorSpec> specs = CanonicalTensors(c);
  ESCALE_ASSIGN_OR_RETURN(const std::vector<Item> items, PlanItems(c, specs, arch, opt));
  for (const Item& it : items) ESCALE_RETURN_IF_ERROR(w.AddTensor(it.name, it.ne, it.type));
  ESCALE_RETURN_IF_ERROR(w.Begin(out));

  std::vector<float> f32, tmp;
  std::vector<std::byte> bytes;
  uint64_t total = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    ESCALE_RETURN_IF_ERROR(WriteItemData(w, m, items[k], w.tensors()[k], f32, tmp, bytes));
    total += w.tensors()[k].nbytes;
  }
  ESCALE_RETURN_IF_ERROR(w.Commit());
  std::ostringstream s;
  s << "wrote " << out << ": arch " << arch.name << ", " << items.size() << " tensors ("
    << TensorTypeName(opt.type) << "), " << total << " bytes of tensor data, tokenizer pre-type "
    << vocab.pre;
  return s.str();
}

}  // namespace escale::gguf
