// `mpirun -np 2 escale train` against one process with the same global batch: the losses and the
// final weights agree up to fp32 summation order, a killed and resumed two-rank run equals an
// unbroken one bit for bit, and bad setups fail on every rank with one error line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "io/safetensors.h"
#include "support/test_support.h"

namespace escale {
namespace {
using testing::RunEscale;
using testing::RunShell;
using testing::TempDir;
namespace fs = std::filesystem;

TempDir* g_dir = nullptr;  // the suite's shared fixtures (built once)
std::string MpiTrainDir() {
  return g_dir->path();
}

// Open MPI's plugins leave allocations behind at MPI_Finalize and are unloaded before LeakSanitizer
// can name them, so an ASan build's ranks run without leak detection (address errors still abort;
// the one-process trainer tests keep leak checking).
const char* const kMpirun =
    "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
    "OMPI_MCA_rmaps_base_oversubscribe=1 "
    "ASAN_OPTIONS=detect_leaks=0 mpirun";

// A tokenizer, shards (with a validation split) and a tiny dense model, built once.
class MpiTrain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!dist::BuiltWithMpi() || RunShell("command -v mpirun").exit_code != 0) return;
    g_dir = new TempDir();
    const std::string d = g_dir->path();
    const std::string setup =
        "cd " + d +
        " && cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 > "
        "corpus.txt && " +
        ESCALE_BINARY + " -q tokenizer train corpus.txt --vocab-size 300 -o tok.json && " +
        ESCALE_BINARY +
        " -q tokenize --tokenizer tok.json --input corpus.txt --output shards --val-fraction 0 && "
        "cp shards/train_000000.bin shards/val_000000.bin";
    ASSERT_EQ(RunShell(setup).exit_code, 0);
    testing::WriteFile(
        d + "/config.json",
        R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 300,
 "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 256,
 "tie_word_embeddings": false})");
    ASSERT_EQ(RunEscale("init " + d + "/model --config " + d + "/config.json --seed 3").exit_code,
              0);
  }
  static void TearDownTestSuite() {
    delete g_dir;
    g_dir = nullptr;
  }
  void SetUp() override {
    if (!dist::BuiltWithMpi())
      GTEST_SKIP() << "skipped: this escale was built without MPI (configure with -DESCALE_MPI=ON)";
    if (RunShell("command -v mpirun").exit_code != 0)
      GTEST_SKIP() << "skipped: mpirun not found (install openmpi-bin)";
    ASSERT_NE(g_dir, nullptr);
  }
  static std::string Dir() { return g_dir->path(); }
  // `escale train ARGS` under mpirun with `np` ranks (a time limit, so a hang fails the test).
  static testing::CommandResult Mpi(int np, const std::string& args) {
    return RunShell("cd " + Dir() + " && timeout 300 " + kMpirun + " -np " + std::to_string(np) +
                    " " + ESCALE_BINARY + " -q train " + args);
  }
  static testing::CommandResult One(const std::string& args) {
    return RunShell("cd " + Dir() + " && timeout 300 " + ESCALE_BINARY + " -q train " + args);
  }
};

struct Metrics {
  std::vector<double> loss, val_loss;
  std::vector<int64_t> world_size;
  std::vector<int64_t> skipped_steps;
};
Metrics ReadMetrics(const std::string& path) {
  Metrics m;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("event")) {
      m.val_loss.push_back(j.at("val_loss").get<double>());
    } else {
      m.loss.push_back(j.at("loss").get<double>());
      m.world_size.push_back(j.value("world_size", int64_t{1}));
      if (j.contains("skipped")) m.skipped_steps.push_back(j.at("step").get<int64_t>());
    }
  }
  return m;
}

double MaxRelDiff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(1e-30, std::abs(a[i])));
  return worst;
}

std::string LatestCheckpoint(const std::string& run) {
  std::string name = testing::ReadFile(run + "/checkpoints/latest");
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
  return run + "/checkpoints/" + name;
}

