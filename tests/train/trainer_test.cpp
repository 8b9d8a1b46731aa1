// The training loop end to end on a tiny model: learning, determinism, bit-exact resume, the
// fault policy, and refusals of bad input.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "data/token_shards.h"
#include "io/hf_model.h"
#include "io/optimizer_moments.h"
#include "io/safetensors.h"
#include "model/init.h"
#include "model/layout.h"
#include "support/test_support.h"
#include "train/checkpoint_store.h"

namespace escale {
namespace {
namespace fs = std::filesystem;

ModelConfig TinyConfig(bool moe) {
  ModelConfig c;
  c.arch = moe ? Architecture::kQwen2Moe : Architecture::kLlama;
  c.vocab_size = 64;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.qkv_bias = moe;
  if (moe) {
    c.moe.num_experts = 4;
    c.moe.top_k = 2;
    c.moe.expert_intermediate = 24;
  }
  return c;
}

// A learnable stream: a repeating pattern with some noise, so the loss must fall.
std::shared_ptr<std::vector<uint16_t>> PatternTokens(int n, uint64_t salt) {
  auto v = std::make_shared<std::vector<uint16_t>>(n);
  uint64_t x = salt * 2654435761u + 1;
  for (int i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    (*v)[i] = static_cast<uint16_t>((x >> 60) == 0 ? (x >> 33) % 64 : (i * 7) % 61);
  }
  return v;
}

TrainerInputs Inputs(bool moe) {
  TrainerInputs in;
  in.config = TinyConfig(moe);
  in.init = RandomInit(in.config, {.seed = 5});
  auto tr = PatternTokens(6000, 1), va = PatternTokens(600, 2);
  in.train = {{tr->data(), static_cast<int64_t>(tr->size()), 2, tr}};
  in.val = {{va->data(), static_cast<int64_t>(va->size()), 2, va}};
  return in;
}

TrainOptions Options(const std::string& out, int64_t steps) {
  TrainOptions o;
  o.model_dir = "(in memory)";
  o.data = "(in memory)";
  o.out = out;
  o.seq_len = 16;
  o.micro_batch = 4;
  o.global_batch_tokens = 128;  // 2 micro-batches per step
  o.steps = steps;
  o.lr = 1e-2;
  o.min_lr = 1e-3;
  o.warmup = 3;
  o.eval_every = 5;
  o.eval_batches = 2;
  o.save_every = 10;
  o.keep_last = 0;
  return o;
}

// Metrics without the wall-clock fields.
std::vector<nlohmann::json> Metrics(const std::string& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    for (const char* k : {"tokens_per_s", "step_s", "mfu"}) j.erase(k);
    out.push_back(j);
  }
  return out;
}

std::string Weights(const std::string& ckpt) { return testing::ReadFile(ckpt + "/model/model.safetensors"); }

TEST(Trainer, LearnsAndIsDeterministic) {
  testing::TempDir a, b;
  auto ra = RunTraining(Options(a.path(), 20), Inputs(false));
  ASSERT_TRUE(ra.ok()) << ra.status().message();
  EXPECT_LT(ra->last_val_loss, ra->first_val_loss * 0.8);
  auto rb = RunTraining(Options(b.path(), 20), Inputs(false));
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(Metrics(a.path()), Metrics(b.path()));
  EXPECT_EQ(Weights(ra->last_checkpoint), Weights(rb->last_checkpoint));
  EXPECT_EQ(Metrics(a.path()).size(), 20u + 5u);  // 20 steps + evals at 0, 5, 10, 15, 20
}

TEST(Trainer, ResumeIsBitExactDenseAndMoe) {
  for (bool moe : {false, true}) {
    testing::TempDir straight, resumed;
    auto full = RunTraining(Options(straight.path(), 20), Inputs(moe));
    ASSERT_TRUE(full.ok()) << full.status().message();
    // Same options, but the run "died" right after its step-10 checkpoint.
    auto first = RunTraining(Options(resumed.path(), 20), Inputs(moe));
    ASSERT_TRUE(first.ok());
    const std::string cdir = CheckpointsDir(resumed.path());
    fs::remove_all(cdir + "/" + CheckpointName(20));
    testing::WriteFile(cdir + "/latest", CheckpointName(20) + "\n");  // stale pointer: must fall back
    TrainOptions o = Options(resumed.path(), 20);
    EXPECT_FALSE(RunTraining(o, Inputs(moe)).ok());  // checkpoints exist but no --resume
    o.resume = true;
    auto second = RunTraining(o, Inputs(moe));
    ASSERT_TRUE(second.ok()) << second.status().message();
    EXPECT_EQ(second->start_step, 10);
    EXPECT_EQ(Metrics(straight.path()), Metrics(resumed.path())) << (moe ? "moe" : "dense");
    EXPECT_EQ(Weights(full->last_checkpoint), Weights(second->last_checkpoint));
    EXPECT_EQ(testing::ReadFile(full->last_checkpoint + "/optimizer.safetensors"),
              testing::ReadFile(second->last_checkpoint + "/optimizer.safetensors"));
  }
}

// Two sources mixed 3:1, each with validation shards.
TrainerInputs BlendInputs() {
  TrainerInputs in;
  in.config = TinyConfig(false);
  in.init = RandomInit(in.config, {.seed = 5});
  auto a = PatternTokens(6000, 1), av = PatternTokens(600, 2), b = PatternTokens(2000, 3),
       bv = PatternTokens(400, 4);
  auto arr = [](const std::shared_ptr<std::vector<uint16_t>>& v) {
    return TokenArray{v->data(), static_cast<int64_t>(v->size()), 2, v};
  };
  in.blend = {{"a", 0.75, {arr(a)}, {arr(av)}}, {"b", 0.25, {arr(b)}, {arr(bv)}}};
  return in;
}

TrainOptions BlendOptions(const std::string& out, int64_t steps) {
  TrainOptions o = Options(out, steps);
  o.data.clear();
  o.data_blend = "a=3:unused b=1:unused";
  return o;
}

TEST(Trainer, BlendReportsProportionsAndResumesBitExact) {
  testing::TempDir straight, resumed;
  auto full = RunTraining(BlendOptions(straight.path(), 20), BlendInputs());
  ASSERT_TRUE(full.ok()) << full.status().message();
  // 20 steps x 2 micro-batches x 4 windows = 160 windows; a gets 3/4 of them, to within one window.
  const double windows = 20 * 2 * 4, seq = 16;
  ASSERT_EQ(full->sources.size(), 2u);
  EXPECT_NEAR(full->sources[0].tokens, 0.75 * windows * seq, seq);
  EXPECT_NEAR(full->sources[1].tokens, 0.25 * windows * seq, seq);
  EXPECT_DOUBLE_EQ(full->sources[0].tokens + full->sources[1].tokens, windows * seq);
  EXPECT_DOUBLE_EQ(full->sources[1].epochs, full->sources[1].tokens / seq / ((2000 - 1) / 16));
  const auto metrics = Metrics(straight.path());
  int evals = 0;
  for (const auto& m : metrics) {
    if (m.contains("event")) {
      // The blended validation loss is the weight-averaged per-source loss.
      const double la = m["val_loss_by_source"]["a"], lb = m["val_loss_by_source"]["b"];
      EXPECT_NEAR(m["val_loss"].get<double>(), 0.75 * la + 0.25 * lb, 1e-12);
      ++evals;
    } else {
      EXPECT_DOUBLE_EQ(
          m["data"]["a"]["tokens"].get<double>() + m["data"]["b"]["tokens"].get<double>(),
          m["tokens"].get<double>());
    }
  }
  EXPECT_EQ(evals, 5);
  const nlohmann::json& last_step = metrics[metrics.size() - 2];  // the final evaluation comes last
  EXPECT_DOUBLE_EQ(last_step.at("data").at("a").at("tokens").get<double>(),
                   full->sources[0].tokens);

  // Died after the step-10 checkpoint; resumed: identical to the unbroken run.
  ASSERT_TRUE(RunTraining(BlendOptions(resumed.path(), 20), BlendInputs()).ok());
  fs::remove_all(CheckpointsDir(resumed.path()) + "/" + CheckpointName(20));
  testing::WriteFile(CheckpointsDir(resumed.path()) + "/latest", CheckpointName(10) + "\n");
  TrainOptions o = BlendOptions(resumed.path(), 20);
  o.resume = true;
  o.data_blend = "a=1:unused b=1:unused";  // other weights: refused
  auto refused = RunTraining(o, BlendInputs());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("differ"), std::string::npos)
      << refused.status().message();
  o.data_blend =
      "a=0.75:elsewhere b=0.25:moved";  // same names and shares: the directories may move
  auto second = RunTraining(o, BlendInputs());
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(second->start_step, 10);
  EXPECT_EQ(Metrics(straight.path()), Metrics(resumed.path()));
  EXPECT_EQ(Weights(full->last_checkpoint), Weights(second->last_checkpoint));
  EXPECT_DOUBLE_EQ(second->sources[0].tokens, full->sources[0].tokens);
}

