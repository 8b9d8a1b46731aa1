// GGUF export checked by the real llama.cpp (node-llama-cpp 3.22.1's prebuilt CPU binary, fetched
// by scripts/gguf/fetch_llama_cpp.sh): tiny random models of every exported architecture are
// written as GGUF, llama.cpp's logits are compared with escale's fp64 reference forward, and
// llama.cpp's tokenization of the exported vocabulary is compared with escale's encoder.
// Skips when node or the package is absent.
//
// Tolerances (relative to the largest |logit|; the script runs llama.cpp with an f32 KV cache and
// no flash attention). f32 weights leave only fp32 arithmetic against fp64: measured <= 1e-6,
// bound 1e-5; a wrong name, permutation or metadata key moves logits by O(1). f16 weights carry
// 2^-11 relative rounding each: measured ~2e-3, bound 1e-2. q8_0 rounds each weight to 1/254 of
// its block's max |w| and llama.cpp also quantizes the activations to q8_0 for those products:
// measured 3-5%, bound 0.1. Greedy tokens must agree for f32; f16 and q8_0 may flip only where
// the reference's top two logits are within twice the bound (measured 13/14 at most).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "io/hf_model.h"
#include "io/safetensors.h"
#include "model/reference_forward.h"
#include "support/llama_cpp.h"
#include "support/test_support.h"
#include "tokenizer/tokenizer.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::Compare;
using testing::kSequences;
using testing::kTexts;
using testing::LlamaCpp;
using testing::LlamaCppAvailable;
using testing::Measured;
using testing::RandomiseTensors;
using testing::RunEscale;
using testing::RunShell;
using testing::TempDir;
using testing::TrainTokenizer;

json TinyConfig(const std::string& cls, bool tied, bool bias) {
  json c = {{"architectures", {cls}},
            {"model_type", cls == "Qwen2ForCausalLM"   ? "qwen2"
                           : cls == "Qwen3ForCausalLM" ? "qwen3"
                                                       : "llama"},
            {"vocab_size", 320},
            {"hidden_size", 64},
            {"intermediate_size", 96},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"head_dim", 16},
            {"max_position_embeddings", 128},
            {"rope_theta", 10000.0},
            {"rms_norm_eps", 1e-5},
            {"tie_word_embeddings", tied},
            {"torch_dtype", "float32"}};
  c["attention_bias"] = bias;
  return c;
}

void Init(const TempDir& t, const json& cfg, const std::string& tok_dir, const std::string& dir) {
  testing::WriteFile(t / "cfg.json", cfg.dump());
  auto r = RunEscale("init --config " + t / "cfg.json" + " --std 0.125 --seed 7 --tokenizer-from " +
                     tok_dir + " " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

class GgufLlamaCpp : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!LlamaCppAvailable(why)) GTEST_SKIP() << "llama.cpp check skipped: " << why;
  }
};

void CheckModel(const TempDir& t, const std::string& dir, const std::string& label,
                const std::vector<std::vector<int32_t>>& sequences = kSequences) {
  struct Case {
    const char* dtype;
    double tol;
  };
  for (const Case c : {Case{"f32", 1e-5}, Case{"f16", 1e-2}, Case{"q8_0", 0.1}}) {
    const std::string gguf = t / (label + "-" + c.dtype + ".gguf");
    auto r = RunEscale("convert " + dir + " " + gguf + " --dtype " + c.dtype);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Measured m = Compare(t, dir, gguf, c.tol, sequences);
    std::printf(
        "%s %s: max |llama.cpp - fp64 ref| / max|logit| = %.3g, greedy %lld/%lld (%lld "
        "beyond a near-tie)\n",
        label.c_str(), c.dtype, m.max_rel, static_cast<long long>(m.greedy_agree),
        static_cast<long long>(m.greedy_total), static_cast<long long>(m.clear_disagree));
    EXPECT_LT(m.max_rel, c.tol) << label << " " << c.dtype;
    // f32 agrees everywhere; rounded weights may flip only near-ties.
    if (std::string(c.dtype) == "f32") {
      EXPECT_EQ(m.greedy_agree, m.greedy_total) << label;
    }
    EXPECT_EQ(m.clear_disagree, 0) << label << " " << c.dtype;
  }
}

