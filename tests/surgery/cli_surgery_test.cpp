// scale-up, scale-out and verify through files and the escale binary: fp32 checkpoints, the
// config fields and tensor names transformers expects, recorded metadata, dry runs from a bare
// config.json (the paper's shapes), and one-line refusals that leave no output behind.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "io/hf_model.h"
#include "io/safetensors.h"
#include "support/test_support.h"
#include "surgery_fixtures.h"

namespace escale::surgery {
namespace {

namespace fs = std::filesystem;
using escale::testing::RunEscale;
using escale::testing::TempDir;
using json = nlohmann::json;

void WriteModel(const std::string& dir, ModelConfig c, uint64_t seed) {
  c.dtype = DType::kF32;
  const TensorMap m = testing::RandomModel(c, seed, DType::kF32);
  WriteOptions o;
  o.dtype = DType::kF32;
  o.progress = false;
  const Status st = WriteHfModel(dir, c, m, o);
  ASSERT_TRUE(st.ok()) << st.message();
}

void WriteConfigOnly(const std::string& dir, const ModelConfig& c) {
  fs::create_directories(dir);
  auto j = HfConfigToJson(c);
  ASSERT_TRUE(j.ok()) << j.status().message();
  escale::testing::WriteFile(dir + "/config.json", j->dump(2));
}

json Verify(const std::string& a, const std::string& b) {
  const auto r = RunEscale("verify " + a + " " + b + " --json --tokens 1,5,3,7,2,9,11,4,28,0");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out, nullptr, false);
}

std::set<std::string> TensorNames(const std::string& dir) {
  auto f = SafetensorsFile::Open(dir + "/model.safetensors");
  EXPECT_TRUE(f.ok()) << f.status().message();
  std::set<std::string> s;
  if (f.ok())
    for (const auto& e : f->entries()) s.insert(e.name);
  return s;
}

json ReadJson(const std::string& path) { return json::parse(escale::testing::ReadFile(path), nullptr, false); }

bool OneLineError(const escale::testing::CommandResult& r) {
  return r.exit_code != 0 && !r.err.empty() && r.err.find('\n') == r.err.size() - 1;
}

TEST(CliSurgery, ScaleUpThenVerifyIsExactInFp32) {
  TempDir tmp;
  WriteModel(tmp / "src", testing::TinyConfig({true, true, false}), 31);
  auto r = RunEscale("scale-up " + tmp / "src" + " " + tmp / "dst" +
                     " --hidden 32 --intermediate 48 --layers 5 --depth zero");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("function preservation: exact"), std::string::npos) << r.out;
  const json v = Verify(tmp / "src", tmp / "dst");
  EXPECT_LE(v["max_abs_logit_diff"].get<double>(), 1e-4);
  EXPECT_EQ(v["top1_agreement"].get<double>(), 1.0);
  ASSERT_EQ(v["layers"].size(), 3u);  // paired through the recorded depth map
  EXPECT_EQ(v["layers"][1]["b"].get<int>(), 3);
  for (const auto& l : v["layers"]) EXPECT_LE(l["max_abs"].get<double>(), 1e-4);
  // Grown model straight into scale-out, verified against the original dense model.
  r = RunEscale("scale-out " + tmp / "dst" + " " + tmp / "moe" + " --experts 4 --top-k 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(Verify(tmp / "src", tmp / "moe")["max_abs_logit_diff"].get<double>(), 1e-4);
  // AKI with stacking is not exact, and verify says so.
  r = RunEscale("scale-up " + tmp / "src" + " " + tmp / "aki" + " --method aki --hidden 32 --layers 6");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(Verify(tmp / "src", tmp / "aki")["max_abs_logit_diff"].get<double>(), 1e-3);
}

TEST(CliSurgery, ScaleOutMixtralHasTheTransformersNamesAndIsExact) {
  TempDir tmp;
  const ModelConfig c = testing::TinyConfig({true, false, false}, 2);
  WriteModel(tmp / "dense", c, 32);
  auto r = RunEscale("scale-out " + tmp / "dense" + " " + tmp / "moe" + " --experts 4 --top-k 2 --seed 17");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(Verify(tmp / "dense", tmp / "moe")["max_abs_logit_diff"].get<double>(), 1e-4);
  const json cfg = ReadJson(tmp / "moe/config.json");
  EXPECT_EQ(cfg["architectures"][0], "MixtralForCausalLM");
  EXPECT_EQ(cfg["model_type"], "mixtral");
  EXPECT_EQ(cfg["num_local_experts"], 4);
  EXPECT_EQ(cfg["num_experts_per_tok"], 2);
  EXPECT_EQ(cfg["intermediate_size"], 24);  // per expert in Mixtral
  EXPECT_EQ(cfg["hidden_size"], 16);
  EXPECT_EQ(cfg["num_key_value_heads"], 2);
  EXPECT_EQ(cfg["num_hidden_layers"], 2);
  // The Mixtral tensor names of docs/formats.md ("Model directories"), written out by hand.
  std::set<std::string> want = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* n : {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                          "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                          "block_sparse_moe.gate.weight"})
      want.insert(p + n);
    for (int e = 0; e < 4; ++e)
      for (const char* w : {"w1", "w2", "w3"})
        want.insert(p + "block_sparse_moe.experts." + std::to_string(e) + "." + w + ".weight");
  }
  EXPECT_EQ(TensorNames(tmp / "moe"), want);
  auto f = SafetensorsFile::Open(tmp / "moe/model.safetensors");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->metadata().at("escale.seed"), "17");
  EXPECT_NE(f->metadata().at("escale.router_init").find("std=0.02"), std::string::npos);
  EXPECT_EQ(f->metadata().at("escale.function_preserving"), "exact");
  EXPECT_EQ(f->metadata().at("escale.router"), "mixtral");
}

