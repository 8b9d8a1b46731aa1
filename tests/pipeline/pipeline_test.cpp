// The pipeline: recipe errors (one line each), the stage plan a recipe gives, and a whole tiny run
// through the real commands: every stage done, the summary and report written, a failed stage
// stopping the run with finished stages kept, and a rerun resuming instead of starting over.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "io/hf_model.h"
#include "model/init.h"
#include "pipeline/recipe.h"
#include "pipeline/runner.h"
#include "support/test_support.h"
#include "tokenizer/byte_level.h"

namespace escale::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

std::string Recipe(const std::string& out, const std::string& extra) {
  return "out = \"" + out +
         "\"\nseed = 2\n[data]\ninputs = [\"corpus.jsonl\"]\n[prepare]\npreset = \"demo-small\"\n" +
         "[scale_out]\nexperts = 4\ntop_k = 2\n" + extra;
}

TEST(Recipe, ErrorsAreOneLineNamingTheKey) {
  TempDir tmp;
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"seed = 1\n[data]\ninputs=[\"a\"]\n[prepare]\npreset=\"x\"\n[scale_out]\nexperts=2\n",
       "'out'"},
      {Recipe("o", "[scale_out.train]\nsteps = 1\n[evaluation]\nx = 1\n"),
       "unknown key 'evaluation'"},
      {"out = \"o\"\n[data]\ninputs = 3\n[prepare]\npreset=\"x\"\n[scale_out]\nexperts=2\n",
       "'inputs' must be a list"},
      {"out = "
       "\"o\"\n[data]\ninputs=[\"a\"]\n[prepare]\npreset=\"x\"\nmodel=\"m\"\n[scale_out]\nexperts="
       "2\n",
       "exactly one of 'model'"},
      {"out = \"o\"\n[data]\ninputs=[\"a\"]\n[prepare]\npreset=\"x\"\n", "nothing to grow"},
      {"out = \"o\"\n[data]\ninputs=[\"a\"]\nval_fraction = "
       "0\n[prepare]\npreset=\"x\"\n[scale_up]\nlayers=2\n",
       "val_fraction"},
      {"out = \"o\"\n[data\n", "recipe.toml:2"},
      {Recipe("o", "[baseline]\ncompute = -1\n"), "'baseline.compute' must be a positive"},
      {Recipe("o", "[baseline]\ndecay_branches = [1.5]\n[baseline.train]\nschedule = \"wsd\"\n"),
       "fractions of the baseline's steps in (0, 1)"},
      {Recipe("o", "[baseline]\ndecay_branches = [0.5]\n"), "decay branches need schedule"},
      {Recipe("o", "[baseline]\nbudget = 2\n"), "unknown key 'baseline.budget'"},
  };
  for (const auto& c : cases) {
    testing::WriteFile(tmp / "recipe.toml", c.text);
    auto r = ParseRecipe(tmp / "recipe.toml");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  }
}

