// One acceptance run per supported model family, through the command line as a user drives it:
// a shrunken copy of the family's published config.json (its real keys and their spelling, tiny
// sizes), instantiated, stored as sharded bf16 as checkpoints are published, then inspect,
// scale-up (dense) or expert growth (MoE), scale-out, verify, two training steps, generate, and
// GGUF export. Function preservation is checked by `escale verify` (fp64 reference of both
// models); the GGUF files are checked in the real llama.cpp against the fp64 reference where it
// is installed (scripts/gguf/fetch_llama_cpp.sh), and otherwise only written.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/hf_model.h"
#include "support/llama_cpp.h"
#include "support/test_support.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::RunEscale;
using testing::TempDir;

struct Family {
  const char* name;
  // The published config.json, shrunk: sizes changed, every other key kept as published.
  const char* config;
  // scale-up arguments for dense families ("" for MoE families, which scale-up refuses).
  const char* scale_up;
  // scale-out arguments and the class it must write.
  const char* scale_out;
  const char* scale_out_class;
  // Tensors that init leaves constant (biases 0, q/k norms 1), randomised so that a swapped or
  // dropped tensor changes the logits.
  std::vector<const char*> randomise;
};

// Llama 3.2 1B: tied, explicit head_dim, llama3 rope_scaling (original context 16 here, so the
// 24-token GGUF check runs past it).
const char* kLlama32 = R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "head_dim": 16,
  "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 96,
  "max_position_embeddings": 128, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0,
  "low_freq_factor": 1.0, "original_max_position_embeddings": 16, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 320})";

// Llama 3.1 8B Instruct: untied, eos_token_id a list.
const char* kLlama31 = R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": [2, 3, 4], "hidden_act": "silu",
  "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 112,
  "max_position_embeddings": 128, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 1, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
  "high_freq_factor": 4.0, "original_max_position_embeddings": 16, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 320})";

// TinyLlama 1.1B: no head_dim key, rope_scaling null.
const char* kTinyLlama = R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false,
  "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 64,
  "initializer_range": 0.02, "intermediate_size": 176, "max_position_embeddings": 128,
  "model_type": "llama", "num_attention_heads": 8, "num_hidden_layers": 2,
  "num_key_value_heads": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
  "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.35.0", "use_cache": true, "vocab_size": 320})";

// SmolLM2 135M: tied, a head count that is not a power of two, keys of its own.
const char* kSmolLm2 = R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "silu",
  "hidden_size": 48, "initializer_range": 0.041666666666666664, "intermediate_size": 128,
  "is_llama_config": true, "max_position_embeddings": 128, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 6, "num_hidden_layers": 2,
  "num_key_value_heads": 3, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": false,
  "rope_scaling": null, "rope_theta": 100000, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers.js_config": {"kv_cache_dtype": {"q4f16": "float16",
  "fp16": "float16"}}, "transformers_version": "4.40.1", "use_cache": true, "vocab_size": 320})";

// Qwen2.5 0.5B: q/k/v biases, tied, a sliding window it does not use, and a vocabulary padded
// past the tokenizer's 320 ids (as Qwen2.5 pads 151665 to 151936).
const char* kQwen25 = R"({"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
  "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 64,
  "initializer_range": 0.02, "intermediate_size": 96, "max_position_embeddings": 128,
  "max_window_layers": 2, "model_type": "qwen2", "num_attention_heads": 4,
  "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 128, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": true,
  "use_mrope": false, "use_sliding_window": false, "vocab_size": 384})";

// Mistral 7B v0.3: explicit head_dim, sliding_window null.
const char* kMistral = R"({"architectures": ["MistralForCausalLM"], "attention_dropout": 0.0,
  "bos_token_id": 1, "eos_token_id": 2, "head_dim": 16, "hidden_act": "silu", "hidden_size": 64,
  "initializer_range": 0.02, "intermediate_size": 96, "max_position_embeddings": 128,
  "model_type": "mistral", "num_attention_heads": 4, "num_hidden_layers": 2,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
  "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.42.0.dev0", "use_cache": true, "vocab_size": 320})";

// Qwen3 0.6B: q/k norm, head_dim 32 with hidden 64 and 4 heads (heads x head_dim != hidden).
const char* kQwen3 = R"({"architectures": ["Qwen3ForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 0, "head_dim": 32,
  "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 96,
  "max_position_embeddings": 128, "max_window_layers": 2, "model_type": "qwen3",
  "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 320})";

