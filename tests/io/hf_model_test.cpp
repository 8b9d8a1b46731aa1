// Hugging Face model directories: bit-exact round trips for every architecture, sharding,
// bf16/f16 output, v5 fused experts, and the errors a damaged or mismatched directory gives.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/half.h"
#include "io/hf_model.h"
#include "io/model_fixtures.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::TempDir;

using testing::AllTiny;

void ExpectSameConfig(const ModelConfig& a, const ModelConfig& b) {
  auto ja = HfConfigToJson(a), jb = HfConfigToJson(b);
  ASSERT_TRUE(ja.ok() && jb.ok());
  json x = *ja, y = *jb;
  x.erase("torch_dtype");  // the written dtype follows WriteOptions
  y.erase("torch_dtype");
  EXPECT_EQ(x, y);
}

// Re-writes a read model through the streaming producer (one tensor at a time).
Status Rewrite(const HfModel& m, const std::string& dir, const WriteOptions& opt) {
  return WriteHfModel(dir, m.config, [&](const TensorSpec& s, std::byte* out) -> Status {
    const Tensor& t = m.at(s.name);
    if (t.dtype() == opt.dtype) {
      std::memcpy(out, t.bytes(), t.nbytes());
      return Status::Ok();
    }
    ESCALE_ASSIGN_OR_RETURN(Tensor c, ToDType(t, opt.dtype));
    std::memcpy(out, c.bytes(), c.nbytes());
    return Status::Ok();
  }, opt);
}

TEST(HfModel, RoundTripIsBitExactForEveryArchitecture) {
  for (const ModelConfig& c : AllTiny()) {
    const std::string cls(ArchitectureClassName(c.arch));
    TempDir tmp;
    WriteOptions opt = testing::QuietOptions();
    opt.metadata = {{"escale.source", "unit-test"}};
    const auto weights = testing::WriteRandomModel(tmp / "a", c, opt);
    auto m = ReadHfModel(tmp / "a");
    ASSERT_TRUE(m.ok()) << cls << ": " << m.status().message();
    ExpectSameConfig(m->config, c);
    EXPECT_EQ(m->config.dtype, DType::kF32);
    EXPECT_EQ(m->metadata.at("escale.source"), "unit-test");
    EXPECT_EQ(m->metadata.at("format"), "pt");
    EXPECT_EQ(m->files.size(), 1u);
    EXPECT_EQ(m->bytes_on_disk, fs::file_size(tmp / "a/model.safetensors"));
    ASSERT_EQ(m->tensors.size(), weights.size()) << cls;
    for (const auto& [name, t] : weights) EXPECT_TRUE(testing::SameBytes(m->at(name), t)) << cls << " " << name;
    // read -> write -> read again through the streaming producer.
    ASSERT_TRUE(Rewrite(*m, tmp / "b", opt).ok());
    auto m2 = ReadHfModel(tmp / "b");
    ASSERT_TRUE(m2.ok()) << m2.status().message();
    ExpectSameConfig(m2->config, c);
    for (const auto& [name, t] : weights) EXPECT_TRUE(testing::SameBytes(m2->at(name), t)) << cls << " " << name;
    // Same config, weights and metadata: the same file, byte for byte.
    EXPECT_EQ(testing::ReadFile(tmp / "a/model.safetensors"), testing::ReadFile(tmp / "b/model.safetensors")) << cls;
    EXPECT_EQ(testing::ReadFile(tmp / "a/config.json"), testing::ReadFile(tmp / "b/config.json")) << cls;
    // The same through the model-to-model path (straight from the mapping).
    ASSERT_TRUE(WriteHfModel(tmp / "c", m->config, *m, opt).ok());
    EXPECT_EQ(testing::ReadFile(tmp / "a/model.safetensors"), testing::ReadFile(tmp / "c/model.safetensors")) << cls;
  }
}