// Mistakes in any stage's table are found before the first stage runs (here: in --dry-run, which
// runs nothing), naming the table and key, instead of after the preparation stage.
TEST(Recipe, EveryStageIsCheckedBeforeTheFirstRuns) {
  TempDir tmp;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {Recipe(tmp / "o", "bogus_option = 3\n"), "recipe [scale_out]: unknown key 'bogus_option'"},
      {Recipe(tmp / "o", "[scale_out.train]\nsteps = \"ten\"\n"),
       "option 'steps' must be an integer"},
      {Recipe(tmp / "o", "[scale_out.train]\nsteps = 5\nlr = 1e300\n"),
       "[scale_out.train]: --lr must be"},
      {Recipe(tmp / "o", "[scale_out.train]\nlr = 1e-3\n"), "[scale_out.train]: give --steps"},
      {Recipe(tmp / "o", "[prepare.train]\nsteps = 5\nwarmpu = 3\n"), "unknown option 'warmpu'"},
      {Recipe(tmp / "o", "[scale_up]\nhidden = 64\nwidth = 2\n[scale_up.train]\nsteps = 1\n"),
       "recipe [scale_up]: unknown key 'width'"},
      {Recipe(tmp / "o", "[baseline.train]\nthreads = 100000\n"),
       "[baseline.train]: --threads must be"},
  };
  for (const auto& [text, expect] : cases) {
    testing::WriteFile(tmp / "r.toml", text + "[prepare.train]\nsteps = 2\n");
    // A duplicate [prepare.train] in the case itself replaces this one: TOML refuses duplicates,
    // so those cases carry their own and the suffix goes.
    if (text.find("[prepare.train]") != std::string::npos) testing::WriteFile(tmp / "r.toml", text);
    auto r = testing::RunEscale("pipeline " + (tmp / "r.toml") + " --dry-run");
    EXPECT_NE(r.exit_code, 0) << text;
    EXPECT_NE(r.err.find(expect), std::string::npos) << text << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(tmp / "o")) << "a failed check must not create the run directory";
  }
  // The same recipe without the mistakes passes the check.
  testing::WriteFile(
      tmp / "r.toml",
      Recipe(tmp / "o", "[scale_out.train]\nsteps = 2\n[prepare.train]\nsteps = 2\n"));
  auto ok = testing::RunEscale("pipeline " + (tmp / "r.toml") + " --dry-run");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST(Recipe, PlanMapsTablesToCommands) {
  TempDir tmp;
  testing::WriteFile(tmp / "recipe.toml",
                     Recipe("run",
                            "shared_experts = true\nrouter_init_std = 0.01\n"
                            "[train]\nseq_len = 64\n[scale_out.train]\nsteps = 3\n"
                            "[scale_up]\nmethod = \"aki-pro\"\nlayers = 8\n[baseline]\n"
                            "[eval]\nverify = false\n"));
  auto r = ParseRecipe(tmp / "recipe.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  std::vector<std::string> names;
  const auto stages = PlanStages(*r);
  for (const auto& s : stages) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"tokenizer", "shards", "init", "prepare", "scale_up",
                                             "scale_out", "moe", "baseline", "eval_prepare",
                                             "eval_moe", "eval_baseline"}));
  auto find = [&](const std::string& n) {
    return *std::find_if(stages.begin(), stages.end(), [&](const Stage& s) { return s.name == n; });
  };
  const Stage so = find("scale_out");
  const std::string joined = [&] {
    std::string j;
    for (const auto& a : so.args) j += a + " ";
    return j;
  }();
  // Underscores become dashes, true booleans bare flags, the scale-out source the newest checkpoint
  // of the stage before (scale_up without training: its output).
  EXPECT_NE(joined.find("scale-out run/grown run/upcycled "), std::string::npos) << joined;
  EXPECT_NE(joined.find("--shared-experts "), std::string::npos) << joined;
  EXPECT_NE(joined.find("--router-init-std 0.01 "), std::string::npos) << joined;
  EXPECT_NE(joined.find("--top-k 2 "), std::string::npos) << joined;
  // The stage's train TOML carries the shared [train] keys under its own.
  const Stage moe = find("moe");
  EXPECT_NE(moe.train_config.find("seq_len = 64"), std::string::npos) << moe.train_config;
  EXPECT_NE(moe.train_config.find("steps = 3"), std::string::npos) << moe.train_config;
  const Stage ev = find("eval_moe");
  EXPECT_EQ(ev.args.back(), "64");  // --max-length: the stage's sequence length
  EXPECT_EQ(find("baseline").args[4], "run/upcycled/config.json");
}