TEST_F(GgufLlamaCpp, LlamaDenseGqaUntiedMatchesReference) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  Init(t, TinyConfig("LlamaForCausalLM", false, false), t / "tok", t / "m");
  CheckModel(t, t / "m", "llama-untied");
}

TEST_F(GgufLlamaCpp, LlamaDenseTiedMatchesReference) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  Init(t, TinyConfig("LlamaForCausalLM", true, false), t / "tok", t / "m");
  CheckModel(t, t / "m", "llama-tied");
}

TEST_F(GgufLlamaCpp, Qwen2MatchesReference) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  Init(t, TinyConfig("Qwen2ForCausalLM", false, true), t / "tok", t / "m");
  CheckModel(t, t / "m", "qwen2");
}

TEST_F(GgufLlamaCpp, MixtralFromScaleOutMatchesReference) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  Init(t, TinyConfig("LlamaForCausalLM", false, false), t / "tok", t / "dense");
  // Noise makes the experts differ, so routing and expert order change the logits.
  auto r = RunEscale("scale-out " + t / "dense" + " " + t / "moe" +
                     " --experts 4 --top-k 2 --expert-noise 0.2 --router-init-std 0.5 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  CheckModel(t, t / "moe", "mixtral");
}

void RandomiseSharedGates(const std::string& dir) {
  RandomiseTensors(dir, "shared_expert_gate", 0.0, 0.3);
}

// Llama 3.1-style rope_scaling (exported as rope_freqs) on 48 positions, three times the
// original context of 16: every frequency is scaled or smoothed, and positions past the original
// context are where plain RoPE would differ most.
TEST_F(GgufLlamaCpp, Llama3RopeScalingMatchesReferencePastTheOriginalContext) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  json cfg = TinyConfig("LlamaForCausalLM", false, false);
  cfg["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 16}};
  Init(t, cfg, t / "tok", t / "m");
  std::vector<int32_t> long_seq;
  for (int i = 0; i < 48; ++i) long_seq.push_back((i * 37 + 11) % 320);
  CheckModel(t, t / "m", "llama3-rope", {long_seq});
  // Teeth: the same weights with plain RoPE give other logits, so the check above sees the scaling.
  auto scaled = ReadHfModel(t / "m");
  ASSERT_TRUE(scaled.ok());
  ModelConfig plain = scaled->config;
  plain.rope_scaling = nullptr;
  auto a = ReferenceForward(scaled->config, scaled->tensors, long_seq);
  auto b = ReferenceForward(plain, scaled->tensors, long_seq);
  ASSERT_TRUE(a.ok() && b.ok());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a->logits.size(); ++i) {
    diff = std::max(diff, std::fabs(a->logits[i] - b->logits[i]));
    scale = std::max(scale, std::fabs(a->logits[i]));
  }
  EXPECT_GT(diff / scale, 1e-3);
}

TEST_F(GgufLlamaCpp, Qwen3MatchesReference) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  Init(t, TinyConfig("Qwen3ForCausalLM", true, false), t / "tok", t / "m");
  RandomiseTensors(t / "m", "q_norm", 1.0, 0.3);
  RandomiseTensors(t / "m", "k_norm", 1.0, 0.3);
  CheckModel(t, t / "m", "qwen3");
}

TEST_F(GgufLlamaCpp, Qwen3MoeFromScaleOutMatchesReference) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  Init(t, TinyConfig("Qwen3ForCausalLM", false, false), t / "tok", t / "dense");
  RandomiseTensors(t / "dense", "q_norm", 1.0, 0.3);
  RandomiseTensors(t / "dense", "k_norm", 1.0, 0.3);
  auto r = RunEscale("scale-out " + t / "dense" + " " + t / "moe" +
                     " --experts 4 --top-k 2 --expert-noise 0.2 --router-init-std 0.5 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Qwen3MoeForCausalLM"), std::string::npos) << r.out;
  CheckModel(t, t / "moe", "qwen3moe");
  // llama.cpp's qwen3moe always renormalises the top-k: st routing is refused with the reason.
  r = RunEscale("scale-out " + t / "dense" + " " + t / "st" + " --experts 4 --top-k 2 --router st");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunEscale("convert " + t / "st" + " " + t / "st.gguf");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("renormalises"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(t / "st.gguf"));
}