TEST(CliSurgery, ScaleOutQwen2MoeWithSharedExpertHasTheTransformersNamesAndIsExact) {
  TempDir tmp;
  const ModelConfig c = testing::TinyConfig({true, true, false}, 2);
  WriteModel(tmp / "dense", c, 33);
  auto r = RunEscale("scale-out " + tmp / "dense" + " " + tmp / "moe" +
                     " --experts 4 --top-k 2 --shared-experts --granularity 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(Verify(tmp / "dense", tmp / "moe")["max_abs_logit_diff"].get<double>(), 1e-4);
  const json cfg = ReadJson(tmp / "moe/config.json");
  EXPECT_EQ(cfg["architectures"][0], "Qwen2MoeForCausalLM");
  EXPECT_EQ(cfg["model_type"], "qwen2_moe");
  EXPECT_EQ(cfg["num_experts"], 8);
  EXPECT_EQ(cfg["num_experts_per_tok"], 4);
  EXPECT_EQ(cfg["moe_intermediate_size"], 12);
  EXPECT_EQ(cfg["shared_expert_intermediate_size"], 24);
  EXPECT_EQ(cfg["norm_topk_prob"], true);
  EXPECT_EQ(cfg["decoder_sparse_step"], 1);
  std::set<std::string> want = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* n : {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                          "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                          "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias",
                          "mlp.gate.weight", "mlp.shared_expert.gate_proj.weight", "mlp.shared_expert.up_proj.weight",
                          "mlp.shared_expert.down_proj.weight", "mlp.shared_expert_gate.weight"})
      want.insert(p + n);
    for (int e = 0; e < 8; ++e)
      for (const char* w : {"gate_proj", "up_proj", "down_proj"})
        want.insert(p + "mlp.experts." + std::to_string(e) + "." + w + ".weight");
  }
  EXPECT_EQ(TensorNames(tmp / "moe"), want);
}