// Mixtral 8x7B: num_local_experts, router keys of its own.
const char* kMixtral = R"({"architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0,
  "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 64,
  "initializer_range": 0.02, "intermediate_size": 48, "max_position_embeddings": 128,
  "model_type": "mixtral", "num_attention_heads": 4, "num_experts_per_tok": 2,
  "num_hidden_layers": 2, "num_key_value_heads": 2, "num_local_experts": 4,
  "output_router_logits": false, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.02, "router_jitter_noise": 0.0, "sliding_window": null,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0",
  "use_cache": true, "vocab_size": 320})";

// Qwen1.5-MoE-A2.7B: shared expert with its sigmoid gate, st routing (norm_topk_prob false).
const char* kQwen2Moe = R"({"architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0,
  "bos_token_id": 0, "decoder_sparse_step": 1, "eos_token_id": 0, "hidden_act": "silu",
  "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 96,
  "max_position_embeddings": 128, "max_window_layers": 2, "model_type": "qwen2_moe",
  "moe_intermediate_size": 24, "norm_topk_prob": false, "num_attention_heads": 4,
  "num_experts": 6, "num_experts_per_tok": 2, "num_hidden_layers": 2, "num_key_value_heads": 4,
  "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.001, "shared_expert_intermediate_size": 96, "sliding_window": 128,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.39.0.dev0",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 320})";

// Qwen3-30B-A3B: fine-grained (16 experts of 16, top-8 here), renormalised, q/k norm.
const char* kQwen3Moe = R"({"architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "bos_token_id": 0, "decoder_sparse_step": 1, "eos_token_id": 0,
  "head_dim": 16, "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
  "intermediate_size": 96, "max_position_embeddings": 128, "max_window_layers": 2,
  "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 16,
  "norm_topk_prob": true, "num_attention_heads": 4, "num_experts": 16, "num_experts_per_tok": 8,
  "num_hidden_layers": 2, "num_key_value_heads": 2, "output_router_logits": false,
  "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.001, "sliding_window": null, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": true,
  "use_sliding_window": false, "vocab_size": 320})";

const std::vector<Family>& Families() {
  static const std::vector<Family> f = {
      {"Llama32",
       kLlama32,
       "--hidden 128 --heads 8 --intermediate 192 --layers 4",
       "--experts 4 --top-k 2",
       "MixtralForCausalLM",
       {}},
      {"Llama31",
       kLlama31,
       "--hidden 128 --heads 8 --kv-heads 2 --intermediate 224 --layers 4",
       "--experts 4 --top-k 2 --granularity 2",
       "MixtralForCausalLM",
       {}},
      {"TinyLlama",
       kTinyLlama,
       "--hidden 128 --heads 16 --intermediate 352 --layers 3",
       "--experts 8 --top-k 2",
       "MixtralForCausalLM",
       {}},
      {"SmolLM2",
       kSmolLm2,
       "--hidden 96 --heads 12 --intermediate 256 --layers 4",
       "--experts 4 --top-k 2",
       "MixtralForCausalLM",
       {}},
      {"Qwen25",
       kQwen25,
       "--hidden 128 --heads 8 --intermediate 192 --layers 4",
       "--experts 4 --top-k 2",
       "Qwen2MoeForCausalLM",
       {"_proj.bias"}},
      {"Mistral",
       kMistral,
       "--hidden 128 --heads 8 --intermediate 192 --layers 4",
       "--experts 4 --top-k 2",
       "MixtralForCausalLM",
       {}},
      {"Qwen3",
       kQwen3,
       "--hidden 128 --heads 8 --intermediate 192 --layers 4",
       "--experts 4 --top-k 2",
       "Qwen3MoeForCausalLM",
       {"q_norm", "k_norm"}},
      {"Mixtral", kMixtral, "", "--experts 8", "MixtralForCausalLM", {}},
      {"Qwen2Moe", kQwen2Moe, "", "--experts 12", "Qwen2MoeForCausalLM", {"_proj.bias"}},
      {"Qwen3Moe", kQwen3Moe, "", "--experts 32", "Qwen3MoeForCausalLM", {"q_norm", "k_norm"}},
  };
  return f;
}

class FamilyAcceptance : public ::testing::TestWithParam<Family> {};

