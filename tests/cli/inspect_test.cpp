// escale inspect: numbers checked against counts worked out by hand, the JSON fields, and a
// catalogue of damaged directories that must each end in exit 1 and one line on stderr.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/model_fixtures.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::RunEscale;
using testing::TempDir;

TEST(Inspect, DenseCountsByHand) {
  TempDir tmp;
  testing::WriteRandomModel(tmp / "m", testing::TinyLlama());
  const auto r = RunEscale("inspect " + tmp / "m" + " --json --seq-len 16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  // V=11 H=8 F=12 L=2 heads 4 kv 2 hd 2, untied. embed 88; per layer: norms 16, wq 64, wk 32,
  // wv 32, wo 64, ffn 3*96 = 288 -> 496; final norm 8; head 88.
  EXPECT_EQ(j["parameters"]["total"], 88 + 2 * 496 + 8 + 88);
  EXPECT_EQ(j["parameters"]["active"], 1176);
  EXPECT_EQ(j["parameters"]["embedding"], 88);
  EXPECT_EQ(j["parameters"]["active_matmul"], 2 * (64 + 32 + 32 + 64 + 288) + 88);
  EXPECT_EQ(j["flops_per_token"]["seq_len"], 16);
  EXPECT_EQ(j["flops_per_token"]["matmul"], 6.0 * 1048);
  EXPECT_EQ(j["flops_per_token"]["attention"], 12.0 * 2 * 16 * 8);
  EXPECT_EQ(j["flops_per_token"]["attention_causal"], 6.0 * 2 * 16 * 8);
  EXPECT_EQ(j["flops_per_token"]["total"], 6.0 * 1048 + 12.0 * 2 * 16 * 8);
  EXPECT_EQ(j["architecture"], "LlamaForCausalLM");
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["config"]["num_kv_heads"], 2);
  EXPECT_EQ(j["config"]["head_dim"], 2);
  EXPECT_EQ(j["config"]["rope_theta"], 500000.0);
  EXPECT_EQ(j["config"]["tie_word_embeddings"], false);
  EXPECT_EQ(j["config"]["dtype"], "F32");
  EXPECT_EQ(j["dtypes"]["F32"]["tensors"], 1 + 2 * 9 + 1 + 1);
  EXPECT_EQ(j["dtypes"]["F32"]["bytes"], 4 * 1176);
  EXPECT_EQ(j["shards"], 1);
  EXPECT_EQ(j["bytes_on_disk"], fs::file_size(tmp / "m/model.safetensors"));
  EXPECT_EQ(j["metadata"]["format"], "pt");
  EXPECT_FALSE(j.contains("tensors"));
}

TEST(Inspect, MoeCountsByHandAndTensorList) {
  TempDir tmp;
  WriteOptions opt = testing::QuietOptions();
  opt.dtype = DType::kBF16;
  opt.max_shard_bytes = 512;
  testing::WriteRandomModel(tmp / "m", testing::TinyMixtral(), opt);
  const auto r = RunEscale("inspect " + tmp / "m" + " --json --tensors");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  // E=4 k=2 Fe=6: per layer norms 16, attention 192, router 32, experts 4*144 = 576.
  EXPECT_EQ(j["parameters"]["total"], 88 + 2 * (16 + 192 + 32 + 576) + 8 + 88);
  EXPECT_EQ(j["parameters"]["routed_experts"], 2 * 576);
  EXPECT_EQ(j["parameters"]["active"], 1816 - 1152 + 2 * 2 * 144);
  EXPECT_EQ(j["parameters"]["active_matmul"], 2 * (192 + 32 + 2 * 144) + 88);
  EXPECT_EQ(j["flops_per_token"]["seq_len"], 4096);
  EXPECT_EQ(j["config"]["moe"]["num_experts"], 4);
  EXPECT_EQ(j["config"]["moe"]["router"], "st");
  EXPECT_EQ(j["config"]["moe"]["capacity_factor"], 1.5);
  EXPECT_EQ(j["config"]["moe"]["moe_layers"], json({0, 1}));
  EXPECT_EQ(j["config"]["dtype"], "BF16");
  EXPECT_EQ(j["dtypes"]["BF16"]["bytes"], 2 * 1816);
  EXPECT_GT(j["shards"].get<int>(), 3);
  uint64_t disk = 0;
  for (const auto& e : fs::directory_iterator(tmp / "m"))
    if (e.path().extension() == ".safetensors") disk += fs::file_size(e.path());
  EXPECT_EQ(j["bytes_on_disk"], disk);
  ASSERT_EQ(j["tensors"].size(), 1u + 2 * (2 + 4 + 1 + 12) + 1 + 1);
  bool found = false;
  for (const auto& t : j["tensors"])
    if (t["name"] == "layers.1.moe.experts.3.down") {
      found = true;
      EXPECT_EQ(t["hf_name"], "model.layers.1.block_sparse_moe.experts.3.w2.weight");
      EXPECT_EQ(t["shape"], json({8, 6}));
      EXPECT_EQ(t["dtype"], "BF16");
    }
  EXPECT_TRUE(found);
}