// The largest |a - b| over every fp32 tensor of two model.safetensors files.
double MaxWeightDiff(const std::string& a_path, const std::string& b_path) {
  Result<SafetensorsFile> a = SafetensorsFile::Open(a_path);
  Result<SafetensorsFile> b = SafetensorsFile::Open(b_path);
  EXPECT_TRUE(a.ok() && b.ok());
  if (!a.ok() || !b.ok()) return INFINITY;
  double worst = 0;
  EXPECT_EQ(a->entries().size(), b->entries().size());
  for (const auto& e : a->entries()) {
    Result<Tensor> ta = a->Get(e.name);
    Result<Tensor> tb = b->Get(e.name);
    EXPECT_TRUE(ta.ok() && tb.ok()) << e.name;
    if (!ta.ok() || !tb.ok()) return INFINITY;
    EXPECT_EQ(ta->dtype(), DType::kF32);
    EXPECT_EQ(ta->numel(), tb->numel());
    const auto* x = reinterpret_cast<const float*>(ta->bytes());
    const auto* y = reinterpret_cast<const float*>(tb->bytes());
    for (int64_t i = 0; i < ta->numel(); ++i)
      worst = std::max(worst, std::abs(static_cast<double>(x[i]) - y[i]));
  }
  return worst;
}

// One rank and two ranks on the same global batch of 4 micro-batches. Step 2's gradient is
// poisoned with NaN on rank 0 alone: every rank must skip that update, or the weights part.
void ExpectTwoRanksMatchOne(const std::string& model_args, const std::string& label) {
  const std::string args =
      model_args +
      " --data shards --steps 6 --seq-len 32 --micro-batch 4 --global-batch-tokens 512 --lr 3e-3"
      " --warmup 2 --eval-every 3 --eval-batches 5 --save-every 0 --no-mfu --threads 1 "
      "--inject-nan-steps 2";
  const std::string one = label + "_np1", two = label + "_np2";
  auto r1 = RunShell("cd " + MpiTrainDir() + " && " + ESCALE_BINARY + " -q train " + args +
                     " --out " + one);
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  auto r2 = RunShell("cd " + MpiTrainDir() + " && timeout 300 " + kMpirun + " -np 2 " +
                     ESCALE_BINARY + " -q train " + args + " --out " + two);
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_NE(r2.err.find("2 ranks"), std::string::npos) << r2.err;
  const Metrics m1 = ReadMetrics(MpiTrainDir() + "/" + one + "/metrics.jsonl");
  const Metrics m2 = ReadMetrics(MpiTrainDir() + "/" + two + "/metrics.jsonl");
  ASSERT_EQ(m1.loss.size(), 6u);
  ASSERT_EQ(m2.loss.size(), 6u);
  ASSERT_EQ(m1.val_loss.size(), 3u);  // steps 0, 3, 6
  for (int64_t w : m2.world_size) EXPECT_EQ(w, 2);
  EXPECT_EQ(m1.skipped_steps, std::vector<int64_t>{3});
  EXPECT_EQ(m2.skipped_steps, std::vector<int64_t>{3});
  // Training moved the loss, so agreement below is not agreement of two untouched models.
  EXPECT_GT(std::abs(m1.loss.front() - m1.loss.back()), 0.05);
  const double loss_diff = MaxRelDiff(m1.loss, m2.loss),
               val_diff = MaxRelDiff(m1.val_loss, m2.val_loss);
  const double weight_diff =
      MaxWeightDiff(LatestCheckpoint(MpiTrainDir() + "/" + one) + "/model/model.safetensors",
                    LatestCheckpoint(MpiTrainDir() + "/" + two) + "/model/model.safetensors");
  std::printf("%s: max relative loss diff %.3g, validation %.3g, max |weight diff| %.3g\n",
              label.c_str(), loss_diff, val_diff, weight_diff);
  EXPECT_LT(loss_diff, 1e-5);
  EXPECT_LT(val_diff, 1e-5);
  EXPECT_LT(weight_diff, 1e-4);
}

TEST_F(MpiTrain, DenseTwoRanksMatchOneRank) {
  ExpectTwoRanksMatchOne("--model model", "dense");
}

