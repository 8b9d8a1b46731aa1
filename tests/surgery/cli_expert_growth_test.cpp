// `escale scale-out` on an MoE directory: fp32 checkpoints through files and the escale binary,
// verified against the source with `escale verify`; the AquilaMoE chain (dense -> scale-up ->
// scale-out) followed by expert growth; bad requests fail in one line with nothing written.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

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

ModelConfig TinyMoe(bool qwen_shared_st) {
  ModelConfig c = testing::TinyConfig({true, qwen_shared_st, false}, 2);
  c.arch = qwen_shared_st ? Architecture::kQwen2Moe : Architecture::kMixtral;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.expert_intermediate = 8;
  c.moe.shared_intermediate = qwen_shared_st ? 12 : 0;
  c.moe.router = qwen_shared_st ? RouterType::kSt : RouterType::kMixtral;
  if (!qwen_shared_st) c.intermediate_size = 8;
  return c;
}

void WriteModel(const std::string& dir, ModelConfig c, uint64_t seed) {
  c.dtype = DType::kF32;
  const TensorMap m = testing::RandomModel(c, seed, DType::kF32);
  WriteOptions o;
  o.dtype = DType::kF32;
  o.progress = false;
  const Status st = WriteHfModel(dir, c, m, o);
  ASSERT_TRUE(st.ok()) << st.message();
}

json Verify(const std::string& a, const std::string& b) {
  const auto r = RunEscale("verify " + a + " " + b + " --json --tokens 1,5,3,7,2,9,11,4,28,0");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out, nullptr, false);
}

json ReadJson(const std::string& path) {
  return json::parse(escale::testing::ReadFile(path), nullptr, false);
}

bool OneLineError(const escale::testing::CommandResult& r) {
  return r.exit_code != 0 && !r.err.empty() && r.err.find('\n') == r.err.size() - 1;
}