TEST(HfModel, HfNamesFollowEachFamily) {
  const ModelConfig mx = testing::TinyMixtral();
  const ModelConfig qm = testing::TinyQwen2Moe();
  std::set<std::string> mx_names, qm_names;
  for (const auto& s : CanonicalTensors(mx)) mx_names.insert(HfTensorName(mx, s));
  for (const auto& s : CanonicalTensors(qm)) qm_names.insert(HfTensorName(qm, s));
  EXPECT_TRUE(mx_names.count("model.layers.1.block_sparse_moe.gate.weight"));
  EXPECT_TRUE(mx_names.count("model.layers.1.block_sparse_moe.experts.3.w1.weight"));
  EXPECT_TRUE(mx_names.count("model.layers.1.block_sparse_moe.experts.3.w2.weight"));
  EXPECT_TRUE(mx_names.count("model.layers.1.block_sparse_moe.experts.3.w3.weight"));
  EXPECT_TRUE(qm_names.count("model.layers.1.mlp.gate.weight"));
  EXPECT_TRUE(qm_names.count("model.layers.1.mlp.experts.3.down_proj.weight"));
  EXPECT_TRUE(qm_names.count("model.layers.1.mlp.shared_expert.up_proj.weight"));
  EXPECT_TRUE(qm_names.count("model.layers.1.mlp.shared_expert_gate.weight"));
  EXPECT_TRUE(qm_names.count("model.layers.3.mlp.gate_proj.weight"));  // mlp_only_layers
  EXPECT_TRUE(qm_names.count("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_FALSE(qm_names.count("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_EQ(mx_names.size(), CanonicalTensors(mx).size());
}

TEST(HfModel, ShardedRoundTrip) {
  for (const ModelConfig& c : {testing::TinyLlama(), testing::TinyQwen2Moe()}) {
    TempDir tmp;
    WriteOptions opt = testing::QuietOptions();
    opt.max_shard_bytes = 1024;
    const auto weights = testing::WriteRandomModel(tmp / "a", c, opt);
    EXPECT_TRUE(fs::exists(tmp / "a/model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(tmp / "a/model.safetensors"));
    auto m = ReadHfModel(tmp / "a");
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_GT(m->files.size(), 2u);
    for (const auto& [name, t] : weights) EXPECT_TRUE(testing::SameBytes(m->at(name), t)) << name;
    const json index = json::parse(testing::ReadFile(tmp / "a/model.safetensors.index.json"));
    uint64_t total = 0;
    for (const auto& [name, t] : weights) total += t.nbytes();
    EXPECT_EQ(index["metadata"]["total_size"], total);
    EXPECT_EQ(index["weight_map"].size(), weights.size());
  }
}

TEST(HfModel, Bf16AndF16Output) {
  const ModelConfig c = testing::TinyQwen2Moe();
  for (DType dt : {DType::kBF16, DType::kF16}) {
    TempDir tmp;
    WriteOptions opt = testing::QuietOptions();
    opt.dtype = dt;
    const auto weights = testing::WriteRandomModel(tmp / "a", c, opt);
    auto m = ReadHfModel(tmp / "a");
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_EQ(m->config.dtype, dt);
    const json cj = json::parse(testing::ReadFile(tmp / "a/config.json"));
    EXPECT_EQ(cj["torch_dtype"], dt == DType::kBF16 ? "bfloat16" : "float16");
    for (const auto& [name, t] : weights) {
      const Tensor& r = m->at(name);
      ASSERT_EQ(r.dtype(), dt);
      for (int64_t i = 0; i < t.numel(); ++i) {
        const float f = t.data<float>()[i];
        const uint16_t want = dt == DType::kBF16 ? F32ToBf16(f) : F32ToF16(f);
        ASSERT_EQ(r.data<uint16_t>()[i], want) << name << "[" << i << "]";
      }
    }
    // 16-bit in, 16-bit out: bit-identical.
    ASSERT_TRUE(Rewrite(*m, tmp / "b", opt).ok());
    auto m2 = ReadHfModel(tmp / "b");
    ASSERT_TRUE(m2.ok());
    for (const auto& [name, t] : m->tensors) EXPECT_TRUE(testing::SameBytes(m2->at(name), t)) << name;
  }
}

// The same weights as a transformers-v5 fused checkpoint: gate_up_proj [E, 2I, H] (gate rows
// first), down_proj [E, H, I], and for Mixtral the router under mlp.gate.
std::vector<std::pair<std::string, Tensor>> FusedNames(const ModelConfig& c, const std::map<std::string, Tensor>& w) {
  std::vector<std::pair<std::string, Tensor>> out;
  const int64_t E = c.moe.num_experts, I = c.moe.expert_intermediate, H = c.hidden_size;
  for (const TensorSpec& s : CanonicalTensors(c)) {
    if (s.expert > 0) continue;
    const std::string lp = "model.layers." + std::to_string(s.layer) + ".";
    if (s.expert == 0) {
      if (s.role != TensorRole::kExpertGate) continue;
      Tensor gu = Tensor::Zeros(DType::kF32, {E, 2 * I, H});
      Tensor dn = Tensor::Zeros(DType::kF32, {E, H, I});
      for (int64_t e = 0; e < E; ++e) {
        const auto g = w.at(ExpertTensorName(s.layer, e, "gate")), u = w.at(ExpertTensorName(s.layer, e, "up")),
                   d = w.at(ExpertTensorName(s.layer, e, "down"));
        std::memcpy(gu.mutable_data<float>() + e * 2 * I * H, g.bytes(), g.nbytes());
        std::memcpy(gu.mutable_data<float>() + e * 2 * I * H + I * H, u.bytes(), u.nbytes());
        std::memcpy(dn.mutable_data<float>() + e * H * I, d.bytes(), d.nbytes());
      }
      out.emplace_back(lp + "mlp.experts.gate_up_proj", gu);
      out.emplace_back(lp + "mlp.experts.down_proj", dn);
      continue;
    }
    std::string name = HfTensorName(c, s);
    if (s.role == TensorRole::kRouter) name = lp + "mlp.gate.weight";
    out.emplace_back(name, w.at(s.name));
  }
  return out;
}

TEST(HfModel, V5FusedExpertsReadAsPerExpertViews) {
  for (const ModelConfig& c :
       {testing::TinyMixtral(), testing::TinyQwen2Moe(), testing::TinyQwen3Moe()}) {
    TempDir tmp;
    const auto weights = testing::RandomWeights(c, 7);
    testing::WriteRawCheckpoint(tmp / "v4", testing::ConfigJson(c), testing::HfNamed(c, weights));
    testing::WriteRawCheckpoint(tmp / "v5", testing::ConfigJson(c), FusedNames(c, weights));
    auto v4 = ReadHfModel(tmp / "v4");
    auto v5 = ReadHfModel(tmp / "v5");
    ASSERT_TRUE(v4.ok()) << v4.status().message();
    ASSERT_TRUE(v5.ok()) << v5.status().message();
    ASSERT_EQ(v4->tensors.size(), v5->tensors.size());
    for (const auto& [name, t] : v4->tensors) EXPECT_TRUE(testing::SameBytes(v5->at(name), t)) << name;
    // Zero-copy: an expert's gate view points into the mapped file.
    const Tensor& g = v5->at(ExpertTensorName(1, 2, "gate"));
    const auto& mf = *v5->files[0]->file();
    EXPECT_GE(g.bytes(), mf.data());
    EXPECT_LT(g.bytes(), mf.data() + mf.size());
    // Writing a v5 model produces the v4 per-expert layout.
    ASSERT_TRUE(Rewrite(*v5, tmp / "out", testing::QuietOptions()).ok());
    auto f = SafetensorsFile::Open(tmp / "out/model.safetensors");
    ASSERT_TRUE(f.ok());
    EXPECT_NE(f->Find(HfTensorName(c, {ExpertTensorName(1, 2, "gate"), TensorRole::kExpertGate, 1, 2, {}})), nullptr);
    EXPECT_EQ(f->Find("model.layers.1.mlp.experts.gate_up_proj"), nullptr);
  }
}

TEST(HfModel, FusedWrongShapeIsRefused) {
  const ModelConfig c = testing::TinyQwen2Moe();
  TempDir tmp;
  auto named = FusedNames(c, testing::RandomWeights(c));
  for (auto& [name, t] : named)
    if (name == "model.layers.1.mlp.experts.down_proj") t = Tensor::Zeros(DType::kF32, {4, 4, 8});
  testing::WriteRawCheckpoint(tmp / "m", testing::ConfigJson(c), named);
  auto m = ReadHfModel(tmp / "m");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("down_proj"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("[4, 8, 4]"), std::string::npos) << m.status().message();
}

struct Broken {
  std::string label;
  std::function<void(ModelConfig&, std::vector<std::pair<std::string, Tensor>>&)> damage;
  std::string expect;
};

TEST(HfModel, MismatchedDirectoriesGiveOneLineErrors) {
  const std::vector<Broken> cases = {
      {"missing tensor",
       [](ModelConfig&, auto& t) { t.erase(t.begin() + 3); },
       "model.layers.0.self_attn.k_proj.weight (layers.0.wk, shape [4, 8]) is missing"},
      {"shape mismatch",
       [](ModelConfig& c, auto&) { c.intermediate_size = 10; },
       "has shape [12, 8] but config.json implies [10, 8]"},
      {"unknown tensor",
       [](ModelConfig&, auto& t) { t.emplace_back("model.layers.9.mlp.up_proj.weight", Tensor::Zeros(DType::kF32, {2})); },
       "unexpected tensor model.layers.9.mlp.up_proj.weight"},
      {"untied without head",
       [](ModelConfig&, auto& t) { t.pop_back(); },
       "lm_head.weight is missing and tie_word_embeddings is false"},
      {"quantized weights",
       [](ModelConfig&, auto& t) { t[1].second = Tensor::Zeros(DType::kI8, {8}); },
       "quantized checkpoints are not supported"},
  };
  for (const Broken& b : cases) {
    TempDir tmp;
    ModelConfig c = testing::TinyLlama();
    auto named = testing::HfNamed(c, testing::RandomWeights(c));
    b.damage(c, named);
    testing::WriteRawCheckpoint(tmp / "m", testing::ConfigJson(c), named);
    auto m = ReadHfModel(tmp / "m");
    ASSERT_FALSE(m.ok()) << b.label;
    EXPECT_NE(m.status().message().find(b.expect), std::string::npos) << b.label << ": " << m.status().message();
    EXPECT_EQ(m.status().message().find('\n'), std::string::npos);
  }
}

TEST(HfModel, TiedHeadInFileAndRotaryBuffersAreIgnored) {
  TempDir tmp;
  const ModelConfig c = testing::TinyLlama(/*tied=*/true);
  const auto w = testing::RandomWeights(c);
  auto named = testing::HfNamed(c, w);
  named.emplace_back("lm_head.weight", testing::RandomWeights(testing::TinyLlama()).at("lm_head"));
  named.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor::Zeros(DType::kF32, {1}));
  testing::WriteRawCheckpoint(tmp / "m", testing::ConfigJson(c), named);
  auto m = ReadHfModel(tmp / "m");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->tensors.count("lm_head"), 0u);
  EXPECT_TRUE(testing::SameBytes(m->at("embed"), w.at("embed")));
}

TEST(HfModel, ShardIndexErrors) {
  const ModelConfig c = testing::TinyLlama();
  auto make = [&](const std::string& dir) {
    testing::WriteRawCheckpoint(dir, testing::ConfigJson(c), testing::HfNamed(c, testing::RandomWeights(c)), 1024);
  };
  {
    TempDir tmp;
    make(tmp / "m");
    const json index = json::parse(testing::ReadFile(tmp / "m/model.safetensors.index.json"));
    const std::string shard = index["weight_map"]["model.layers.1.mlp.up_proj.weight"];
    ASSERT_NE(shard, "model-00001-of-00001.safetensors");
    ASSERT_TRUE(fs::remove(tmp / ("m/" + shard)));
    auto m = ReadHfModel(tmp / "m");
    ASSERT_FALSE(m.ok());
    EXPECT_NE(m.status().message().find("shard " + shard), std::string::npos) << m.status().message();
    EXPECT_NE(m.status().message().find("missing"), std::string::npos);
  }
  {
    TempDir tmp;
    make(tmp / "m");
    json index = json::parse(testing::ReadFile(tmp / "m/model.safetensors.index.json"));
    const std::string first = index["weight_map"]["model.embed_tokens.weight"];
    ASSERT_NE(index["weight_map"]["model.norm.weight"], first);
    index["weight_map"]["model.norm.weight"] = first;
    testing::WriteFile(tmp / "m/model.safetensors.index.json", index.dump());
    auto m = ReadHfModel(tmp / "m");
    ASSERT_FALSE(m.ok());
    EXPECT_NE(m.status().message().find("'model.norm.weight' is mapped to " + first),
              std::string::npos) << m.status().message();
  }
  {
    TempDir tmp;
    make(tmp / "m");
    json index = json::parse(testing::ReadFile(tmp / "m/model.safetensors.index.json"));
    index["weight_map"].erase("model.norm.weight");
    testing::WriteFile(tmp / "m/model.safetensors.index.json", index.dump());
    auto m = ReadHfModel(tmp / "m");
    ASSERT_FALSE(m.ok());
    EXPECT_NE(m.status().message().find("'model.norm.weight'"), std::string::npos) << m.status().message();
    EXPECT_NE(m.status().message().find("not assigned"), std::string::npos) << m.status().message();
  }
  {
    TempDir tmp;
    make(tmp / "m");
    json index = json::parse(testing::ReadFile(tmp / "m/model.safetensors.index.json"));
    index["weight_map"]["model.norm.weight"] = "../../etc/passwd";
    testing::WriteFile(tmp / "m/model.safetensors.index.json", index.dump());
    EXPECT_NE(ReadHfModel(tmp / "m").status().message().find("plain file name"), std::string::npos);
  }
  {
    TempDir tmp;
    fs::create_directories(tmp / "m");
    testing::WriteFile(tmp / "m/config.json", testing::ConfigJson(c).dump());
    EXPECT_EQ(ReadHfModel(tmp / "m").status().code(), ErrorCode::kNotFound);
  }
  // A damaged index says where, and nothing after the document is ignored.
  for (const std::string& tail : {std::string(1, '\0') + "junk", std::string(" {}")}) {
    TempDir tmp;
    make(tmp / "m");
    const std::string path = tmp / "m/model.safetensors.index.json";
    testing::WriteFile(path, testing::ReadFile(path) + tail);
    auto m = ReadHfModel(tmp / "m");
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), ErrorCode::kFormat);
    EXPECT_NE(m.status().message().find("is not valid JSON"), std::string::npos)
        << m.status().message();
  }
  {
    TempDir tmp;
    make(tmp / "m");
    testing::WriteFile(tmp / "m/model.safetensors.index.json", "{\"weight_map\": {\n  \"a\": }");
    const std::string msg = ReadHfModel(tmp / "m").status().message();
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  }
}

