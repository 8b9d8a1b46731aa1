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
#include "io/tokenizer.h"
#include "model/reference_forward.h"
#include "support/test_support.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::RunEscale;
using testing::RunShell;
using testing::TempDir;

std::string NpmDir() {
  return testing::SourceDir() + "/build/gguf-npm";
}

bool LlamaCppAvailable(std::string& why) {
  if (RunShell("command -v node >/dev/null").exit_code != 0) {
    why = "node not found";
    return false;
  }
  if (!fs::exists(NpmDir() + "/node_modules/node-llama-cpp")) {
    why = "node-llama-cpp missing: run scripts/gguf/fetch_llama_cpp.sh";
    return false;
  }
  return true;
}

// Runs llama.cpp on `gguf` and returns its JSON answer.
json LlamaCpp(const TempDir& t, const std::string& gguf, const json& request) {
  const std::string req = t / "request.json", out = t / "answer.json";
  testing::WriteFile(req, request.dump());
  fs::remove(out);
  auto r = RunShell("node " + testing::SourceDir() + "/scripts/gguf/llama_cpp_eval.mjs '" + gguf +
                    "' '" + req + "' '" + out + "' 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  if (r.exit_code != 0) return json();
  return json::parse(testing::ReadFile(out));
}

const char* kCorpus =
    "The quick brown fox jumps over the lazy dog. It's 12345 times better, isn't it?\n"
    "Über café naïve résumé — tabs\there and  double  spaces.\n\nNew paragraph: a = b + c;\n"
    "the theory of the thing is that there are three threes. 42 + 58 = 100.\n";

const std::vector<std::string> kTexts = {"Hello world",
                                         "a\nb",
                                         "  leading spaces",
                                         "trailing  ",
                                         "x\n\n\ny",
                                         "tab\there",
                                         "numbers 1234567 and 89",
                                         "it's THE'S don't",
                                         "über café",
                                         "<|endoftext|>after special",
                                         "The quick brown fox.\n"};

// A trained escale tokenizer (GPT-2 regex) with 320 ids, in `dir`.
void TrainTokenizer(const TempDir& t, const std::string& dir) {
  testing::WriteFile(t / "corpus.txt", std::string(kCorpus) + kCorpus);
  fs::create_directories(dir);
  auto r = RunEscale("tokenizer train --vocab-size 320 --special '<|endoftext|>' -o " + dir +
                     "/tokenizer.json " + t / "corpus.txt");
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

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

const std::vector<std::vector<int32_t>> kSequences = {{1, 50, 260, 3, 99, 310, 7, 7},
                                                      {300, 2, 150, 45, 45, 12}};

struct Measured {
  double max_rel = 0;  // max |llama.cpp - reference| / max |reference| over sequences
  int64_t greedy_agree = 0, greedy_total = 0;
  // Disagreements where the reference's best logit leads the runner-up by more than twice the
  // dtype's error bound: those cannot be rounding (near-ties can, in f16).
  int64_t clear_disagree = 0;
};

Measured Compare(const TempDir& t, const std::string& model_dir, const std::string& gguf,
                 double tol) {
  Measured m;
  auto model = ReadHfModel(model_dir);
  EXPECT_TRUE(model.ok()) << model.status().message();
  if (!model.ok()) return m;
  json ans = LlamaCpp(t, gguf, {{"sequences", kSequences}});
  if (!ans.contains("logits")) {
    ADD_FAILURE() << "llama.cpp gave no logits";
    m.max_rel = INFINITY;
    return m;
  }
  for (size_t s = 0; s < kSequences.size(); ++s) {
    auto ref = ReferenceForward(model->config, model->tensors, kSequences[s]);
    EXPECT_TRUE(ref.ok()) << ref.status().message();
    if (!ref.ok()) continue;
    const auto& rows = ans["logits"][s];
    const int64_t V = ref->vocab;
    EXPECT_EQ(static_cast<int64_t>(rows.size()), ref->tokens);
    double scale = 0, err = 0;
    for (int64_t p = 0; p < ref->tokens; ++p) {
      EXPECT_EQ(static_cast<int64_t>(rows[p].size()), V);
      int64_t am_ref = 0, am_cpp = 0;
      double row_scale = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double r = ref->logits[static_cast<size_t>(p * V + v)];
        const double c = rows[p][v].is_number() ? rows[p][v].get<double>() : NAN;
        scale = std::max(scale, std::fabs(r));
        row_scale = std::max(row_scale, std::fabs(r));
        err = std::isnan(c) ? INFINITY : std::max(err, std::fabs(c - r));
        if (r > ref->logits[static_cast<size_t>(p * V + am_ref)]) am_ref = v;
        if (c > rows[p][am_cpp].get<double>()) am_cpp = v;
      }
      double second = -INFINITY;
      for (int64_t v = 0; v < V; ++v)
        if (v != am_ref) second = std::max(second, ref->logits[static_cast<size_t>(p * V + v)]);
      const double margin = ref->logits[static_cast<size_t>(p * V + am_ref)] - second;
      m.greedy_agree += am_ref == am_cpp;
      m.clear_disagree += am_ref != am_cpp && margin > 2 * tol * row_scale;
      ++m.greedy_total;
    }
    m.max_rel = std::max(m.max_rel, err / scale);
  }
  return m;
}

class GgufLlamaCpp : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!LlamaCppAvailable(why)) GTEST_SKIP() << "llama.cpp check skipped: " << why;
  }
};

void CheckModel(const TempDir& t, const std::string& dir, const std::string& label) {
  struct Case {
    const char* dtype;
    double tol;
  };
  for (const Case c : {Case{"f32", 1e-5}, Case{"f16", 1e-2}, Case{"q8_0", 0.1}}) {
    const std::string gguf = t / (label + "-" + c.dtype + ".gguf");
    auto r = RunEscale("convert " + dir + " " + gguf + " --dtype " + c.dtype);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Measured m = Compare(t, dir, gguf, c.tol);
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

// Sets every tensor of the model in `dir` (one f32 safetensors file) whose name contains `part`
// to base + N(0, std^2) in place. A fresh scale-out leaves shared-expert gates 0, which llama.cpp
// cannot evaluate (see CheckSharedGatesNonZero), and init leaves q/k norms 1, which would not
// tell q_norm from k_norm: both paths stay untested unless the weights differ.
void RandomiseTensors(const std::string& dir, const std::string& part, double base,
                      double std_dev) {
  const std::string path = dir + "/model.safetensors";
  uint64_t data_offset = 0;
  std::vector<SafetensorsEntry> entries;
  {
    auto f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().message();
    data_offset = f->data_offset();
    entries = f->entries();
  }
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  Rng rng(11);
  int patched = 0;
  for (const SafetensorsEntry& e : entries) {
    if (e.name.find(part) == std::string::npos) continue;
    ASSERT_EQ(e.dtype, DType::kF32);
    std::vector<float> v((e.end - e.begin) / 4);
    for (float& x : v) x = static_cast<float>(base + std_dev * rng.NextNormal());
    io.seekp(static_cast<std::streamoff>(data_offset + e.begin));
    io.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    ++patched;
  }
  ASSERT_TRUE(io.good());
  ASSERT_GT(patched, 0);
}

void RandomiseSharedGates(const std::string& dir) {
  RandomiseTensors(dir, "shared_expert_gate", 0.0, 0.3);
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