TEST_F(MpiTrain, MoeTwoRanksMatchOneRank) {
  ExpectTwoRanksMatchOne("--init-from model --scale-out 4,2", "moe");
}

// The metrics without their timing fields, one record per line.
std::string StripTiming(const std::string& text) {
  std::string out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    for (const char* key : {"tokens_per_s", "step_s", "mfu", "allreduce_s"}) j.erase(key);
    out += j.dump() + "\n";
  }
  return out;
}

TEST_F(MpiTrain, KilledAndResumedTwoRankRunIsBitExact) {
  const std::string args =
      "--model model --data shards --steps 60 --seq-len 32 --micro-batch 4 --global-batch-tokens "
      "256 --lr 3e-3"
      " --warmup 5 --eval-every 10 --eval-batches 4 --save-every 5 --keep-last 2 --no-mfu "
      "--threads 1";
  auto straight = Mpi(2, args + " --out straight");
  ASSERT_EQ(straight.exit_code, 0) << straight.err;

  // SIGKILL both ranks once the first checkpoint exists.
  const std::string mpirun =
      std::string(kMpirun) + " -np 2 " + ESCALE_BINARY + " -q train " + args + " --out killed";
  auto killed = RunShell(
      "cd " + Dir() + " && { " + mpirun +
      " --resume & pid=$!; "
      "for i in $(seq 1 3000); do [ -f killed/checkpoints/latest ] && break; sleep 0.01; done; "
      "kill -9 $(pgrep -P $pid); wait $pid; true; }");
  ASSERT_TRUE(fs::exists(Dir() + "/killed/checkpoints/latest")) << killed.err;
  const std::string after_kill = LatestCheckpoint(Dir() + "/killed");
  ASSERT_EQ(after_kill.find("step-00000060"), std::string::npos)
      << "the run finished before it was killed";

  // Resume, then SIGTERM rank 1 alone: both ranks must stop at the same step and save once.
  auto termed = RunShell("cd " + Dir() + " && { " + mpirun +
                         " --resume & pid=$!; "
                         "for i in $(seq 1 3000); do [ \"$(cat killed/checkpoints/latest "
                         "2>/dev/null)\" != \"$(basename " +
                         after_kill +
                         ")\" ] && break; sleep 0.01; done; "
                         "for c in $(pgrep -P $pid); do grep -qz '^OMPI_COMM_WORLD_RANK=1$' "
                         "/proc/$c/environ && kill -TERM $c; done; "
                         "wait $pid; }");
  const std::string after_term = LatestCheckpoint(Dir() + "/killed");
  if (after_term.find("step-00000060") == std::string::npos) {
    EXPECT_EQ(termed.exit_code, 0) << termed.err;
    EXPECT_NE(termed.err.find("stopped by signal"), std::string::npos) << termed.err;
  }
  std::printf("killed at %s, SIGTERM to rank 1 stopped at %s\n",
              fs::path(after_kill).filename().c_str(), fs::path(after_term).filename().c_str());
  auto rest = Mpi(2, args + " --out killed --resume");
  ASSERT_EQ(rest.exit_code, 0) << rest.err;

  const std::string a = LatestCheckpoint(Dir() + "/straight"),
                    b = LatestCheckpoint(Dir() + "/killed");
  EXPECT_EQ(fs::path(a).filename(), fs::path(b).filename());
  EXPECT_EQ(testing::ReadFile(a + "/model/model.safetensors"),
            testing::ReadFile(b + "/model/model.safetensors"));
  EXPECT_EQ(testing::ReadFile(a + "/optimizer.safetensors"),
            testing::ReadFile(b + "/optimizer.safetensors"));
  EXPECT_EQ(StripTiming(testing::ReadFile(Dir() + "/straight/metrics.jsonl")),
            StripTiming(testing::ReadFile(Dir() + "/killed/metrics.jsonl")));

  // A different rank count resumes too (same global batch; not bit-exact, and it says so).
  ASSERT_EQ(RunShell("cp -r " + Dir() + "/killed " + Dir() + "/regrown && rm -rf " + Dir() +
                     "/regrown/checkpoints/step-00000060 && echo step-00000055 > " + Dir() +
                     "/regrown/checkpoints/latest")
                .exit_code,
            0);
  auto one_rank = One(args + " --out regrown --resume");
  EXPECT_EQ(one_rank.exit_code, 0) << one_rank.err;
  EXPECT_NE(one_rank.err.find("written by 2 rank(s) with 1"), std::string::npos) << one_rank.err;
  const double regrown_diff =
      MaxWeightDiff(a + "/model/model.safetensors",
                    LatestCheckpoint(Dir() + "/regrown") + "/model/model.safetensors");
  std::printf("resumed at step 55 with 1 rank instead of 2: max |weight diff| at step 60 %.3g\n",
              regrown_diff);
  EXPECT_LT(regrown_diff, 1e-4);
}

