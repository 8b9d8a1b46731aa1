// escale train's pieces for fair comparisons at equal compute: a decay branch off a stable WSD
// run (--branch-from) is the run that budget would have given, checkpoints named by --keep-steps
// survive pruning, and --eval-batches 0 scores the whole held-out split exactly as
// `escale eval --shards` reports validation_loss.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::RunEscale;

class TrainBranch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const std::string d = dir_->path();
    testing::WriteFile(d + "/config.json",
                       R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "vocab_size": 300, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
      "max_position_embeddings": 256})");
    // Twenty documents, so that a tenth of them can be held out.
    Check(testing::RunShell("cp /usr/share/common-licenses/GPL-3 " + d + "/corpus.txt && mkdir " +
                            d + "/docs && cd " + d + "/docs && split -n l/20 ../corpus.txt p && " +
                            "for f in p*; do mv $f $f.txt; done"));
    Check(RunEscale("tokenizer train " + d + "/corpus.txt --vocab-size 300 -o " + d +
                    "/tokenizer.json"));
    Check(RunEscale("tokenize --tokenizer " + d + "/tokenizer.json --input " + d +
                    "/docs --output " + d + "/shards --val-fraction 0.1"));
    Check(RunEscale("init " + d + "/dense --config " + d + "/config.json --seed 9 --std 0.1"));
  }
  static void TearDownTestSuite() { delete dir_; }
  static void Check(const testing::CommandResult& r) { ASSERT_EQ(r.exit_code, 0) << r.err; }
  static std::string Train(const std::string& out, const std::string& extra, int micro_batch = 2) {
    const std::string d = dir_->path();
    return "train --model " + d + "/dense --data " + d + "/shards --out " + d + "/" + out +
           " --seq-len 16 --micro-batch " + std::to_string(micro_batch) +
           " --lr 3e-3 --min-lr 0 --warmup 2 --schedule wsd "
           "--wsd-decay-fraction 0.25 --eval-every 0 --threads 1 --no-mfu " +
           extra;
  }
  static std::vector<json> Records(const std::string& run) {
    std::vector<json> out;
    std::ifstream in(dir_->path() + "/" + run + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }
  static std::string Ckpt(const std::string& run, int step) {
    char name[32];
    std::snprintf(name, sizeof name, "step-%08d", step);
    return dir_->path() + "/" + run + "/checkpoints/" + name;
  }
  static std::string Weights(const std::string& run, int step) {
    return testing::ReadFile(Ckpt(run, step) + "/model/model.safetensors");
  }
  static testing::TempDir* dir_;
};
testing::TempDir* TrainBranch::dir_ = nullptr;

TEST_F(TrainBranch, ABranchWithTheSameBudgetIsTheUnbrokenRun) {
  const std::string d = dir_->path();
  // Stable run of 12 steps; steps 4 and 8 are kept although keep-last 1 prunes the others.
  Check(RunEscale(Train("stable", "--steps 12 --save-every 1 --keep-last 1 --keep-steps 4,8")));
  EXPECT_TRUE(fs::exists(Ckpt("stable", 4)));
  EXPECT_TRUE(fs::exists(Ckpt("stable", 8)));
  EXPECT_TRUE(fs::exists(Ckpt("stable", 12)));
  EXPECT_FALSE(fs::exists(Ckpt("stable", 11)));

  // Branching at 8 with the same 12 steps continues the same schedule: identical bytes.
  Check(RunEscale(Train("same", "--steps 12 --branch-from " + Ckpt("stable", 8))));
  EXPECT_EQ(Weights("same", 12), Weights("stable", 12));
  // Its log holds the stable run's history up to the branch, then its own steps.
  const auto stable = Records("stable"), same = Records("same");
  std::vector<int64_t> steps;
  for (const json& r : same)
    if (!r.contains("event")) steps.push_back(r["step"].get<int64_t>());
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));

  // A shorter budget: branching at 4 into an 8-step run decays in its last steps, where the
  // stable run was still at the peak (a trailing slash in the path is fine).
  Check(RunEscale(Train("short", "--steps 8 --branch-from " + Ckpt("stable", 4) + "/")));
  auto lr_at = [](const std::vector<json>& log, int64_t step) {
    for (const json& r : log)
      if (!r.contains("event") && r["step"] == step) return r["lr"].get<double>();
    return -1.0;
  };
  EXPECT_DOUBLE_EQ(lr_at(stable, 8), 3e-3);
  EXPECT_DOUBLE_EQ(lr_at(Records("short"), 4), 3e-3);
  EXPECT_GT(lr_at(Records("short"), 8), 0);
  EXPECT_LT(lr_at(Records("short"), 8), 3e-3);
  EXPECT_NE(Weights("short", 8), Weights("stable", 8));

  // A branch whose schedule options differ from its parent's is refused, naming the cause.
  auto bad =
      RunEscale(Train("bad", "--steps 8 --weight-decay 0.01 --branch-from " + Ckpt("stable", 8)));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("differ from the run being resumed"), std::string::npos) << bad.err;
  auto missing =
      RunEscale(Train("none", "--steps 8 --branch-from " + d + "/stable/checkpoints/no"));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_FALSE(fs::exists(d + "/none/checkpoints/latest"));
}

