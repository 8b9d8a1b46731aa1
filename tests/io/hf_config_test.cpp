// config.json <-> ModelConfig: defaults, the three RoPE spellings, refusals, escale's own keys,
// and round trips for every architecture.
#include <gtest/gtest.h>

#include "io/hf_model.h"
#include "io/model_fixtures.h"

namespace escale {
namespace {

using json = nlohmann::json;

json LlamaJson() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": 32, "hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 2,
    "num_attention_heads": 4, "torch_dtype": "bfloat16", "eos_token_id": [128001, 128009],
    "transformers_version": "4.44.0", "_name_or_path": "x/y"})");
}

Status ParseError(const json& j) {
  auto r = ParseHfConfig(j);
  return r.ok() ? Status::Ok() : r.status();
}

void ExpectError(const json& j, ErrorCode code, const std::string& words) {
  const Status st = ParseError(j);
  ASSERT_FALSE(st.ok()) << j.dump();
  EXPECT_EQ(st.code(), code) << st.message();
  EXPECT_NE(st.message().find(words), std::string::npos) << st.message();
}

TEST(HfConfig, LlamaDefaultsAndExtras) {
  auto c = ParseHfConfig(LlamaJson());
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->num_kv_heads, 4);  // missing -> heads
  EXPECT_EQ(c->head_dim, 4);      // missing -> H / heads
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_EQ(c->dtype, DType::kBF16);
  EXPECT_TRUE(c->rope_scaling.is_null());
  EXPECT_EQ(c->extra["eos_token_id"], json({128001, 128009}));
  EXPECT_EQ(c->extra["_name_or_path"], "x/y");
  EXPECT_FALSE(c->extra.contains("vocab_size"));
  // Written back unchanged.
  auto out = HfConfigToJson(*c);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)["eos_token_id"], json({128001, 128009}));
  EXPECT_EQ((*out)["transformers_version"], "4.44.0");
  EXPECT_EQ((*out)["torch_dtype"], "bfloat16");
}

TEST(HfConfig, ExplicitHeadDimAndV5DtypeKey) {
  json j = LlamaJson();
  j.erase("torch_dtype");
  j["dtype"] = "float16";
  j["head_dim"] = 6;
  j["num_key_value_heads"] = 2;
  auto c = ParseHfConfig(j);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->head_dim, 6);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->dtype, DType::kF16);
  j["head_dim"] = nullptr;  // null means H / heads
  EXPECT_EQ(ParseHfConfig(j)->head_dim, 4);
}