TEST(Trainer, DamagedStateFileIsAFormatErrorNotACrash) {
  testing::TempDir run;
  ASSERT_TRUE(RunTraining(Options(run.path(), 10), Inputs(false)).ok());
  const std::string state = CheckpointsDir(run.path()) + "/" + CheckpointName(10) + "/trainer_state.json";
  std::string bad = "{\"step\": \"ten\"}";
  bad.resize(testing::ReadFile(state).size(), ' ');  // same size: the manifest still verifies
  testing::WriteFile(state, bad);
  TrainOptions o = Options(run.path(), 20);
  o.resume = true;
  auto r = RunTraining(o, Inputs(false));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kFormat);
  EXPECT_NE(r.status().message().find("trainer_state.json"), std::string::npos) << r.status().message();
}

TEST(Trainer, InjectedNanAndSpikeAreSkippedLoggedAndSurvived) {
  testing::TempDir run;
  TrainOptions o = Options(run.path(), 40);
  o.global_batch_tokens = 0;
  o.inject_nan_steps = "3";
  o.inject_spike_steps = "30";
  auto r = RunTraining(o, Inputs(true));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->skipped_steps, 2);
  EXPECT_EQ(r->steps_done, 40);
  int nan = 0, spike = 0;
  for (const auto& m : Metrics(run.path())) {
    if (!m.contains("skipped")) continue;
    if (m["skipped"] == "non-finite gradient") nan += m["step"] == 4;  // 0-based step 3 is logged as 4
    if (m["skipped"] == "loss spike") spike += m["step"] == 31;
  }
  EXPECT_EQ(nan, 1);
  EXPECT_EQ(spike, 1);
}