TEST(Inspect, HumanOutput) {
  TempDir tmp;
  testing::WriteRandomModel(tmp / "m", testing::TinyQwen2Moe());
  const auto r = RunEscale("inspect " + tmp / "m" + " --tensors");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Qwen2MoeForCausalLM (qwen2_moe)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("4 experts, top-2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2/6 layers sparse"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.5.mlp.shared_expert_gate.weight"), std::string::npos);
  EXPECT_NE(r.out.find("qkv bias yes"), std::string::npos);
  TempDir tmp2;
  testing::WriteRandomModel(tmp2 / "m", testing::TinyMistral());
  const auto r2 = RunEscale("inspect " + tmp2 / "m");
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_NE(r2.out.find("sliding_window 4096 is ignored"), std::string::npos) << r2.out;
  EXPECT_EQ(json::parse(RunEscale("inspect --json " + tmp2 / "m").out)["config"]["sliding_window"], 4096);
  // Qwen configs ship a sliding_window value that is inactive unless use_sliding_window is true.
  TempDir tmp3;
  ModelConfig q = testing::TinyQwen2();
  q.extra["sliding_window"] = 131072;
  q.extra["use_sliding_window"] = false;
  testing::WriteRandomModel(tmp3 / "m", q);
  const auto r3 = RunEscale("inspect " + tmp3 / "m");
  ASSERT_EQ(r3.exit_code, 0) << r3.err;
  EXPECT_EQ(r3.out.find("sliding_window"), std::string::npos) << r3.out;
  EXPECT_TRUE(json::parse(RunEscale("inspect --json " + tmp3 / "m").out)["config"]["sliding_window"].is_null());
}

std::string T(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t b, uint64_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}

// A JSON object from member strings (appends, which GCC 12's -Wrestrict does not misread).
std::string Obj(std::initializer_list<std::string> members) {
  std::string out = "{";
  for (const std::string& m : members) {
    if (out.size() > 1) out += ',';
    out += m;
  }
  out += '}';
  return out;
}

struct Case {
  std::string label;
  std::function<void(const std::string& dir)> make;  // damages a valid tiny Llama directory
  std::string expect;
};

void Raw(const std::string& dir, const std::string& header, const std::string& data, int64_t n = -1) {
  testing::WriteFile(dir + "/model.safetensors", testing::RawSafetensors(header, data, n));
}

TEST(Inspect, DamagedInputsFailWithOneLine) {
  const std::string a = T("a", "F32", "[2]", 0, 8);
  const std::vector<Case> cases = {
      {"truncated file", [](const std::string& d) { testing::WriteFile(d + "/model.safetensors", "abc"); },
       "shorter than the 8-byte header length"},
      {"header length past end", [](const std::string& d) { Raw(d, "{}", "", 50); }, "runs past the end"},
      {"header over cap", [](const std::string& d) { Raw(d, "{}", "", 200'000'000); }, "exceeds the 100 MB limit"},
      {"overlapping offsets", [](const std::string& d) {
         Raw(d, Obj({T("a", "F32", "[4]", 0, 16), T("b", "F32", "[4]", 0, 16)}), std::string(16, 'x'));
       }, "overlap the previous tensor"},
      {"out-of-order gapped offsets", [](const std::string& d) {
         Raw(d, Obj({T("b", "F32", "[2]", 12, 20), T("a", "F32", "[2]", 0, 8)}), std::string(20, 'x'));
       }, "leave a gap"},
      {"gapped offsets", [](const std::string& d) {
         Raw(d, Obj({T("a", "F32", "[2]", 0, 8), T("b", "F32", "[2]", 16, 24)}), std::string(24, 'x'));
       }, "leave a gap"},
      {"trailing bytes", [a](const std::string& d) { Raw(d, Obj({a}), std::string(9, 'x')); }, "1 trailing bytes"},
      {"wrong dtype size", [](const std::string& d) { Raw(d, Obj({T("a", "F32", "[2]", 0, 4)}), "xxxx"); },
       "span 4 bytes but F32 [2] needs 8"},
      {"unknown dtype", [](const std::string& d) { Raw(d, Obj({T("a", "Q4", "[2]", 0, 8)}), "xxxxxxxx"); },
       "unknown dtype 'Q4'"},
      {"non-UTF-8 header", [](const std::string& d) { Raw(d, "{\"\xfe\":1}", ""); }, "not valid UTF-8"},
      {"non-JSON header", [](const std::string& d) { Raw(d, "{\"a\":", ""); }, "not valid JSON"},
      {"duplicate keys", [a](const std::string& d) { Raw(d, Obj({a, a}), "xxxxxxxx"); },
       "duplicate key 'a'"},
      {"non-string metadata", [](const std::string& d) { Raw(d, R"({"__metadata__":{"format":["pt"]}})", ""); },
       "metadata values must be strings"},
      {"config missing field", [](const std::string& d) {
         json c = json::parse(testing::ReadFile(d + "/config.json"));
         c.erase("num_attention_heads");
         testing::WriteFile(d + "/config.json", c.dump());
       }, "required field 'num_attention_heads' is missing"},
      {"config/tensor shape mismatch", [](const std::string& d) {
         json c = json::parse(testing::ReadFile(d + "/config.json"));
         c["vocab_size"] = 12;
         testing::WriteFile(d + "/config.json", c.dump());
       }, "model.embed_tokens.weight (embed) in model.safetensors has shape [11, 8] but config.json implies [12, 8]"},
      {"shard missing from the index", [](const std::string& d) {
         fs::remove(d + "/model.safetensors");
         testing::WriteFile(d + "/model.safetensors.index.json",
                            R"({"metadata":{"total_size":1},"weight_map":{"model.embed_tokens.weight":"model-00001-of-00002.safetensors"}})");
       }, "shard model-00001-of-00002.safetensors named in"},
      {"missing tensor", [](const std::string& d) {
         const ModelConfig c = testing::TinyLlama();
         auto named = testing::HfNamed(c, testing::RandomWeights(c));
         named.erase(named.begin() + 5);
         fs::remove_all(d);
         testing::WriteRawCheckpoint(d, testing::ConfigJson(c), named);
       }, "tensor model.layers.0.self_attn.o_proj.weight (layers.0.wo, shape [8, 8]) is missing"},
      {"unknown architecture", [](const std::string& d) {
         json c = json::parse(testing::ReadFile(d + "/config.json"));
         c["architectures"] = {"FalconForCausalLM"};
         testing::WriteFile(d + "/config.json", c.dump());
       }, "architecture 'FalconForCausalLM' is not supported"},
      {"config not JSON", [](const std::string& d) { testing::WriteFile(d + "/config.json", "{"); }, "not valid JSON"},
      {"no weights", [](const std::string& d) { fs::remove(d + "/model.safetensors"); },
       "neither model.safetensors nor model.safetensors.index.json"},
      {"no directory", [](const std::string& d) { fs::remove_all(d); }, "config.json does not exist"},
  };
  for (const Case& c : cases) {
    TempDir tmp;
    const std::string dir = tmp / "m";
    testing::WriteRandomModel(dir, testing::TinyLlama());
    c.make(dir);
    const auto r = RunEscale("inspect " + dir);
    EXPECT_EQ(r.exit_code, 1) << c.label << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.label << ": " << r.err;
    EXPECT_EQ(r.err.rfind("escale inspect: error: ", 0), 0u) << c.label << ": " << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.label << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << c.label;
  }
}

TEST(Inspect, BadSeqLen) {
  TempDir tmp;
  testing::WriteRandomModel(tmp / "m", testing::TinyLlama());
  const auto r = RunEscale("inspect " + tmp / "m" + " --seq-len 0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--seq-len"), std::string::npos);
}

}  // namespace
}  // namespace escale