TEST_F(TrainBranch, CompareLaysRunsOnTheFlopsAxis) {
  const std::string d = dir_->path();
  if (!fs::exists(d + "/stable/checkpoints/latest"))
    Check(RunEscale(Train("stable", "--steps 12 --save-every 1 --keep-last 1 --keep-steps 4,8")));
  Check(RunEscale(Train("cont", "--steps 3 --eval-batches 1 --save-every 0")));
  auto r = RunEscale("compare first=" + d + "/stable after=" + d + "/cont@first --svg " + d +
                     "/cmp.svg");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| first |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| after |"), std::string::npos) << r.out;
  const std::string svg = testing::ReadFile(d + "/cmp.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("after"), std::string::npos);
  // 12 steps of 32 tokens, then 3 more: the second run's table row ends at 15 steps' FLOPs.
  const auto row = [&](const std::string& name) {
    const auto at = r.out.find("| " + name + " |");
    return r.out.substr(at, r.out.find('\n', at) - at);
  };
  EXPECT_NE(row("first").find("| 384 |"), std::string::npos) << row("first");
  EXPECT_NE(row("after").find("| 96 |"), std::string::npos) << row("after");
  // "after" continues where "first" ended (same model and sequence length): 15/12 of its FLOPs.
  const auto flops = [&](const std::string& name) {
    std::string cells = row(name);
    for (int i = 0; i < 3; ++i) cells = cells.substr(cells.find('|') + 1);
    return std::stod(cells);
  };
  EXPECT_NEAR(flops("after") / flops("first"), 15.0 / 12.0, 0.01);
  auto bad = RunEscale("compare x=" + d + "/stable@lots");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("FLOPs"), std::string::npos) << bad.err;
}

TEST_F(TrainBranch, WholeSplitValidationIsEvalsValidationLoss) {
  const std::string d = dir_->path();
  // A micro-batch that does not divide the split's windows: the last batch is padded.
  const json manifest = json::parse(testing::ReadFile(d + "/shards/manifest.json"));
  const int64_t val_tokens = manifest["splits"]["val"]["tokens"];
  const int64_t windows = (val_tokens - 1) / 16;
  ASSERT_GT(windows, 20);
  int mb = 7;
  while (windows % mb == 0) ++mb;
  Check(RunEscale(Train("whole", "--steps 2 --eval-batches 0", mb)));
  double trainer = NAN;
  for (const json& r : Records("whole"))
    if (r.value("event", "") == "eval" && r["step"] == 2) trainer = r["val_loss"];
  ASSERT_TRUE(std::isfinite(trainer));
  auto e = RunEscale("eval " + d + "/whole/checkpoints/step-00000002/model --shards " + d +
                     "/shards --max-length 16 --json");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const json j = json::parse(e.out);
  const json& sp = j["shard_perplexity"];
  EXPECT_NEAR(sp["validation_loss"].get<double>(), trainer, 1e-5 * trainer);
  // Every complete 16-token window of the split: the shard's tokens minus the last partial one.
  EXPECT_EQ(sp["validation_tokens"].get<int64_t>(), windows * 16);
  // The first batches only (the default) are a different, smaller sample.
  Check(RunEscale(Train("two", "--steps 2 --eval-batches 1", mb)));
  double sampled = NAN;
  for (const json& r : Records("two"))
    if (r.value("event", "") == "eval" && r["step"] == 2) sampled = r["val_loss"];
  EXPECT_GT(std::abs(sampled - trainer), 1e-6);
}

}  // namespace
}  // namespace escale