TEST(CliExpertGrowth, MixtralTwiceTheExpertsAndTopKIsExactThroughFiles) {
  TempDir tmp;
  WriteModel(tmp / "moe", TinyMoe(false), 51);
  auto r = RunEscale("scale-out " + tmp / "moe" + " " + tmp / "big" + " --experts 8 --top-k 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("function preservation: exact"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("8 = 4 source experts x 2 copies"), std::string::npos) << r.out;
  const json v = Verify(tmp / "moe", tmp / "big");
  EXPECT_LE(v["max_abs_logit_diff"].get<double>(), 1e-4);
  EXPECT_EQ(v["top1_agreement"].get<double>(), 1.0);
  const json cfg = ReadJson(tmp / "big/config.json");
  EXPECT_EQ(cfg["architectures"][0], "MixtralForCausalLM");
  EXPECT_EQ(cfg["num_local_experts"], 8);
  EXPECT_EQ(cfg["num_experts_per_tok"], 4);
  EXPECT_EQ(cfg["intermediate_size"], 8);
  auto f = SafetensorsFile::Open(tmp / "big/model.safetensors");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->metadata().at("escale.method"), "expert-duplication");
  EXPECT_EQ(f->metadata().at("escale.expert_copies"), "2");
  EXPECT_EQ(f->metadata().at("escale.function_preserving"), "exact");
  // Expert 5 of layer 1 is copy 1 of source expert 2 (w1 = gate_proj in Mixtral's names).
  auto src = SafetensorsFile::Open(tmp / "moe/model.safetensors");
  ASSERT_TRUE(src.ok());
  auto a = f->Get("model.layers.1.block_sparse_moe.experts.5.w1.weight");
  auto b = src->Get("model.layers.1.block_sparse_moe.experts.2.w1.weight");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(testing::Values(*a), testing::Values(*b));
  // k = k0: allowed, reported and measured as not exact.
  r = RunEscale("scale-out " + tmp / "moe" + " " + tmp / "same_k" + " --experts 8 --top-k 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("not exact: --top-k 2 is not m x k0"), std::string::npos) << r.out;
  EXPECT_GT(Verify(tmp / "moe", tmp / "same_k")["max_abs_logit_diff"].get<double>(), 1e-3);
}

TEST(CliExpertGrowth, Qwen2MoeWithSharedExpertAndStRoutingDefaultTopKIsExact) {
  TempDir tmp;
  WriteModel(tmp / "moe", TinyMoe(true), 52);
  auto r = RunEscale("scale-out " + tmp / "moe" + " " + tmp / "big" + " --experts 12 --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("top-k: 2 -> 6"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("symmetry"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(tmp / "big"));
  r = RunEscale("scale-out " + tmp / "moe" + " " + tmp / "big" + " --experts 12");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(Verify(tmp / "moe", tmp / "big")["max_abs_logit_diff"].get<double>(), 1e-4);
  const json cfg = ReadJson(tmp / "big/config.json");
  EXPECT_EQ(cfg["architectures"][0], "Qwen2MoeForCausalLM");
  EXPECT_EQ(cfg["num_experts"], 12);
  EXPECT_EQ(cfg["num_experts_per_tok"], 6);
  EXPECT_EQ(cfg["norm_topk_prob"], false);
  EXPECT_EQ(cfg["shared_expert_intermediate_size"], 12);
  // Router noise: accepted, recorded, and not exact.
  r = RunEscale("scale-out " + tmp / "moe" + " " + tmp / "noisy" +
                " --experts 8 --router-noise 0.05 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("not exact: --router-noise"), std::string::npos) << r.out;
  EXPECT_GT(Verify(tmp / "moe", tmp / "noisy")["max_abs_logit_diff"].get<double>(), 1e-6);
}

TEST(CliExpertGrowth, DenseScaleUpScaleOutThenMoreExpertsVerifiesAgainstTheDenseModel) {
  TempDir tmp;
  WriteModel(tmp / "dense", testing::TinyConfig({true, true, false}), 53);
  auto r = RunEscale("scale-up " + tmp / "dense" + " " + tmp / "wide" +
                     " --hidden 32 --intermediate 48 --layers 5 --depth zero");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunEscale("scale-out " + tmp / "wide" + " " + tmp / "moe" +
                " --experts 4 --top-k 2 --router-init-std 0.5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunEscale("scale-out " + tmp / "moe" + " " + tmp / "moe16" + " --experts 16 --top-k 8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("function preservation: exact"), std::string::npos) << r.out;
  const json v = Verify(tmp / "dense", tmp / "moe16");
  EXPECT_LE(v["max_abs_logit_diff"].get<double>(), 1e-4);
  EXPECT_EQ(v["top1_agreement"].get<double>(), 1.0);
}

TEST(CliExpertGrowth, BadRequestsFailInOneLineWithoutOutput) {
  TempDir tmp;
  WriteModel(tmp / "moe", TinyMoe(false), 54);
  fs::create_directories(tmp / "gpt2");
  escale::testing::WriteFile(
      tmp / "gpt2/config.json",
      R"({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 16})");
  const std::string io = tmp / "moe" + " " + tmp / "out";
  const std::vector<std::string> bad = {
      "scale-out " + io + " --experts 1 --top-k 1",                     // E < 2
      "scale-out " + io + " --experts 8 --top-k 9",                     // k > E
      "scale-out " + io + " --experts 8 --top-k 1",                     // k = 1 with mixtral
      "scale-out " + io + " --experts 4 --top-k 2",                     // an MoE without growth
      "scale-out " + io + " --top-k 4",                                 // no --experts at all
      "scale-out " + io + " --experts 6 --top-k 3",                     // not a multiple of E0
      "scale-out " + io + " --experts 8 --top-k 4 --format foo",        // unknown format
      "scale-out " + io + " --experts 8 --top-k 4 --format qwen2-moe",  // another format
      "scale-out " + io + " --experts 8 --top-k 4 --router st",         // another routing
      "scale-out " + io + " --experts 8 --top-k 4 --granularity 2",
      "scale-out " + tmp / "gpt2" + " " + tmp / "out" +
          " --experts 8 --top-k 4",  // unknown model format
  };
  for (const std::string& cmd : bad) {
    const auto r = RunEscale(cmd);
    EXPECT_TRUE(OneLineError(r)) << cmd << "\nexit " << r.exit_code << "\n" << r.err;
    EXPECT_FALSE(fs::exists(tmp / "out")) << cmd;
  }
  const auto r = RunEscale("scale-out " + io + " --experts 4 --top-k 2");
  EXPECT_NE(r.err.find("already an MoE with 4 experts"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace escale::surgery