// ZeRO-1: the moments sharded (reduce-scatter of the gradient, all-gather of the weights).
TEST_F(MpiTrain, ZeroOneShardsTheMomentsWithoutChangingTheMaths) {
  const std::string args =
      "--model model --data shards --steps 12 --seq-len 32 --micro-batch 4 --global-batch-tokens "
      "512 --lr 3e-3"
      " --warmup 2 --eval-every 4 --eval-batches 5 --save-every 4 --keep-last 0 --no-mfu --threads "
      "1";
  // Without clipping the gradient norm (the one number summed in another order) plays no part, so
  // sharded and unsharded two-rank runs must agree bit for bit, moments gathered for the save
  // included.
  auto plain = Mpi(2, args + " --clip 0 --out zero_plain");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  auto sharded = Mpi(2, args + " --clip 0 --zero-stage 1 --out zero_sharded");
  ASSERT_EQ(sharded.exit_code, 0) << sharded.err;
  const std::string a = LatestCheckpoint(Dir() + "/zero_plain"),
                    b = LatestCheckpoint(Dir() + "/zero_sharded");
  EXPECT_EQ(testing::ReadFile(a + "/model/model.safetensors"),
            testing::ReadFile(b + "/model/model.safetensors"));
  EXPECT_EQ(testing::ReadFile(a + "/optimizer.safetensors"),
            testing::ReadFile(b + "/optimizer.safetensors"));

  // With clipping, against one process; three ranks split the flat buffer unevenly.
  auto three = Mpi(
      3,
      "--model model --data shards --steps 12 --seq-len 32 --micro-batch 4 --global-batch-tokens "
      "768"
      " --lr 3e-3 --warmup 2 --eval-every 4 --eval-batches 5 --save-every 4 --keep-last 0 --no-mfu"
      " --threads 1 --zero-stage 1 --out zero_three");
  ASSERT_EQ(three.exit_code, 0) << three.err;
  auto one3 = One(
      "--model model --data shards --steps 12 --seq-len 32 --micro-batch 4 --global-batch-tokens "
      "768"
      " --lr 3e-3 --warmup 2 --eval-every 4 --eval-batches 5 --save-every 4 --keep-last 0 --no-mfu"
      " --threads 1 --out zero_one3");
  ASSERT_EQ(one3.exit_code, 0) << one3.err;
  const Metrics m3 = ReadMetrics(Dir() + "/zero_three/metrics.jsonl");
  const Metrics m1 = ReadMetrics(Dir() + "/zero_one3/metrics.jsonl");
  const double loss_diff = MaxRelDiff(m1.loss, m3.loss);
  const double weight_diff =
      MaxWeightDiff(LatestCheckpoint(Dir() + "/zero_one3") + "/model/model.safetensors",
                    LatestCheckpoint(Dir() + "/zero_three") + "/model/model.safetensors");
  std::printf("ZeRO-1, 3 ranks vs 1: max relative loss diff %.3g, max |weight diff| %.3g\n",
              loss_diff, weight_diff);
  EXPECT_LT(loss_diff, 1e-5);
  EXPECT_LT(weight_diff, 1e-4);

  // Resume of a sharded run from its step-4 checkpoint: bit-exact against the unbroken run.
  ASSERT_EQ(
      RunShell(
          "cd " + Dir() +
          " && cp -r zero_sharded zero_resumed && rm -rf zero_resumed/checkpoints/step-00000008"
          " zero_resumed/checkpoints/step-00000012 && echo step-00000004 > "
          "zero_resumed/checkpoints/latest")
          .exit_code,
      0);
  auto resumed = Mpi(2, args + " --clip 0 --zero-stage 1 --out zero_resumed --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const std::string c = LatestCheckpoint(Dir() + "/zero_resumed");
  EXPECT_EQ(fs::path(c).filename(), "step-00000012");
  EXPECT_EQ(testing::ReadFile(b + "/model/model.safetensors"),
            testing::ReadFile(c + "/model/model.safetensors"));
  EXPECT_EQ(testing::ReadFile(b + "/optimizer.safetensors"),
            testing::ReadFile(c + "/optimizer.safetensors"));
}

int CountErrorLines(const std::string& err) {
  int n = 0;
  std::istringstream in(err);
  for (std::string line; std::getline(in, line);)
    n += line.find("error:") != std::string::npos ? 1 : 0;
  return n;
}

TEST_F(MpiTrain, BadSetupsFailOnEveryRankWithOneLine) {
  // 3 micro-batches per step cannot be shared by 2 ranks.
  auto uneven = Mpi(2,
                    "--model model --data shards --steps 2 --seq-len 32 --micro-batch 4 "
                    "--global-batch-tokens 384 "
                    "--no-mfu --threads 1 --out uneven");
  EXPECT_NE(uneven.exit_code, 0);
  EXPECT_NE(uneven.exit_code, 124) << "timed out: a rank hung";
  EXPECT_EQ(CountErrorLines(uneven.err), 1) << uneven.err;
  EXPECT_NE(uneven.err.find("cannot be shared by 2 ranks"), std::string::npos) << uneven.err;
  EXPECT_FALSE(fs::exists(Dir() + "/uneven/checkpoints"));

  auto missing =
      Mpi(2, "--model model --data no_such_dir --steps 2 --no-mfu --threads 1 --out missing");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.exit_code, 124) << "timed out: a rank hung";
  EXPECT_EQ(CountErrorLines(missing.err), 1) << missing.err;
  EXPECT_NE(missing.err.find("no_such_dir"), std::string::npos) << missing.err;

  // A run directory that already holds checkpoints: only rank 0 looks, everyone stops.
  ASSERT_EQ(One("--model model --data shards --steps 1 --seq-len 32 --micro-batch 4 --no-mfu "
                "--threads 1 --out taken")
                .exit_code,
            0);
  auto taken = Mpi(2,
                   "--model model --data shards --steps 2 --seq-len 32 --micro-batch 4 "
                   "--global-batch-tokens 256 "
                   "--no-mfu --threads 1 --out taken");
  EXPECT_NE(taken.exit_code, 0);
  EXPECT_NE(taken.exit_code, 124) << "timed out: a rank hung";
  EXPECT_EQ(CountErrorLines(taken.err), 1) << taken.err;
  EXPECT_NE(taken.err.find("--resume"), std::string::npos) << taken.err;
}

TEST_F(MpiTrain, DivergedReplicasStopTheRunBeforeSaving) {
  const std::string args =
      "--model model --data shards --steps 6 --seq-len 32 --micro-batch 4 "
      "--global-batch-tokens 256 --save-every 2 --no-mfu --threads 1";
  auto healthy = Mpi(2, args + " --out healthy");
  EXPECT_EQ(healthy.exit_code, 0) << healthy.err;
  auto drift =
      Mpi(2, args + " --inject-drift-steps 2 --out drift");  // the weights part after step 3
  EXPECT_NE(drift.exit_code, 0);
  EXPECT_NE(drift.exit_code, 124) << "timed out: a rank hung";
  EXPECT_EQ(CountErrorLines(drift.err), 1) << drift.err;
  EXPECT_NE(drift.err.find("weights differ after step 4"), std::string::npos) << drift.err;
  EXPECT_EQ(testing::ReadFile(Dir() + "/drift/checkpoints/latest").substr(0, 13), "step-00000002");
}

}  // namespace

}  // namespace escale