void Ok(const testing::CommandResult& r, const std::string& what) {
  ASSERT_EQ(r.exit_code, 0) << what << ": " << r.err;
}

// escale verify A B --json, which must pass; returns max |logit diff|.
double Verify(const std::string& a, const std::string& b) {
  auto r = RunEscale("verify " + a + " " + b + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j["max_abs_logit_diff"].is_number()) {
    ADD_FAILURE() << "verify printed no max_abs_logit_diff: " << r.out;
    return INFINITY;
  }
  EXPECT_TRUE(j["finite"].get<bool>());
  return j["max_abs_logit_diff"].get<double>();
}

// max |llama.cpp - fp64 reference| / max |logit| for an f32 GGUF of `dir`, which must stay under
// the f32 bound of the GGUF tests, with the same greedy token at every position.
void CheckInLlamaCpp(const TempDir& t, const std::string& dir, const std::string& gguf,
                     const std::string& label) {
  std::string why;
  if (!testing::LlamaCppAvailable(why)) {
    std::printf("%s: llama.cpp check skipped (%s)\n", label.c_str(), why.c_str());
    return;
  }
  std::vector<int32_t> seq;  // 24 positions, past the llama3 families' original context of 16
  for (int i = 0; i < 24; ++i) seq.push_back((i * 53 + 5) % 320);
  const testing::Measured m = testing::Compare(t, dir, gguf, 1e-5, {seq, {7, 300, 12, 12, 99}});
  std::printf("%s: llama.cpp max rel %.3g, greedy %lld/%lld\n", label.c_str(), m.max_rel,
              static_cast<long long>(m.greedy_agree), static_cast<long long>(m.greedy_total));
  EXPECT_LT(m.max_rel, 1e-5) << label;
  EXPECT_EQ(m.greedy_agree, m.greedy_total) << label;
}