TEST(CliSurgery, StRoutingIsReportedAndMeasuredAsInexact) {
  TempDir tmp;
  WriteModel(tmp / "dense", testing::TinyConfig({true, false, false}, 2), 34);
  auto r = RunEscale("scale-out " + tmp / "dense" + " " + tmp / "moe" +
                     " --experts 4 --top-k 2 --router st --router-init-std 0.5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("not exact: st routing"), std::string::npos) << r.out;
  EXPECT_EQ(ReadJson(tmp / "moe/config.json")["norm_topk_prob"], false);
  EXPECT_GT(Verify(tmp / "dense", tmp / "moe")["max_abs_logit_diff"].get<double>(), 1e-3);
  r = RunEscale("verify " + tmp / "dense" + " " + tmp / "moe" + " --tolerance 1e-6");
  EXPECT_TRUE(OneLineError(r)) << r.err;
  EXPECT_NE(r.out.find("B records: not exact"), std::string::npos);
}

TEST(CliSurgery, VerifyFailsWhenEitherModelComputesNan) {
  TempDir tmp;
  const ModelConfig c = testing::TinyConfig({true, false, false}, 2);
  WriteModel(tmp / "good", c, 36);
  // The same weights with one NaN in the LM head: every position's logits carry a NaN.
  ModelConfig c32 = c;
  c32.dtype = DType::kF32;
  TensorMap m = testing::RandomModel(c32, 36, DType::kF32);
  m.at("lm_head").mutable_data<float>()[3] = std::nanf("");
  WriteOptions o;
  o.dtype = DType::kF32;
  o.progress = false;
  ASSERT_TRUE(WriteHfModel(tmp / "nan", c32, m, o).ok());
  for (const std::string& flags :
       {std::string(), std::string(" --tolerance 1e-3"), std::string(" --tolerance 1e30")}) {
    for (const auto& [x, y] :
         {std::pair{"good", "nan"}, std::pair{"nan", "good"}, std::pair{"nan", "nan"}}) {
      const auto r = RunEscale("verify " + tmp / x + " " + tmp / y + flags);
      EXPECT_TRUE(OneLineError(r)) << x << " " << y << flags << "\n" << r.out << r.err;
      EXPECT_NE(r.err.find("NaN or infinite"), std::string::npos) << r.err;
    }
  }
  const auto r = RunEscale("verify " + tmp / "good" + " " + tmp / "nan" + " --json");
  EXPECT_NE(r.exit_code, 0);
  const json j = json::parse(r.out, nullptr, false);
  EXPECT_EQ(j["finite"], false) << r.out;
  EXPECT_EQ(j["nonfinite_logits_a"], 0);
  EXPECT_GT(j["nonfinite_logits_b"].get<int64_t>(), 0);
  EXPECT_TRUE(j["max_abs_logit_diff"].is_null()) << r.out;  // NaN, not the 0 that std::max kept
  // The good model against itself still passes, with the tolerance too.
  EXPECT_EQ(RunEscale("verify " + tmp / "good" + " " + tmp / "good" + " --tolerance 0").exit_code,
            0);
}

TEST(CliSurgery, BadPlansAndInputsFailInOneLineWithoutOutput) {
  TempDir tmp;
  WriteModel(tmp / "src", testing::TinyConfig({true, false, false}, 2), 35);
  const std::vector<std::string> bad = {
      "scale-up " + tmp / "src" + " " + tmp / "out" + " --hidden 8",
      "scale-up " + tmp / "src" + " " + tmp / "out" + " --hidden 32 --heads 16",
      "scale-up " + tmp / "src" + " " + tmp / "out" + " --hidden 32 --kv-heads 3",
      "scale-up " + tmp / "src" + " " + tmp / "out" + " --method aki-pro --layers 4 --depth stack",
      "scale-up " + tmp / "src" + " " + tmp / "out" + " --hidden 32 --dtype int8",
      "scale-up " + tmp / "missing" + " " + tmp / "out" + " --hidden 32",
      "scale-out " + tmp / "src" + " " + tmp / "out" + " --experts 1 --top-k 1",
      "scale-out " + tmp / "src" + " " + tmp / "out" + " --experts 4 --top-k 1",
      "scale-out " + tmp / "src" + " " + tmp / "out" + " --experts 4 --top-k 1 --granularity 1",
      "scale-out " + tmp / "src" + " " + tmp / "out" + " --experts 4 --top-k 6",
      "scale-out " + tmp / "src" + " " + tmp / "out" +
          " --experts 4 --top-k 2 --format mixtral --shared-experts",
      "scale-out " + tmp / "src" + " " + tmp / "out" + " --experts 4 --top-k 2 --granularity 7",
      "scale-out " + tmp / "src" + " " + tmp / "src" + " --experts 4 --top-k 2",  // exists
      "verify " + tmp / "src" + " " + tmp / "missing",
      "verify " + tmp / "src" + " " + tmp / "src" + " --tokens 1,x,3",
      "verify " + tmp / "src" + " " + tmp / "src" + " --tokens 1,99999",
  };
  for (const std::string& cmd : bad) {
    const auto r = RunEscale(cmd);
    EXPECT_TRUE(OneLineError(r)) << cmd << "\nexit " << r.exit_code << "\n" << r.err;
    EXPECT_FALSE(fs::exists(tmp / "out")) << cmd;
  }
  // An MoE scaled out again must grow its expert count, and a checkpoint that does not match its
  // config is refused.
  ASSERT_EQ(RunEscale("scale-out " + tmp / "src" + " " + tmp / "moe" + " --experts 2 --top-k 2").exit_code, 0);
  auto r = RunEscale("scale-out " + tmp / "moe" + " " + tmp / "out" + " --experts 2 --top-k 2");
  EXPECT_TRUE(OneLineError(r)) << r.err;
  EXPECT_NE(r.err.find("already"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp / "out"));
  fs::copy(tmp / "src", tmp / "broken");
  json cfg = ReadJson(tmp / "broken/config.json");
  cfg["intermediate_size"] = 30;
  escale::testing::WriteFile(tmp / "broken/config.json", cfg.dump());
  r = RunEscale("scale-up " + tmp / "broken" + " " + tmp / "out" + " --hidden 32");
  EXPECT_TRUE(OneLineError(r)) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "out"));
}

