// escale train through the command line: the first validation loss right after scale-out (file
// and online) and after FPI width-only scale-up equals the dense model's; bad inputs give one
// line and a non-zero exit.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/hf_model.h"
#include "support/test_support.h"

namespace escale {
namespace {

using testing::RunEscale;

class TrainCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const std::string d = dir_->path();
    testing::WriteFile(d + "/config.json", R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "vocab_size": 300, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
      "max_position_embeddings": 256})");
    Check(testing::RunShell("cp /usr/share/common-licenses/GPL-3 " + d + "/corpus.txt"));
    Check(RunEscale("tokenizer train " + d + "/corpus.txt --vocab-size 300 -o " + d + "/tokenizer.json"));
    Check(RunEscale("tokenize --tokenizer " + d + "/tokenizer.json --input " + d + "/corpus.txt --output " + d +
                    "/shards --val-fraction 0"));
    Check(RunEscale("init " + d + "/dense --config " + d + "/config.json --seed 9 --std 0.1"));
  }
  static void TearDownTestSuite() { delete dir_; }
  static void Check(const testing::CommandResult& r) {
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // First evaluation (step 0) of a one-step run of `model_args`, from metrics.jsonl.
  static double FirstValLoss(const std::string& model_args, const std::string& run) {
    const std::string d = dir_->path();
    auto r = RunEscale("train " + model_args + " --data " + d + "/shards --out " + d + "/" + run +
                       " --steps 1 --seq-len 32 --micro-batch 2 --eval-batches 4 --no-mfu");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::ifstream in(d + "/" + run + "/metrics.jsonl");
    std::string line;
    std::getline(in, line);
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("val_loss")) return NAN;
    return j["val_loss"].get<double>();
  }
  static testing::TempDir* dir_;
};
testing::TempDir* TrainCli::dir_ = nullptr;

TEST_F(TrainCli, UpcyclingAndFpiGrowthKeepTheFirstValidationLoss) {
  const std::string d = dir_->path();
  // Without a val split the trainer has nothing to evaluate: make one from the train shard.
  Check(testing::RunShell("cp -r " + d + "/shards " + d + "/shards_v && cd " + d + "/shards_v && mv train_000000.bin val_000000.bin && cp val_000000.bin train_000000.bin"));
  Check(testing::RunShell("rm -rf " + d + "/shards && mv " + d + "/shards_v " + d + "/shards"));
  const double dense = FirstValLoss("--model " + d + "/dense", "run_dense");
  ASSERT_TRUE(std::isfinite(dense));
  EXPECT_GT(dense, 4.0);  // a random model: near ln(300) = 5.7

  Check(RunEscale("scale-out " + d + "/dense " + d + "/moe --experts 4 --top-k 2 --seed 3"));
  EXPECT_NEAR(FirstValLoss("--model " + d + "/moe", "run_moe"), dense, 1e-4);
  EXPECT_NEAR(FirstValLoss("--init-from " + d + "/dense --scale-out 4,2", "run_online"), dense, 1e-4);
  // Online upcycling takes scale-out's options: granular top-1 of 2 slices is exact, too.
  EXPECT_NEAR(FirstValLoss("--init-from " + d + "/dense --scale-out 4,1 --granularity 2",
                           "run_online_granular"),
              dense, 1e-4);

  Check(RunEscale("scale-up " + d + "/dense " + d + "/wide --method fpi --hidden 64 --intermediate 96 --heads 8"));
  EXPECT_NEAR(FirstValLoss("--model " + d + "/wide", "run_wide"), dense, 1e-4);

  // verify --text encodes with A's tokenizer (copied into the model by --tokenizer-from).
  auto v = RunEscale("verify " + d + "/dense " + d + "/moe --tokenizer " + d + "/tokenizer.json --text 'the licence' --json");
  ASSERT_EQ(v.exit_code, 0) << v.err;
  auto vj = nlohmann::json::parse(v.out, nullptr, false);
  ASSERT_FALSE(vj.is_discarded()) << v.out;
  EXPECT_LT(vj["max_abs_logit_diff"].get<double>(), 1e-4) << v.out;

  // st routing is not function-preserving: the loss moves (checked so the test can fail).
  Check(RunEscale("scale-out " + d + "/dense " + d + "/moe_st --experts 4 --top-k 2 --router st --seed 3"));
  const double offline_st = FirstValLoss("--model " + d + "/moe_st", "run_st");
  EXPECT_GT(std::abs(offline_st - dense), 1e-3);
  // Online upcycling with the same options and seed builds the same model (the router too).
  EXPECT_NEAR(FirstValLoss("--init-from " + d + "/dense --scale-out 4,2 --router st --seed 3",
                           "run_online_st"),
              offline_st, 1e-9);
}