TEST_F(GgufLlamaCpp, Qwen2MoeWithSharedExpertMatchesReference) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  Init(t, TinyConfig("Qwen2ForCausalLM", false, true), t / "tok", t / "dense");
  auto r = RunEscale("scale-out " + t / "dense" + " " + t / "moe" +
                     " --experts 4 --top-k 2 --format qwen2-moe --router st --shared-experts"
                     " --expert-noise 0.2 --router-init-std 0.5 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Fresh from scale-out the shared gate is 0: refused with the reason, not a NaN model.
  r = RunEscale("convert " + t / "moe" + " " + t / "fresh.gguf");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("silu(x)/x"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(t / "fresh.gguf"));
  RandomiseSharedGates(t / "moe");
  CheckModel(t, t / "moe", "qwen2moe");
}

// Qwen2's exact upcycle (qwen2-moe, renormalised top-k, no shared expert) has no qwen2moe GGUF
// (llama.cpp's graph needs a shared expert and never renormalises) but runs in the llama graph,
// which adds the q/k/v biases: the function is kept, no --shared-experts or training needed.
TEST_F(GgufLlamaCpp, Qwen2MoeExactUpcycleExportsAsLlamaWithBiases) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  Init(t, TinyConfig("Qwen2ForCausalLM", false, true), t / "tok", t / "dense");
  RandomiseTensors(t / "dense", "_proj.bias", 0.0, 0.3);  // init leaves biases 0
  auto r = RunEscale("scale-out " + t / "dense" + " " + t / "moe" +
                     " --experts 4 --top-k 2 --expert-noise 0.2 --router-init-std 0.5 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Qwen2MoeForCausalLM"), std::string::npos) << r.out;
  r = RunEscale("convert " + t / "moe" + " " + t / "probe.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("arch llama"), std::string::npos) << r.out;
  CheckModel(t, t / "moe", "qwen2moe-as-llama");
}

void CheckTokenization(const TempDir& t, const std::string& model_dir, const std::string& gguf) {
  auto tok = tok::Tokenizer::FromFile(model_dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  json ans = LlamaCpp(t, gguf, {{"texts", kTexts}});
  ASSERT_TRUE(ans.contains("tokens"));
  for (size_t i = 0; i < kTexts.size(); ++i) {
    const std::vector<int32_t> ours = (*tok)->Encode(kTexts[i]);
    EXPECT_EQ(ans["tokens"][i].get<std::vector<int32_t>>(), ours)
        << "text: " << json(kTexts[i]).dump();
  }
}

TEST_F(GgufLlamaCpp, TrainedTokenizerTokenizesTheSame) {
  TempDir t;
  TrainTokenizer(t, t / "tok");
  Init(t, TinyConfig("LlamaForCausalLM", true, false), t / "tok", t / "m");
  ASSERT_EQ(RunEscale("convert " + t / "m" + " " + t / "m.gguf").exit_code, 0);
  CheckTokenization(t, t / "m", t / "m.gguf");
}

TEST_F(GgufLlamaCpp, Llama3TokenizerTokenizesTheSame) {
  const std::string llama3 = testing::SourceDir() + "/build/tokenizers/llama3";
  if (!fs::exists(llama3 + "/tokenizer.json"))
    GTEST_SKIP() << "no Llama 3 tokenizer: run scripts/tokenizer/fetch_tokenizers.sh";
  TempDir t;
  json cfg = TinyConfig("LlamaForCausalLM", true, false);
  cfg["vocab_size"] = 128256;
  cfg["hidden_size"] = 32;
  cfg["head_dim"] = 8;
  Init(t, cfg, llama3, t / "m");
  ASSERT_EQ(RunEscale("convert " + t / "m" + " " + t / "m.gguf --dtype f16").exit_code, 0);
  CheckTokenization(t, t / "m", t / "m.gguf");
}

}  // namespace
}  // namespace escale