// The paper's shapes (docs/method.md §2, AquilaMoE Table 3), planned from config.json alone.
ModelConfig AquilaConfig(int64_t layers, int64_t hidden, int64_t ffn, int64_t heads, int64_t kv) {
  ModelConfig c;
  c.arch = Architecture::kQwen2;  // Aquila has QKV bias
  c.qkv_bias = true;
  c.vocab_size = 100008;
  c.hidden_size = hidden;
  c.intermediate_size = ffn;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = 4096;
  c.rope_theta = 1e6;
  c.dtype = DType::kBF16;
  return c;
}

TEST(CliSurgery, PaperShapesDryRunFromConfigOnly) {
  TempDir tmp;
  WriteConfigOnly(tmp / "1.3b", AquilaConfig(24, 2048, 5504, 16, 16));
  auto r = RunEscale("scale-up " + tmp / "1.3b" + " " + tmp / "7b" +
                     " --method aki-pro --hidden 4096 --intermediate 14336 --layers 32 --kv-heads 32 --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("M(32, 4096): heads 32, kv heads 32, head_dim 128, FFN 14336"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layers (target <- source"), std::string::npos);
  EXPECT_NE(r.out.find("not exact: AKI"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp / "7b"));
  // FPI width only, M(24, 4096): exact, as in the paper's Table 1.
  r = RunEscale("scale-up " + tmp / "1.3b" + " " + tmp / "w" + " --hidden 4096 --intermediate 11008 --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("function preservation: exact"), std::string::npos) << r.out;
  // Table 3 lists the small model with 32 heads of 64: growing it to 32 heads of 128 changes head_dim.
  WriteConfigOnly(tmp / "1.8b", AquilaConfig(24, 2048, 5504, 32, 32));
  r = RunEscale("scale-up " + tmp / "1.8b" + " " + tmp / "x" + " --hidden 4096 --heads 32 --dry-run");
  EXPECT_TRUE(OneLineError(r));
  EXPECT_NE(r.err.find("head_dim"), std::string::npos);
  // 7B -> 16B with 8 KV groups: 7B with 8 groups keeps them; Table 3's 7B has 32 (MHA) -> pooled.
  WriteConfigOnly(tmp / "7b8", AquilaConfig(32, 4096, 14336, 32, 8));
  r = RunEscale("scale-up " + tmp / "7b8" + " " + tmp / "16b" +
                " --method aki-pro --hidden 5120 --intermediate 20480 --layers 40 --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("M(40, 5120): heads 40, kv heads 8, head_dim 128, FFN 20480"), std::string::npos) << r.out;
  WriteConfigOnly(tmp / "7b32", AquilaConfig(32, 4096, 14336, 32, 32));
  r = RunEscale("scale-up " + tmp / "7b32" + " " + tmp / "16b" +
                " --method aki-pro --hidden 5120 --intermediate 20480 --layers 40 --kv-heads 8 --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("mean-pooled"), std::string::npos) << r.out;
  // 16B -> 8x16B, top-2.
  WriteConfigOnly(tmp / "16b", AquilaConfig(40, 5120, 20480, 40, 8));
  r = RunEscale("scale-out " + tmp / "16b" + " " + tmp / "moe" + " --experts 8 --top-k 2 --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Qwen2MoeForCausalLM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("function preservation: exact"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(tmp / "moe"));
}

}  // namespace
}  // namespace escale::surgery

namespace escale::surgery {
namespace {

TEST(CliSurgery, TiedModelsThroughFilesAndBf16) {
  TempDir tmp;
  WriteModel(tmp / "tied", testing::TinyConfig({true, false, true}, 2), 36);
  // Scale-out keeps the tie (no lm_head tensor); width growth unties (lm_head appears).
  auto r = RunEscale("scale-out " + tmp / "tied" + " " + tmp / "moe" + " --experts 2 --top-k 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadJson(tmp / "moe/config.json")["tie_word_embeddings"], true);
  EXPECT_EQ(TensorNames(tmp / "moe").count("lm_head.weight"), 0u);
  EXPECT_LE(Verify(tmp / "tied", tmp / "moe")["max_abs_logit_diff"].get<double>(), 1e-4);
  r = RunEscale("scale-up " + tmp / "tied" + " " + tmp / "wide" + " --hidden 32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadJson(tmp / "wide/config.json")["tie_word_embeddings"], false);
  EXPECT_EQ(TensorNames(tmp / "wide").count("lm_head.weight"), 1u);
  EXPECT_LE(Verify(tmp / "tied", tmp / "wide")["max_abs_logit_diff"].get<double>(), 1e-4);
  // bf16: copies and halvings of bf16 values are exact, so a bf16 source grown into bf16 is exact
  // too; the same plan from the fp32 source rounds every weight once.
  r = RunEscale("scale-up " + tmp / "tied" + " " + tmp / "bf16" + " --intermediate 48 --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadJson(tmp / "bf16/config.json")["torch_dtype"], "bfloat16");
  r = RunEscale("scale-up " + tmp / "bf16" + " " + tmp / "bf16w" + " --hidden 32 --intermediate 96");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(Verify(tmp / "bf16", tmp / "bf16w")["max_abs_logit_diff"].get<double>(), 1e-4);
  const double rounding = Verify(tmp / "tied", tmp / "bf16")["max_abs_logit_diff"].get<double>();
  EXPECT_GT(rounding, 1e-5);
  EXPECT_LT(rounding, 0.1);
}

}  // namespace
}  // namespace escale::surgery