TEST_F(TrainCli, DataBlendReportsEachSource) {
  const std::string d = dir_->path();
  Check(testing::RunShell("cp /usr/share/common-licenses/Apache-2.0 " + d + "/apache.txt"));
  Check(RunEscale("tokenize --tokenizer " + d + "/tokenizer.json --input " + d +
                  "/apache.txt --output " + d + "/apache --val-fraction 0"));
  auto r = RunEscale("train --model " + d + "/dense --data-blend 'gpl=3:" + d +
                     "/shards apache=1:" + d + "/apache' --out " + d +
                     "/blend --steps 4 --seq-len 32 --micro-batch 2 --eval-every 0 --no-mfu");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 4 steps x 2 windows x 32 tokens = 256 tokens, 3:1.
  auto tokens = [&](const std::string& prefix) {
    const size_t at = r.out.find(prefix);
    return at == std::string::npos ? -1.0 : std::atof(r.out.c_str() + at + prefix.size());
  };
  const double gpl = tokens("source gpl: weight 0.750, "),
               apache = tokens("source apache: weight 0.250, ");
  EXPECT_EQ(gpl + apache, 256) << r.out;
  EXPECT_NEAR(gpl, 192, 32) << r.out;
  auto state = nlohmann::json::parse(
      testing::ReadFile(d + "/blend/checkpoints/step-00000004/trainer_state.json"));
  EXPECT_EQ(state["data_sources"]["gpl"]["position"].get<double>() * 32, gpl);
}

TEST_F(TrainCli, BadInputsGiveOneLineAndNonZeroExit) {
  const std::string d = dir_->path();
  const std::string common = " --steps 2 --seq-len 32 --micro-batch 2 --no-mfu --out " + d + "/bad";
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"--model " + d + "/dense --data " + d + "/nowhere", "manifest.json"},
      {"--model " + d + "/dense --data " + d + "/shards --capacity-factor 2", "dense"},
      {"--model " + d + "/dense --data " + d + "/shards --global-batch-tokens 100",
       "multiple of seq-len x micro-batch"},
      {"--model " + d + "/moe --data " + d + "/shards --router bogus",
       "--router must be mixtral or st"},
      {"--init-from " + d + "/dense --scale-out 4 --data " + d + "/shards", "E,K"},
      // Scale-out's own checks, said in terms of this command.
      {"--init-from " + d + "/dense --scale-out 4,1 --data " + d + "/shards",
       "online upcycling --scale-out 4,1 (E is scale-out's --experts, K its --top-k): --top-k 1 "
       "with mixtral routing"},
      {"--init-from " + d + "/dense --scale-out 4,2 --moe-format bogus --data " + d + "/shards",
       "format 'bogus' is not one of auto, mixtral, qwen2-moe, qwen3-moe"},
      {"--model " + d + "/dense --data " + d + "/shards --granularity 2",
       "--granularity is an option of online upcycling"},
      {"--model " + d + "/dense --data " + d + "/shards --lr abc", "--lr takes a number"},
      {"--data " + d + "/shards", "exactly one of --model"},
      {"--model " + d + "/dense --data-blend 'a=0:" + d + "/shards'", "must be a positive number"},
      {"--model " + d + "/dense --data-blend 'a=1:" + d + "/shards' --data " + d + "/shards",
       "exactly one of --data"},
      {"--model " + d + "/dense --data-blend 'a=1:" + d + "/shards b=1:" + d + "/nowhere'",
       "manifest.json"},
      // Absurd numbers are refused before any work, naming the flag.
      {"--model " + d + "/dense --data " + d + "/shards --lr 1e300",
       "--lr must be a number in (0, 1]"},
      {"--model " + d + "/dense --data " + d + "/shards --lr 0", "--lr must be a number in (0, 1]"},
      {"--model " + d + "/dense --data " + d + "/shards --lr inf", "--lr takes a number"},
      {"--model " + d + "/dense --data " + d + "/shards --min-lr 1",
       "--min-lr must be between 0 and --lr"},
      {"--model " + d + "/dense --data " + d + "/shards --threads 100000",
       "--threads must be between 0"},
      {"--model " + d + "/dense --data " + d + "/shards --wsd-decay-fraction 2",
       "--wsd-decay-fraction"},
      {"--model " + d + "/dense --data " + d + "/shards --max-skips 0", "--max-skips"},
  };
  for (const auto& c : cases) {
    auto r = RunEscale("train " + c.args + common);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << "\n" << r.err;
  }
  // The sequence length is given last, so that `common` does not override it.
  for (const std::string& flag :
       {std::string("--seq-len 100000000"), std::string("--micro-batch 1000000")}) {
    auto r = RunEscale("train --model " + d + "/dense --data " + d +
                       "/shards --steps 2 --no-mfu --out " + d + "/bad " + flag);
    EXPECT_EQ(r.exit_code, 1) << flag;
    EXPECT_NE(r.err.find(flag.substr(0, flag.find(' ')) + " must be between"), std::string::npos)
        << r.err;
  }
  // Shards from a larger vocabulary than the model's.
  std::string small = testing::ReadFile(d + "/config.json");
  const std::string from = "\"vocab_size\": 300";
  small.replace(small.find(from), from.size(), "\"vocab_size\": 200");
  testing::WriteFile(d + "/small.json", small);
  Check(RunEscale("init " + d + "/small --config " + d + "/small.json"));
  auto r = RunEscale("train --model " + d + "/small --data " + d + "/shards" + common + "2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("vocabulary"), std::string::npos) << r.err;
  // That refusal came after the run directory was created and locked: neither is left behind.
  EXPECT_FALSE(std::filesystem::exists(d + "/bad2"))
      << "an empty run directory or its .lock was left";
  EXPECT_FALSE(std::filesystem::exists(d + "/bad"));
}