TEST(Trainer, TooManySkipsStopNamingTheLastGoodCheckpoint) {
  testing::TempDir run;
  TrainOptions o = Options(run.path(), 40);
  o.inject_nan_steps = "12,13,14,15,16";
  o.max_skips = 5;
  auto r = RunTraining(o, Inputs(false));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("5 steps in a row were skipped"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(CheckpointName(10)), std::string::npos) << r.status().message();
}

// Moments as a grown model's directory carries them (scale-up/out --carry-moments): small values
// for every parameter, 7 updates behind them, except a fresh final norm.
MomentMap CarriedMoments(const ModelConfig& c) {
  MomentMap mm;
  int k = 0;
  for (const TensorSpec& s : CanonicalTensors(c)) {
    TensorMoments t;
    const bool fresh = s.name == "norm";
    t.steps = fresh ? 0 : 7;
    for (int64_t i = 0; i < ShapeNumel(s.shape); ++i, ++k) {
      t.m.push_back(fresh ? 0.0f : 1e-3f * static_cast<float>(std::sin(0.37 * k)));
      t.v.push_back(
          fresh ? 0.0f
                : 1e-6f * (1.0f + static_cast<float>(std::cos(0.11 * k) * std::cos(0.11 * k))));
    }
    mm.emplace(s.name, std::move(t));
  }
  return mm;
}

std::map<std::string, std::vector<float>> OptimizerState(const std::string& ckpt) {
  auto f = SafetensorsFile::Open(ckpt + "/optimizer.safetensors");
  EXPECT_TRUE(f.ok());
  std::map<std::string, std::vector<float>> out;
  for (const SafetensorsEntry& e : f->entries()) {
    Tensor t = f->Get(e.name).value();
    const float* p = reinterpret_cast<const float*>(t.bytes());
    out[e.name].assign(p, p + t.numel());
  }
  return out;
}