TEST_P(FamilyAcceptance, EveryCommandOnAShrunkenPublishedConfig) {
  const Family& f = GetParam();
  TempDir t;
  testing::TrainTokenizer(t, t / "tok");
  ASSERT_FALSE(HasFatalFailure());
  testing::WriteFile(t / "config.json", f.config);
  Ok(RunEscale("init --config " + t / "config.json" + " --std 0.125 --seed 5 --tokenizer-from " +
               t / "tok" + " " + t / "f32"),
     "init");
  for (const char* part : f.randomise) testing::RandomiseTensors(t / "f32", part, 0.5, 0.3);
  ASSERT_FALSE(HasFatalFailure());

  // The model as it is published: bf16, sharded, the family's own config.json.
  const std::string m = t / "model";
  Ok(RunEscale("convert " + t / "f32" + " " + m + " --dtype bf16 --max-shard-bytes 40000"),
     "convert to sharded bf16");
  ASSERT_TRUE(fs::exists(m + "/model.safetensors.index.json"));
  const json published = json::parse(f.config);
  const json written = json::parse(testing::ReadFile(m + "/config.json"));
  for (auto it = published.begin(); it != published.end(); ++it) {
    // transformers reads a null key as an absent one, and the dtype is the file's.
    if (it.key() == "torch_dtype" || it->is_null()) continue;
    EXPECT_TRUE(written.contains(it.key())) << "config key dropped: " << it.key();
  }
  auto model = ReadHfModel(m);
  ASSERT_TRUE(model.ok()) << model.status().message();
  EXPECT_EQ(model->config.dtype, DType::kBF16);
  const std::string cls = published["architectures"][0];

  // inspect: the class, and the parameter count of the tensors on disk.
  auto r = RunEscale("inspect " + m + " --json");
  Ok(r, "inspect");
  const json ins = json::parse(r.out);
  EXPECT_EQ(ins["architecture"], cls);
  int64_t numel = 0;
  for (const auto& [name, tensor] : model->tensors) numel += tensor.numel();
  EXPECT_EQ(ins["parameters"]["total"].get<int64_t>(), numel);

  // scale-up (FPI with zeroed output projections on new layers: exact) for dense families; an MoE
  // is refused with the way forward.
  if (*f.scale_up) {
    Ok(RunEscale("scale-up " + m + " " + t / "up" + " --method fpi --depth zero --dtype f64 " +
                 f.scale_up),
       "scale-up");
    auto up = ReadHfModel(t / "up");
    ASSERT_TRUE(up.ok()) << up.status().message();
    EXPECT_EQ(ArchitectureClassName(up->config.arch), cls);
    const double d = Verify(m, t / "up");
    std::printf("%s scale-up: max |logit diff| %.3g\n", f.name, d);
    EXPECT_LT(d, 1e-10) << "scale-up";
  } else {
    r = RunEscale("scale-up " + m + " " + t / "up" + " --hidden 128");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("scale-out"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(t / "up"));
  }

  // scale-out: dense -> MoE, or an MoE's experts copied; exact either way, in fp64.
  r = RunEscale("scale-out " + m + " " + t / "moe" + " --dtype f64 --seed 3 " + f.scale_out);
  Ok(r, "scale-out");
  auto moe = ReadHfModel(t / "moe");
  ASSERT_TRUE(moe.ok()) << moe.status().message();
  EXPECT_EQ(ArchitectureClassName(moe->config.arch), f.scale_out_class);
  // A class that some loaders give plain RoPE, holding rope_scaling, is said once on stderr.
  const bool warns = !model->config.rope_scaling.is_null() &&
                     !ArchInfo(moe->config.arch).rope_scaling_ignored_by.empty();
  EXPECT_EQ(r.err.find("warning") != std::string::npos, warns) << r.err;
  const double d = Verify(m, t / "moe");
  std::printf("%s scale-out (%s): max |logit diff| %.3g\n", f.name, f.scale_out_class, d);
  EXPECT_LT(d, 1e-12) << "scale-out";

  // Two training steps on the published model; the checkpoint loads and its loss is finite.
  Ok(testing::RunShell("cp /usr/share/common-licenses/GPL-3 " + t / "corpus.txt"), "corpus");
  Ok(RunEscale("tokenize --tokenizer " + t / "tok/tokenizer.json" + " --input " + t / "corpus.txt" +
               " --output " + t / "shards" + " --val-fraction 0"),
     "tokenize");
  Ok(RunEscale("train --model " + m + " --data " + t / "shards" + " --out " + t / "run" +
               " --steps 2 --seq-len 32 --micro-batch 2 --no-mfu --eval-batches 0"),
     "train");
  std::ifstream metrics(t / "run/metrics.jsonl");
  int steps = 0;
  for (std::string line; std::getline(metrics, line);) {
    const json rec = json::parse(line, nullptr, false);
    if (rec.is_discarded() || !rec.contains("loss")) continue;
    EXPECT_TRUE(rec["loss"].is_number() && std::isfinite(rec["loss"].get<double>())) << line;
    ++steps;
  }
  EXPECT_EQ(steps, 2);
  const std::string latest = testing::ReadFile(t / "run/checkpoints/latest");
  const std::string trained =
      t / ("run/checkpoints/" + latest.substr(0, latest.find('\n'))) + "/model";
  auto tm = ReadHfModel(trained);
  ASSERT_TRUE(tm.ok()) << tm.status().message();

  // Online upcycling inside train says what scale-out says, once.
  if (warns) {
    r = RunEscale("train --init-from " + m + " --scale-out 4,2 --data " + t / "shards" + " --out " +
                  t / "online" +
                  " --steps 1 --seq-len 32 --micro-batch 2 --no-mfu --eval-batches 0");
    Ok(r, "online upcycling");
    EXPECT_NE(r.err.find("warning: the checkpoints of this run are MixtralForCausalLM"),
              std::string::npos)
        << r.err;
  }

  // generate, greedy, to the end (a padded vocabulary's extra rows are never sampled).
  r = RunEscale("generate " + trained +
                " --prompt 'The licence' --max-new-tokens 12 --temperature 0");
  Ok(r, "generate");
  EXPECT_FALSE(r.out.empty());

  // GGUF: the published model and its exact scale-out both export, and llama.cpp computes what
  // the fp64 reference does.
  Ok(RunEscale("convert " + m + " " + t / "model.gguf"), "GGUF export");
  CheckInLlamaCpp(t, m, t / "model.gguf", std::string(f.name) + " model");
  Ok(RunEscale("convert " + t / "moe" + " " + t / "moe.gguf"), "GGUF export of the scale-out");
  CheckInLlamaCpp(t, t / "moe", t / "moe.gguf", std::string(f.name) + " scale-out");
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyAcceptance, ::testing::ValuesIn(Families()),
                         [](const ::testing::TestParamInfo<Family>& i) { return i.param.name; });

}  // namespace
}  // namespace escale