// Shards must come from the model's own tokenizer (same bytes), and a manifest must be escale
// tokenize's: other token ids would train without complaint into a useless model.
TEST_F(TrainCli, ShardsOfAnotherTokenizerAndBadManifestsAreRefused) {
  const std::string d = dir_->path();
  Check(
      testing::RunShell("rm -rf " + d + "/tok_model && cp -r " + d + "/dense " + d + "/tok_model"));
  const std::string common = " --steps 1 --seq-len 32 --micro-batch 2 --no-mfu --eval-batches 1";
  // The tokenizer the shards were made with: accepted.
  Check(testing::RunShell("cp " + d + "/tokenizer.json " + d + "/tok_model/tokenizer.json"));
  auto r = RunEscale("train --model " + d + "/tok_model --data " + d + "/shards --out " + d +
                     "/tok_same" + common);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // One byte more (a trailing newline): another file, refused before any work.
  std::ofstream(d + "/tok_model/tokenizer.json", std::ios::app) << "\n";
  r = RunEscale("train --model " + d + "/tok_model --data " + d + "/shards --out " + d +
                "/tok_other" + common);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("were made with another tokenizer"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(d + "/tok_other"));
  // Empty and garbage manifests.
  for (const std::string& m :
       {std::string(""), std::string("{\"format\": 3}"), std::string("[1, 2]"),
        std::string("{\"format\": \"llm.c token shards\", \"tokenizer\": {}}") + '\0' + "junk"}) {
    Check(testing::RunShell("rm -rf " + d + "/shards_m && cp -r " + d + "/shards " + d +
                            "/shards_m"));
    testing::WriteFile(d + "/shards_m/manifest.json", m);
    r = RunEscale("train --model " + d + "/dense --data " + d + "/shards_m --out " + d +
                  "/bad_manifest" + common);
    EXPECT_EQ(r.exit_code, 1) << m;
    EXPECT_NE(r.err.find("not written by escale tokenize"), std::string::npos) << m << "\n"
                                                                               << r.err;
  }
}

// A run that has diverged is a failure, never a checkpoint: non-finite starting weights are
// refused, and a run none of whose steps was accepted saves nothing and exits non-zero.
TEST_F(TrainCli, NonFiniteWeightsAndRunsWithoutAGoodStepAreRefused) {
  const std::string d = dir_->path();
  {
    auto m = ReadHfModel(d + "/dense");
    ASSERT_TRUE(m.ok()) << m.status().message();
    std::map<std::string, Tensor> t;
    for (const auto& [name, view] : m->tensors) t[name] = view.Clone();
    ASSERT_EQ(t.at("layers.1.ffn.up").dtype(), DType::kF32);
    t.at("layers.1.ffn.up").mutable_data<float>()[5] = std::nanf("");
    WriteOptions o;
    o.dtype = DType::kF32;
    o.progress = false;
    ASSERT_TRUE(WriteHfModel(d + "/nan_model", m->config, t, o).ok());
  }
  const std::string common =
      " --data " + d + "/shards --steps 3 --seq-len 32 --micro-batch 2 --no-mfu --out ";
  auto r = RunEscale("train --model " + d + "/nan_model" + common + d + "/nan_run");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("layers.1.ffn.up[5] is NaN or infinite"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(d + "/nan_run/checkpoints/latest"));
  EXPECT_FALSE(std::filesystem::exists(d + "/nan_run/.lock"));

  r = RunEscale("train --model " + d + "/dense" + common + d +
                "/all_skipped --inject-nan-steps 0,1,2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no step of this run was accepted (3 skipped"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(d + "/all_skipped/checkpoints/latest"));
  EXPECT_FALSE(std::filesystem::exists(d + "/all_skipped/.lock"));

  // One good step among skipped ones is a run: it saves and succeeds.
  r = RunEscale("train --model " + d + "/dense" + common + d + "/one_good --inject-nan-steps 0,2");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(d + "/one_good/checkpoints/latest"));
  EXPECT_FALSE(std::filesystem::exists(d + "/one_good/.lock"));
}

}  // namespace
}  // namespace escale