TEST(Trainer, CarriedMomentsAreMixedInTheirCountsContinueAndResumeIsBitExact) {
  testing::TempDir model, carried, fresh, straight, resumed;
  const MomentMap mm = CarriedMoments(TinyConfig(false));
  ASSERT_TRUE(WriteMomentsFile(model.path() + "/" + kMomentsFile, mm).ok());
  TrainOptions oc = Options(carried.path(), 1);
  oc.model_dir = model.path();
  oc.carry_moments = true;
  auto a = RunTraining(oc, Inputs(false));
  ASSERT_TRUE(a.ok()) << a.status().message();
  auto b = RunTraining(Options(fresh.path(), 1), Inputs(false));
  ASSERT_TRUE(b.ok());
  // The same weights and batch give the same gradient, so the carried run's moments differ from
  // the fresh run's by beta * the carried ones.
  const auto sa = OptimizerState(a->last_checkpoint), sb = OptimizerState(b->last_checkpoint);
  for (const auto& [name, t] : mm) {
    for (int which = 0; which < 2; ++which) {
      const std::string key = (which == 0 ? "m." : "v.") + name;
      const std::vector<float>& x = sa.at(key);
      const std::vector<float>& y = sb.at(key);
      const std::vector<float>& z = which == 0 ? t.m : t.v;
      const double beta = which == 0 ? oc.beta1 : oc.beta2;
      double worst = 0, scale = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        worst = std::max(worst, std::abs((static_cast<double>(x[i]) - y[i]) - beta * z[i]));
        scale = std::max(
            {scale, std::abs(static_cast<double>(y[i])), std::abs(static_cast<double>(z[i]))});
      }
      EXPECT_LT(worst, 1e-6 * scale) << key;
    }
  }
  const nlohmann::json state =
      nlohmann::json::parse(testing::ReadFile(a->last_checkpoint + "/trainer_state.json"));
  EXPECT_EQ(state["moment_steps_at_start"]["embed"], 7);
  EXPECT_EQ(state["moment_steps_at_start"]["norm"], 0);
  // Chained growth reads the counts on: 1 update of this run + 7 carried.
  auto again = ReadCheckpointMoments(a->last_checkpoint + "/model");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->at("embed").steps, 8);
  EXPECT_EQ(again->at("norm").steps, 1);
  EXPECT_FALSE(ReadCheckpointMoments(model.path()).ok());  // not a checkpoint's model

  // Killed after its step-10 checkpoint and resumed: the same bits as the unbroken run.
  TrainOptions o1 = Options(straight.path(), 20);
  o1.model_dir = model.path();
  o1.carry_moments = true;
  auto full = RunTraining(o1, Inputs(false));
  ASSERT_TRUE(full.ok()) << full.status().message();
  TrainOptions o2 = o1;
  o2.out = resumed.path();
  ASSERT_TRUE(RunTraining(o2, Inputs(false)).ok());
  fs::remove_all(CheckpointsDir(resumed.path()) + "/" + CheckpointName(20));
  testing::WriteFile(CheckpointsDir(resumed.path()) + "/latest", CheckpointName(10) + "\n");
  o2.resume = true;
  auto second = RunTraining(o2, Inputs(false));
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(Weights(full->last_checkpoint), Weights(second->last_checkpoint));
  EXPECT_EQ(testing::ReadFile(full->last_checkpoint + "/optimizer.safetensors"),
            testing::ReadFile(second->last_checkpoint + "/optimizer.safetensors"));
}

TEST(Trainer, CarriedMomentsOfAnotherModelOrNoneAreRefused) {
  testing::TempDir model, out;
  TrainOptions o = Options(out.path(), 1);
  o.model_dir = model.path();
  o.carry_moments = true;
  auto r = RunTraining(o, Inputs(false));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--carry-moments"), std::string::npos)
      << r.status().message();
  MomentMap mm = CarriedMoments(TinyConfig(false));
  mm.at("embed").m.pop_back();
  mm.at("embed").v.pop_back();
  ASSERT_TRUE(WriteMomentsFile(model.path() + "/" + kMomentsFile, mm).ok());
  r = RunTraining(o, Inputs(false));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("another model"), std::string::npos) << r.status().message();
}

TEST(Trainer, RefusesMoeOptionsOnDenseAndTooLittleData) {
  testing::TempDir run;
  TrainOptions o = Options(run.path(), 5);
  o.capacity_factor = 2.0;
  auto r = RunTraining(o, Inputs(false));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--scale-out"), std::string::npos);
  o = Options(run.path(), 5);
  o.seq_len = 10000;
  o.global_batch_tokens = 0;
  EXPECT_NE(RunTraining(o, Inputs(false)).status().message().find("no window"), std::string::npos);
}

}  // namespace
}  // namespace escale