TEST(HfConfig, RopeSpellings) {
  json j = LlamaJson();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  auto c = ParseHfConfig(j);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling["factor"], 8.0);

  json v5 = LlamaJson();
  v5["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  c = ParseHfConfig(v5);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_TRUE(c->rope_scaling.is_null());

  json v5lin = LlamaJson();
  v5lin["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 20000.0}, {"factor", 4.0}};
  c = ParseHfConfig(v5lin);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rope_theta, 20000.0);
  EXPECT_EQ(c->rope_scaling, json({{"rope_type", "linear"}, {"factor", 4.0}}));

  json old_alias = LlamaJson();
  old_alias["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_TRUE(ParseHfConfig(old_alias).ok());

  json yarn = LlamaJson();
  yarn["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  ExpectError(yarn, ErrorCode::kUnsupported, "RoPE scaling type 'yarn'");
  json l3 = LlamaJson();
  l3["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  ExpectError(l3, ErrorCode::kFormat, "low_freq_factor");
}

TEST(HfConfig, Refusals) {
  json j = LlamaJson();
  j["attention_bias"] = true;
  ExpectError(j, ErrorCode::kUnsupported, "o_proj");
  j = LlamaJson();
  j["mlp_bias"] = true;
  ExpectError(j, ErrorCode::kUnsupported, "mlp_bias");
  j = LlamaJson();
  j["quantization_config"] = {{"quant_method", "gptq"}};
  ExpectError(j, ErrorCode::kUnsupported, "quantization_config");
  j = LlamaJson();
  j["hidden_act"] = "gelu";
  ExpectError(j, ErrorCode::kUnsupported, "hidden_act");
  j = LlamaJson();
  j["architectures"] = {"GPT2LMHeadModel"};
  ExpectError(j, ErrorCode::kUnsupported, "architecture 'GPT2LMHeadModel' is not supported");
  j = LlamaJson();
  j.erase("hidden_size");
  ExpectError(j, ErrorCode::kFormat, "required field 'hidden_size' is missing");
  j = LlamaJson();
  j["num_hidden_layers"] = "two";
  ExpectError(j, ErrorCode::kFormat, "'num_hidden_layers' must be an integer");
  j = LlamaJson();
  j["num_key_value_heads"] = 3;
  ExpectError(j, ErrorCode::kFormat, "multiple of num_key_value_heads");
  j = LlamaJson();
  j["hidden_size"] = 18;  // not divisible by 4 heads, no head_dim
  ExpectError(j, ErrorCode::kFormat, "head_dim is missing");
  j = LlamaJson();
  j["torch_dtype"] = "int8";
  ExpectError(j, ErrorCode::kUnsupported, "torch_dtype");
}

// Sizes and RoPE values that would otherwise be found only by running out of memory, by an
// overflow, or by silently using plain RoPE.
TEST(HfConfig, ImpossibleSizesAndRopeValuesAreRefused) {
  struct Case {
    const char* key;
    json value;
    const char* words;
  };
  const std::vector<Case> top = {
      {"num_hidden_layers", 1000000000000LL, "num_hidden_layers 1000000000000 is more than 65536"},
      {"vocab_size", 4294967296LL, "vocab_size 4294967296 is more than"},
      {"hidden_size", 1LL << 24, "hidden_size 16777216 is more than"},
      {"intermediate_size", 1LL << 30, "intermediate_size 1073741824 is more than"},
      {"max_position_embeddings", 0, "max_position_embeddings must be positive"},
      {"max_position_embeddings", -5, "max_position_embeddings must be positive"},
  };
  for (const Case& c : top) {
    json j = LlamaJson();
    j[c.key] = c.value;
    ExpectError(j, ErrorCode::kFormat, c.words);
  }
  // Each size within its bound, the product not: 65536 layers of a 1M-wide FFN.
  json j = LlamaJson();
  j["num_hidden_layers"] = 65536;
  j["hidden_size"] = 1 << 20;
  j["num_attention_heads"] = 4096;
  j["intermediate_size"] = 1 << 22;
  ExpectError(j, ErrorCode::kFormat, "more than 10^15");
  const std::vector<std::pair<json, const char*>> rope = {
      {{{"rope_type", 5}}, "must be a string"},
      {{{"type", nullptr}}, "must be a string"},
      {{{"rope_type", "linear"}, {"factor", 0}}, "'factor' must be a positive number"},
      {{{"rope_type", "linear"}, {"factor", -2.0}}, "'factor' must be a positive number"},
      {{{"rope_type", "llama3"},
        {"factor", 8.0},
        {"low_freq_factor", 4.0},
        {"high_freq_factor", 4.0},
        {"original_max_position_embeddings", 8192}},
       "high_freq_factor > low_freq_factor"},
      {{{"rope_type", "llama3"},
        {"factor", 8.0},
        {"low_freq_factor", 1.0},
        {"high_freq_factor", 4.0},
        {"original_max_position_embeddings", 0}},
       "'original_max_position_embeddings' must be a positive number"},
  };
  for (const auto& [scaling, words] : rope) {
    json k = LlamaJson();
    k["rope_scaling"] = scaling;
    ExpectError(k, ErrorCode::kFormat, words);
  }
  // The real Llama 3.1 values still parse.
  json ok = LlamaJson();
  ok["rope_scaling"] = {{"rope_type", "llama3"},
                        {"factor", 8.0},
                        {"low_freq_factor", 1.0},
                        {"high_freq_factor", 4.0},
                        {"original_max_position_embeddings", 8192}};
  EXPECT_TRUE(ParseError(ok).ok()) << ParseError(ok).message();
}

TEST(HfConfig, Qwen2AlwaysHasQkvBias) {
  json j = LlamaJson();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["use_sliding_window"] = false;
  auto c = ParseHfConfig(j);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_EQ(c->max_position_embeddings, 32768);
  EXPECT_EQ(c->extra["use_sliding_window"], false);
}

TEST(HfConfig, MixtralFieldsAndEscaleKeys) {
  json j = LlamaJson();
  j["architectures"] = {"MixtralForCausalLM"};
  j["num_local_experts"] = 8;
  j["num_experts_per_tok"] = 2;
  j["router_aux_loss_coef"] = 0.02;
  j["escale"] = {{"router", "st"}, {"capacity_factor", 4.0}, {"drop_policy", "position"}};
  auto c = ParseHfConfig(j);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->moe.num_experts, 8);
  EXPECT_EQ(c->moe.top_k, 2);
  EXPECT_EQ(c->moe.expert_intermediate, 40);
  EXPECT_EQ(c->moe.aux_loss_coef, 0.02);
  EXPECT_EQ(c->moe.router, RouterType::kSt);
  EXPECT_EQ(c->moe.capacity_factor, 4.0);
  EXPECT_EQ(c->moe.drop_policy, DropPolicy::kPosition);
  EXPECT_EQ(c->rope_theta, 1e6);  // Mixtral class default
  EXPECT_FALSE(c->extra.contains("escale"));
  j.erase("escale");
  EXPECT_EQ(ParseHfConfig(j)->moe.router, RouterType::kMixtral);
  j["escale"] = {{"routr", "st"}};
  ExpectError(j, ErrorCode::kFormat, "escale.routr");
  j.erase("escale");
  j.erase("num_local_experts");
  ExpectError(j, ErrorCode::kFormat, "num_local_experts");
}

TEST(HfConfig, Qwen2MoeFields) {
  json j = LlamaJson();
  j["architectures"] = {"Qwen2MoeForCausalLM"};
  j["num_hidden_layers"] = 4;
  j["num_experts"] = 6;
  j["num_experts_per_tok"] = 3;
  j["moe_intermediate_size"] = 8;
  j["shared_expert_intermediate_size"] = 24;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = {3};
  j["norm_topk_prob"] = false;
  auto c = ParseHfConfig(j);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_EQ(c->moe.num_experts, 6);
  EXPECT_EQ(c->moe.top_k, 3);
  EXPECT_EQ(c->moe.expert_intermediate, 8);
  EXPECT_EQ(c->moe.shared_intermediate, 24);
  EXPECT_EQ(c->moe.every, 2);
  EXPECT_EQ(c->moe.dense_layers, std::vector<int64_t>{3});
  EXPECT_EQ(c->moe.router, RouterType::kSt);
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  EXPECT_FALSE(c->IsMoeLayer(3));
  j["norm_topk_prob"] = true;
  EXPECT_EQ(ParseHfConfig(j)->moe.router, RouterType::kMixtral);
  j["qkv_bias"] = false;
  EXPECT_FALSE(ParseHfConfig(j)->qkv_bias);
  j["escale"] = {{"router", "st"}};  // contradicts norm_topk_prob true
  ExpectError(j, ErrorCode::kFormat, "norm_topk_prob");
  j.erase("escale");
  j.erase("shared_expert_intermediate_size");
  ExpectError(j, ErrorCode::kFormat, "shared_expert_intermediate_size");
  j["shared_expert_intermediate_size"] = 24;
  j["mlp_only_layers"] = {7};
  ExpectError(j, ErrorCode::kFormat, "mlp_only_layers entry 7");
}

TEST(HfConfig, RoundTripEveryArchitecture) {
  for (const ModelConfig& c : testing::AllTiny()) {
    auto j = HfConfigToJson(c);
    ASSERT_TRUE(j.ok()) << j.status().message();
    auto back = ParseHfConfig(*j);
    ASSERT_TRUE(back.ok()) << back.status().message();
    const std::string cls(ArchitectureClassName(c.arch));
    EXPECT_EQ(back->arch, c.arch) << cls;
    EXPECT_EQ(back->vocab_size, c.vocab_size) << cls;
    EXPECT_EQ(back->hidden_size, c.hidden_size) << cls;
    EXPECT_EQ(back->num_kv_heads, c.num_kv_heads) << cls;
    EXPECT_EQ(back->head_dim, c.head_dim) << cls;
    EXPECT_EQ(back->rope_theta, c.rope_theta) << cls;
    EXPECT_EQ(back->rope_scaling, c.rope_scaling) << cls;
    EXPECT_EQ(back->rms_norm_eps, c.rms_norm_eps) << cls;
    EXPECT_EQ(back->qkv_bias, c.qkv_bias) << cls;
    EXPECT_EQ(back->qk_norm, c.qk_norm) << cls;
    EXPECT_EQ(back->tie_word_embeddings, c.tie_word_embeddings) << cls;
    EXPECT_EQ(back->moe.num_experts, c.moe.num_experts) << cls;
    EXPECT_EQ(back->moe.top_k, c.moe.top_k) << cls;
    EXPECT_EQ(back->moe.expert_intermediate, c.moe.expert_intermediate) << cls;
    EXPECT_EQ(back->moe.shared_intermediate, c.moe.shared_intermediate) << cls;
    EXPECT_EQ(back->moe.every, c.moe.every) << cls;
    EXPECT_EQ(back->moe.dense_layers, c.moe.dense_layers) << cls;
    EXPECT_EQ(back->moe.router, c.moe.router) << cls;
    EXPECT_EQ(back->moe.capacity_factor, c.moe.capacity_factor) << cls;
    EXPECT_EQ(back->moe.drop_policy, c.moe.drop_policy) << cls;
    EXPECT_EQ(back->moe.aux_loss_coef, c.moe.aux_loss_coef) << cls;
    EXPECT_EQ(back->extra, c.extra) << cls;
    EXPECT_EQ(*HfConfigToJson(*back), *j) << cls;  // a fixed point
  }
}

TEST(HfConfig, RefusesConfigsTheArchitectureCannotExpress) {
  ModelConfig c = testing::TinyLlama();
  c.qkv_bias = true;
  EXPECT_EQ(HfConfigToJson(c).status().code(), ErrorCode::kUnsupported);
  c = testing::TinyMixtral();
  c.moe.shared_intermediate = 4;
  EXPECT_NE(HfConfigToJson(c).status().message().find("Qwen2MoeForCausalLM"), std::string::npos);
  c = testing::TinyQwen2();
  c.qkv_bias = false;
  EXPECT_FALSE(HfConfigToJson(c).ok());
  c = testing::TinyLlama();
  c.moe.num_experts = 2;
  c.moe.top_k = 1;
  c.moe.expert_intermediate = 4;
  EXPECT_FALSE(HfConfigToJson(c).ok());
}

// Writing rope_scaling under a class some loaders build plain RoPE for is said; elsewhere it is
// not, and a plain-RoPE model is never warned about.
TEST(HfConfig, RopeScalingWarningNamesTheClassAndTheType) {
  const nlohmann::json llama3 = {{"rope_type", "llama3"},
                                 {"factor", 8.0},
                                 {"low_freq_factor", 1.0},
                                 {"high_freq_factor", 4.0},
                                 {"original_max_position_embeddings", 16}};
  ModelConfig c = testing::TinyMixtral();
  EXPECT_EQ(RopeScalingWarning(c), "");
  c.rope_scaling = llama3;
  const std::string w = RopeScalingWarning(c);
  EXPECT_NE(w.find("MixtralForCausalLM"), std::string::npos) << w;
  EXPECT_NE(w.find("'llama3'"), std::string::npos) << w;
  EXPECT_NE(w.find("plain RoPE"), std::string::npos) << w;
  for (ModelConfig other : testing::AllTiny()) {
    if (!ArchInfo(other.arch).rope_scaling_ignored_by.empty()) continue;
    other.rope_scaling = llama3;
    EXPECT_EQ(RopeScalingWarning(other), "") << ArchitectureClassName(other.arch);
  }
}

TEST(HfConfig, ReadFromDirectory) {
  testing::TempDir tmp;
  testing::WriteFile(tmp / "config.json", LlamaJson().dump());
  auto c = ReadHfConfig(tmp.path());
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->vocab_size, 32);
  testing::WriteFile(tmp / "config.json", "{not json");
  EXPECT_NE(ReadHfConfig(tmp.path()).status().message().find("not valid JSON: line 1, column"),
            std::string::npos)
      << ReadHfConfig(tmp.path()).status().message();
  testing::WriteFile(tmp / "config.json", LlamaJson().dump() + std::string("\0{\"x\": 1}", 9));
  EXPECT_NE(ReadHfConfig(tmp.path()).status().message().find("not valid JSON"), std::string::npos)
      << "a NUL byte and garbage after the document must not be ignored";
  EXPECT_EQ(ReadHfConfig(tmp / "nope").status().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace escale