TEST(HfModel, WriterCopiesTokenizerAndRefusesToClobber) {
  TempDir tmp;
  fs::create_directories(tmp / "tok");
  testing::WriteFile(tmp / "tok/tokenizer.json", "{\"version\":\"1.0\"}");
  testing::WriteFile(tmp / "tok/generation_config.json", "{\"eos_token_id\":2}");
  testing::WriteFile(tmp / "tok/unrelated.bin", "x");
  WriteOptions opt = testing::QuietOptions();
  opt.copy_tokenizer_from = tmp / "tok";
  testing::WriteRandomModel(tmp / "m", testing::TinyLlama(), opt);
  EXPECT_EQ(testing::ReadFile(tmp / "m/tokenizer.json"), "{\"version\":\"1.0\"}");
  EXPECT_EQ(testing::ReadFile(tmp / "m/generation_config.json"), "{\"eos_token_id\":2}");
  EXPECT_FALSE(fs::exists(tmp / "m/unrelated.bin"));
  // An existing output is kept unless overwrite is set.
  const auto w = testing::RandomWeights(testing::TinyLlama(), 99);
  const Status st = WriteHfModel(tmp / "m", testing::TinyLlama(), w, testing::QuietOptions());
  EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument);
  opt = testing::QuietOptions();
  opt.overwrite = true;
  ASSERT_TRUE(WriteHfModel(tmp / "m", testing::TinyLlama(), w, opt).ok());
  auto m = ReadHfModel(tmp / "m");
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(testing::SameBytes(m->at("embed"), w.at("embed")));
  EXPECT_FALSE(fs::exists(tmp / "m/tokenizer.json"));
}

TEST(HfModel, WriterFailureLeavesNoOutput) {
  TempDir tmp;
  auto w = testing::RandomWeights(testing::TinyLlama());
  w.erase("norm");
  const Status st = WriteHfModel(tmp / "m", testing::TinyLlama(), w, testing::QuietOptions());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("'norm' is missing"), std::string::npos) << st.message();
  EXPECT_TRUE(fs::is_empty(tmp.path()));  // no output, no staging leftovers
  w = testing::RandomWeights(testing::TinyLlama());
  w["layers.0.bq"] = Tensor::Zeros(DType::kF32, {8});
  EXPECT_NE(WriteHfModel(tmp / "m", testing::TinyLlama(), w, testing::QuietOptions()).message().find("'layers.0.bq'"),
            std::string::npos);
}

}  // namespace
}  // namespace escale