// carry_moments = true in [scale_up] or [scale_out]: the surgery maps the moments and the training
// stage after it starts from them; a stage without it keeps fresh moments.
TEST(Recipe, CarriedMomentsReachTheTrainingStageAfterTheGrowth) {
  TempDir tmp;
  testing::WriteFile(
      tmp / "recipe.toml",
      Recipe("run",
             "[scale_out.train]\nsteps = 3\n[prepare.train]\nsteps = 3\n"
             "[scale_up]\nlayers = 8\ncarry_moments = true\n[scale_up.train]\nsteps = 3\n"));
  auto r = ParseRecipe(tmp / "recipe.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto stages = PlanStages(*r);
  auto has = [&](const std::string& stage) {
    const auto it =
        std::find_if(stages.begin(), stages.end(), [&](const Stage& s) { return s.name == stage; });
    EXPECT_NE(it, stages.end()) << stage;
    return it != stages.end() &&
           std::count(it->args.begin(), it->args.end(), "--carry-moments") == 1;
  };
  EXPECT_TRUE(has("scale_up"));
  EXPECT_TRUE(has("up"));
  EXPECT_FALSE(has("scale_out"));
  EXPECT_FALSE(has("moe"));
  EXPECT_FALSE(has("prepare"));
}

TEST(Recipe, DecayBranchesStartWhereTheirOwnDecayWouldHave) {
  // 850 steps, a branch ending at a quarter: 213 steps whose last 20% (43) decay, so it branches
  // off the stable run at 170; at a half: 425 steps from 340.
  EXPECT_EQ(DecayBranch(850, 0.25, 0.2, 30).total, 213);
  EXPECT_EQ(DecayBranch(850, 0.25, 0.2, 30).at, 170);
  EXPECT_EQ(DecayBranch(850, 0.5, 0.2, 30).total, 425);
  EXPECT_EQ(DecayBranch(850, 0.5, 0.2, 30).at, 340);
  // Never before the warmup ends, never at step 0, always at least one decay step.
  EXPECT_EQ(DecayBranch(100, 0.3, 0.9, 20).at, 20);
  EXPECT_EQ(DecayBranch(4, 0.5, 0.25, 1).total, 2);
  EXPECT_EQ(DecayBranch(4, 0.5, 0.25, 1).at, 1);
  EXPECT_EQ(DecayBranch(1000, 0.5, 0.0, 10).at, 499);
}

TEST(Recipe, OverridesServeSweepsAndSeedsWithoutCopies) {
  TempDir tmp;
  testing::WriteFile(
      tmp / "recipe.toml",
      Recipe("run", "[scale_out.train]\nsteps = 3\nlr = 1e-3\n[eval]\nverify = false\n"));
  auto r =
      ParseRecipe(tmp / "recipe.toml",
                  {"scale_out.train.lr=4e-4", "seed=7", "scale_out.router_init_std=0.1",
                   "scale_out.format=\"qwen2-moe\"", "baseline.train.steps=5", "out=elsewhere"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->seed, 7u);
  EXPECT_EQ(r->out, "elsewhere");
  EXPECT_TRUE(r->baseline);  // a table created by an override
  const auto stages = PlanStages(*r);
  auto find = [&](const std::string& n) {
    return *std::find_if(stages.begin(), stages.end(), [&](const Stage& s) { return s.name == n; });
  };
  EXPECT_NE(find("moe").train_config.find("lr = 0.0004"), std::string::npos)
      << find("moe").train_config;
  std::string so;
  for (const auto& a : find("scale_out").args) so += a + " ";
  EXPECT_NE(so.find("--router-init-std 0.1 "), std::string::npos) << so;
  EXPECT_NE(so.find("--format qwen2-moe "), std::string::npos) << so;
  EXPECT_NE(so.find("--seed 7"), std::string::npos) << so;
  // Overrides are checked like the file: unknown keys and non-tables are refused by name.
  for (const auto& [bad, needle] :
       std::vector<std::pair<std::string, std::string>>{{"nonsense=1", "unknown key 'nonsense'"},
                                                        {"seed.x=1", "'seed' is not a table"},
                                                        {"noequals", "give KEY=VALUE"}}) {
    auto b = ParseRecipe(tmp / "recipe.toml", {bad});
    ASSERT_FALSE(b.ok()) << bad;
    EXPECT_NE(b.status().message().find(needle), std::string::npos) << b.status().message();
  }
}

// A tokenizer of 256 byte tokens plus <|endoftext|>, a tiny Qwen2 model of that vocabulary, and a
// corpus of short documents.
void MakeInputs(const TempDir& tmp) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b)
    vocab[tok::BytesToByteLevel(std::string(1, static_cast<char>(b)))] = b;
  vocab["<|endoftext|>"] = 256;
  json j = {
      {"version", "1.0"},
      {"added_tokens", json::array({{{"id", 256},
                                     {"content", "<|endoftext|>"},
                                     {"single_word", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  fs::create_directories(tmp / "model");
  testing::WriteFile(tmp / "model/tokenizer.json", j.dump());
  ModelConfig c;
  c.arch = Architecture::kQwen2;
  c.vocab_size = 257;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 8;
  c.qkv_bias = true;
  WriteOptions wo;
  wo.overwrite = true;
  wo.copy_tokenizer_from = tmp / "model";
  wo.progress = false;
  ASSERT_TRUE(WriteHfModel(tmp / "model", c, RandomInit(c, {}), wo).ok());
  testing::WriteFile(tmp / "model/tokenizer.json", j.dump());
  std::mt19937 rng(1);
  const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"};
  std::string corpus;
  for (int d = 0; d < 300; ++d) {
    std::string text;
    for (int w = 0; w < 12; ++w) text += std::string(w ? " " : "") + words[rng() % 10];
    corpus += json{{"text", text}}.dump() + "\n";
  }
  testing::WriteFile(tmp / "corpus.jsonl", corpus);
}

std::string TinyRecipe(const TempDir& tmp, int top_k, const std::string& moe_extra = "") {
  return "out = \"" + (tmp / "run") + "\"\nseed = 5\n[data]\ninputs = [\"" +
         (tmp / "corpus.jsonl") + "\"]\ntokenizer = \"" + (tmp / "model/tokenizer.json") +
         "\"\nval_fraction = 0.1\n" +
         "[train]\nseq_len = 16\nmicro_batch = 2\neval_every = 2\neval_batches = 2\nsave_every = "
         "2\nthreads = 1\n"
         "[prepare]\nmodel = \"" +
         (tmp / "model") + "\"\n[prepare.train]\nsteps = 4\nwarmup = 1\nlr = 1e-3\n" +
         "[scale_out]\nexperts = 4\ncarry_moments = true\ntop_k = " + std::to_string(top_k) +
         "\n[scale_out.train]\nsteps = 3\nwarmup = 1\n" + moe_extra +
         "[baseline]\ndecay_branches = [0.5]\n[baseline.train]\nwarmup = 1\nschedule = \"wsd\"\n"
         "wsd_decay_fraction = 0.25\n";
}

TEST(Pipeline, RunsStopsOnAFailedStageAndResumes) {
  TempDir tmp;
  MakeInputs(tmp);
  // top-k 5 of 4 experts: scale_out fails; the stages before it are done and kept.
  testing::WriteFile(tmp / "r.toml", TinyRecipe(tmp, 5));
  auto bad = testing::RunEscale("pipeline " + (tmp / "r.toml"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("stage 'scale_out' failed"), std::string::npos) << bad.err;
  ASSERT_TRUE(fs::exists(tmp / "run/stages/prepare.done"));
  EXPECT_FALSE(fs::exists(tmp / "run/stages/scale_out.done"));
  const auto prepared = fs::last_write_time(tmp / "run/stages/prepare.done");

  testing::WriteFile(tmp / "r.toml", TinyRecipe(tmp, 2));
  auto ok = testing::RunEscale("pipeline " + (tmp / "r.toml"));
  ASSERT_EQ(ok.exit_code, 0) << ok.err << ok.out;
  EXPECT_EQ(fs::last_write_time(tmp / "run/stages/prepare.done"), prepared);  // not run again
  EXPECT_NE(ok.out.find("== prepare: done"), std::string::npos);
  // Every training stage is measured against the one peak of the run, kept in machine.json and
  // passed on the command line (not recorded in the marker: the stage is the same at any peak).
  const json machine = json::parse(testing::ReadFile(tmp / "run/machine.json"));
  ASSERT_TRUE(machine["sgemm_gflops"].is_object()) << machine.dump();
  ASSERT_EQ(machine["sgemm_gflops"].size(), 1u) << machine.dump();
  const double peak = machine["sgemm_gflops"].begin()->get<double>();
  EXPECT_GT(peak, 0.0);
  EXPECT_NE(ok.out.find("--peak-gflops"), std::string::npos) << ok.out;
  EXPECT_EQ(testing::ReadFile(tmp / "run/stages/moe.done").find("--peak-gflops"),
            std::string::npos);
  const json summary = json::parse(testing::ReadFile(tmp / "run/pipeline.json"));
  ASSERT_EQ(summary["stages"].size(), 4u);  // prepare, moe, baseline, its decay branch
  const json& prep = summary["stages"][0];
  const json& moe = summary["stages"][1];
  const json& base = summary["stages"][2];
  const json& branch = summary["stages"][3];
  EXPECT_EQ(prep["tokens"], 4 * 32);
  EXPECT_EQ(moe["tokens"], 3 * 32);
  // The baseline gets the compute of the stages before it (equal FLOPs, not equal tokens), rounded
  // up to whole steps of 32 tokens.
  const double es_flops = prep["flops"].get<double>() + moe["flops"].get<double>();
  EXPECT_GE(base["flops"].get<double>(), es_flops);
  EXPECT_LT(base["flops"].get<double>(), es_flops + 32 * base["flops_per_token"].get<double>());
  // The branch ends at half the baseline's steps and includes the stable steps before it.
  const int64_t base_steps = base["tokens"].get<int64_t>() / 32;
  EXPECT_EQ(branch["stage"], "baseline_decay_50");
  EXPECT_EQ(branch["tokens"].get<int64_t>(),
            std::max<int64_t>(2, std::llround(0.5 * base_steps)) * 32);
  EXPECT_LT(moe["active_parameters"].get<int64_t>(), moe["parameters"].get<int64_t>());
  // The cost block: both savings figures are there (a number, or null with the reason beside).
  const json& cost = summary["cost"];
  ASSERT_FALSE(cost.contains("error")) << cost.dump();
  for (const char* k : {"compute_savings_with_preparation", "compute_savings_without_preparation",
                        "time_savings_with_preparation", "time_savings_without_preparation"})
    EXPECT_TRUE(cost.contains(k) && (cost[k].is_number() || cost[k].is_null())) << k;
  const std::string reach = cost["efficientscale_to_target"];
  EXPECT_TRUE(reach.starts_with("reached")) << reach;
  EXPECT_DOUBLE_EQ(cost["target_loss"].get<double>(),
                   std::max(cost["baseline_final_val_loss"].get<double>(),
                            cost["efficientscale_final_val_loss"].get<double>()));
  EXPECT_TRUE(cost["compute_savings_with_preparation"].is_number());
  EXPECT_DOUBLE_EQ(cost["compute_savings_with_preparation"].get<double>(),
                   cost["baseline_flops_to_target"].get<double>() /
                       cost["efficientscale_flops_to_target"].get<double>());
  EXPECT_DOUBLE_EQ(cost["efficientscale_flops"].get<double>(), es_flops);
  EXPECT_DOUBLE_EQ(cost["preparation_flops"].get<double>(), prep["flops"].get<double>());
  const json& env = summary["curves"]["baseline_envelope"];
  ASSERT_FALSE(env.empty());
  for (size_t i = 1; i < env.size(); ++i) {
    EXPECT_GT(env[i]["flops"].get<double>(), env[i - 1]["flops"].get<double>());
    EXPECT_LT(env[i]["loss"].get<double>(), env[i - 1]["loss"].get<double>());
  }
  EXPECT_DOUBLE_EQ(cost["baseline_final_val_loss"].get<double>(), env.back()["loss"].get<double>());
  EXPECT_TRUE(fs::exists(tmp / "run/report.html"));
  // carry_moments: the upcycled model holds the prepared model's mapped moments, and the MoE stage
  // continued their count (4 updates of the small model behind every copied tensor).
  EXPECT_TRUE(fs::exists(tmp / "run/upcycled/moments/moments.safetensors"));
  std::string moe_ckpt = testing::ReadFile(tmp / "run/moe/checkpoints/latest");
  moe_ckpt.erase(moe_ckpt.find_last_not_of("\n ") + 1);
  const json moe_state = json::parse(
      testing::ReadFile(tmp / ("run/moe/checkpoints/" + moe_ckpt + "/trainer_state.json")));
  EXPECT_EQ(moe_state["moment_steps_at_start"]["embed"], 4) << moe_state.dump();
  EXPECT_EQ(moe_state["moment_steps_at_start"]["layers.0.moe.router"], 0) << moe_state.dump();
  const double moe_loss =
      json::parse(testing::ReadFile(tmp / "run/eval/moe.json"))["shard_perplexity"]["loss"];

  // Interrupted after the MoE training finished but before its marker: the rerun resumes it (no
  // new steps) and evaluates the same weights again.
  fs::remove(tmp / "run/stages/moe.done");
  fs::remove(tmp / "run/stages/eval_moe.done");
  fs::remove(tmp / "run/eval/moe.json");
  auto again = testing::RunEscale("pipeline " + (tmp / "r.toml"));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const json marker = json::parse(testing::ReadFile(tmp / "run/stages/moe.done"));
  EXPECT_NE(marker["command"].get<std::string>().find("--resume"), std::string::npos);
  EXPECT_EQ(json::parse(testing::ReadFile(tmp / "run/eval/moe.json"))["shard_perplexity"]["loss"]
                .get<double>(),
            moe_loss);
  auto dry = testing::RunEscale("pipeline " + (tmp / "r.toml") + " --dry-run");
  ASSERT_EQ(dry.exit_code, 0);
  EXPECT_NE(dry.out.find("eval_baseline done"), std::string::npos) << dry.out;

  // The recipe changes the MoE stage's learning rate: that stage and every one after it rerun
  // from nothing (the baseline's budget depends on the MoE's FLOPs), the ones before it are kept.
  testing::WriteFile(tmp / "r.toml", TinyRecipe(tmp, 2, "lr = 2e-3\n"));
  dry = testing::RunEscale("pipeline " + (tmp / "r.toml") + " --dry-run");
  ASSERT_EQ(dry.exit_code, 0);
  auto state = [&](const std::string& stage) {  // the plan's second column for STAGE
    std::istringstream lines(dry.out);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream words(line);
      std::string name, st;
      words >> name >> st;
      if (name == stage) return st;
    }
    return std::string("(missing)");
  };
  EXPECT_EQ(state("scale_out"), "done") << dry.out;
  EXPECT_EQ(state("moe"), "rerun") << dry.out;
  EXPECT_EQ(state("eval_prepare"), "rerun") << dry.out;
  const auto upcycled = fs::last_write_time(tmp / "run/stages/scale_out.done");
  // Stopped part-way (here: the baseline fails, every step's gradient poisoned), the rerun keeps no
  // result made from the old MoE: every later marker went before the MoE stage ran.
  testing::WriteFile(tmp / "r.toml", TinyRecipe(tmp, 2, "lr = 2e-3\n") +
                                         "inject_nan_steps = \"3\"\nmax_skips = 1\n");
  auto stopped = testing::RunEscale("pipeline " + (tmp / "r.toml"));
  EXPECT_NE(stopped.exit_code, 0);
  EXPECT_NE(stopped.err.find("stage 'baseline' failed"), std::string::npos) << stopped.err;
  EXPECT_TRUE(fs::exists(tmp / "run/stages/moe.done"));
  EXPECT_TRUE(fs::exists(tmp / "run/baseline/checkpoints/latest")) << stopped.out << stopped.err;
  for (const char* later : {"baseline", "baseline_decay_50", "eval_prepare", "eval_moe"})
    EXPECT_FALSE(fs::exists(tmp / ("run/stages/" + std::string(later) + ".done"))) << later;
  EXPECT_FALSE(fs::exists(tmp / "run/eval/moe.json"));
  testing::WriteFile(tmp / "r.toml", TinyRecipe(tmp, 2, "lr = 2e-3\n"));
  auto changed = testing::RunEscale("pipeline " + (tmp / "r.toml"));
  ASSERT_EQ(changed.exit_code, 0) << changed.err << changed.out;
  EXPECT_NE(changed.out.find("== moe: done"), std::string::npos) << changed.out;
  EXPECT_NE(
      stopped.out.find("== moe: its training options (configs/moe.toml) changed since it ran"),
      std::string::npos)
      << stopped.out;
  // The failed baseline left checkpoints made with other options: it starts over, not resumes.
  EXPECT_NE(changed.out.find("== baseline: its training options (configs/baseline.toml) changed"),
            std::string::npos)
      << changed.out;
  EXPECT_EQ(fs::last_write_time(tmp / "run/stages/prepare.done"), prepared);
  EXPECT_EQ(fs::last_write_time(tmp / "run/stages/scale_out.done"), upcycled);
  const json rerun_marker = json::parse(testing::ReadFile(tmp / "run/stages/moe.done"));
  EXPECT_EQ(rerun_marker["command"].get<std::string>().find("--resume"), std::string::npos)
      << "a changed stage starts over, it does not resume the old run";
  EXPECT_NE(testing::ReadFile(tmp / "run/configs/moe.toml").find("lr = 0.002"), std::string::npos);
  const double new_loss =
      json::parse(testing::ReadFile(tmp / "run/eval/moe.json"))["shard_perplexity"]["loss"];
  EXPECT_NE(new_loss, moe_loss);
  // Run again unchanged: every stage is done.
  auto same = testing::RunEscale("pipeline " + (tmp / "r.toml"));
  ASSERT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(same.out.find("rerunning"), std::string::npos) << same.out;
  for (const char* stage : {"moe", "baseline", "baseline_decay_50", "eval_moe"})
    EXPECT_NE(same.out.find("== " + std::string(stage) + ": done"), std::string::npos) << same.out;
  // A conversion redone (its marker lost) makes everything after it new, too.
  fs::remove(tmp / "run/stages/scale_out.done");
  dry = testing::RunEscale("pipeline " + (tmp / "r.toml") + " --dry-run");
  EXPECT_EQ(state("prepare"), "done") << dry.out;
  EXPECT_EQ(state("moe"), "rerun") << dry.out;
  auto redone = testing::RunEscale("pipeline " + (tmp / "r.toml"));
  ASSERT_EQ(redone.exit_code, 0) << redone.err;
  EXPECT_EQ(redone.out.find("== moe: done"), std::string::npos) << redone.out;
  EXPECT_NE(redone.out.find("== prepare: done"), std::string::npos) << redone.out;
  // A moved run directory is the same run.
  fs::rename(tmp / "run", tmp / "moved");
  auto moved = testing::RunEscale("pipeline " + (tmp / "r.toml") + " --out " + (tmp / "moved"));
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  EXPECT_EQ(moved.out.find("rerunning"), std::string::npos) << moved.out;
  EXPECT_NE(moved.out.find("== eval_baseline: done"), std::string::npos) << moved.out;
}

}  // namespace
}  // namespace escale::pipeline
