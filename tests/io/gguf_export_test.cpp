// GGUF export without llama.cpp: names, shapes, metadata, the Q/K row permutation (checked
// against the source rows by an independent index formula), tied heads, merged experts, and the
// refusals for what llama.cpp cannot load as written.
#include "io/gguf_export.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "io/hf_model.h"
#include "io/model_fixtures.h"
#include "support/test_support.h"

namespace escale::gguf {
namespace {

namespace fs = std::filesystem;
using escale::testing::TempDir;

// A byte-level tokenizer trained by escale, copied into each model directory.
std::string Tokenizer(const TempDir& t) {
  escale::testing::WriteFile(t / "c.txt", "hello world hello there the theory of things 123\n");
  auto r = escale::testing::RunEscale("tokenizer train --overwrite --vocab-size 270 -o " +
                                      t / "tok.json " + t / "c.txt");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return t / "tok.json";
}

std::string WriteModel(const TempDir& t, ModelConfig c, const std::string& name) {
  c.vocab_size = 300;
  const std::string dir = t / name;
  EXPECT_TRUE(
      WriteHfModel(dir, c, escale::testing::RandomWeights(c), escale::testing::QuietOptions())
          .ok());
  fs::copy_file(Tokenizer(t), dir + "/tokenizer.json");
  return dir;
}

const float* F32(const File& f, const std::string& name) {
  const TensorInfo* t = f.FindTensor(name);
  EXPECT_NE(t, nullptr) << name;
  return t ? reinterpret_cast<const float*>(f.TensorData(*t)) : nullptr;
}

TEST(GgufExport, LlamaNamesMetadataAndPermutation) {
  TempDir t;
  const std::string dir = WriteModel(t, escale::testing::TinyLlama(), "m");
  auto m = ReadHfModel(dir);
  ASSERT_TRUE(m.ok());
  const ModelConfig& c = m->config;
  auto s = ExportGguf(dir, t / "m.gguf", {TensorType::kF32, false, false});
  ASSERT_TRUE(s.ok()) << s.status().message();
  auto f = ReadFile(t / "m.gguf");
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->Find("general.architecture")->s, "llama");
  EXPECT_EQ(f->Find("llama.block_count")->u, static_cast<uint64_t>(c.num_layers));
  EXPECT_EQ(f->Find("llama.attention.head_count_kv")->u, static_cast<uint64_t>(c.num_kv_heads));
  EXPECT_EQ(f->Find("tokenizer.ggml.tokens")->arr.size(), 300u);
  EXPECT_EQ(f->Find("tokenizer.ggml.pre")->s, "gpt-2");
  const TensorInfo* emb = f->FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->ne, (std::vector<uint64_t>{static_cast<uint64_t>(c.hidden_size), 300}));
  ASSERT_NE(f->FindTensor("output.weight"), nullptr);
  // attn_k row (h, 2j+s) holds HF row (h, s*hd/2 + j).
  const float* k = F32(*f, "blk.1.attn_k.weight");
  const Tensor& src = m->at("layers.1.wk");
  const float* sk = reinterpret_cast<const float*>(src.bytes());
  const int64_t hd = c.head_dim, H = c.hidden_size;
  for (int64_t h = 0; h < c.num_kv_heads; ++h)
    for (int64_t j = 0; j < hd / 2; ++j)
      for (int64_t sidx = 0; sidx < 2; ++sidx)
        ASSERT_EQ(std::memcmp(k + (h * hd + 2 * j + sidx) * H,
                              sk + (h * hd + sidx * hd / 2 + j) * H, H * 4),
                  0);
  // attn_v is not permuted.
  EXPECT_EQ(std::memcmp(F32(*f, "blk.0.attn_v.weight"), m->at("layers.0.wv").bytes(),
                        m->at("layers.0.wv").nbytes()),
            0);
}

TEST(GgufExport, TiedHeadHasNoOutputTensorAndQwen2IsNotPermuted) {
  TempDir t;
  auto f1 = ExportGguf(WriteModel(t, escale::testing::TinyLlama(true), "tied"), t / "tied.gguf",
                       {TensorType::kF16, false, false});
  ASSERT_TRUE(f1.ok()) << f1.status().message();
  auto f = ReadFile(t / "tied.gguf");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->FindTensor("output.weight"), nullptr);
  EXPECT_EQ(f->FindTensor("blk.0.attn_q.weight")->type, TensorType::kF16);
  EXPECT_EQ(f->FindTensor("blk.0.attn_norm.weight")->type, TensorType::kF32);
  EXPECT_EQ(f->Find("general.file_type")->u, 1u);

  const std::string qdir = WriteModel(t, escale::testing::TinyQwen2(), "q");
  auto qs = ExportGguf(qdir, t / "q.gguf", {TensorType::kF32, false, false});
  ASSERT_TRUE(qs.ok()) << qs.status().message();
  auto q = ReadFile(t / "q.gguf");
  auto m = ReadHfModel(qdir);
  ASSERT_TRUE(q.ok() && m.ok());
  EXPECT_EQ(q->Find("general.architecture")->s, "qwen2");
  EXPECT_EQ(q->Find("qwen2.rope.scaling.type")->s, "linear");
  EXPECT_EQ(q->Find("qwen2.rope.scaling.factor")->f, 2.0);
  EXPECT_EQ(std::memcmp(F32(*q, "blk.0.attn_q.weight"), m->at("layers.0.wq").bytes(),
                        m->at("layers.0.wq").nbytes()),
            0);
  EXPECT_EQ(std::memcmp(F32(*q, "blk.0.attn_k.bias"), m->at("layers.0.bk").bytes(),
                        m->at("layers.0.bk").nbytes()),
            0);
}

// Llama 3.1-style rope_scaling becomes llama.cpp's rope_freqs tensor: one factor per frequency
// that divides it, computed here independently with the published llama3 rule (transformers'
// _compute_llama3_parameters): wavelength below original/high_freq_factor keeps 1, above
// original/low_freq_factor takes `factor`, and between them 1 / ((1 - s)/factor + s) with
// s = (original/wavelength - low) / (high - low).
TEST(GgufExport, Llama3RopeScalingBecomesRopeFreqs) {
  TempDir t;
  ModelConfig c = escale::testing::TinyLlama();
  c.head_dim = 16;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.hidden_size = 32;
  c.rope_theta = 10000.0;
  c.rope_scaling = {{"rope_type", "llama3"},
                    {"factor", 8.0},
                    {"low_freq_factor", 1.0},
                    {"high_freq_factor", 4.0},
                    {"original_max_position_embeddings", 16}};
  auto out = ExportGguf(WriteModel(t, c, "l3"), t / "l3.gguf", {TensorType::kF16, false, false});
  ASSERT_TRUE(out.ok()) << out.status().message();
  auto f = ReadFile(t / "l3.gguf");
  ASSERT_TRUE(f.ok());
  const TensorInfo* rf = f->FindTensor("rope_freqs.weight");
  ASSERT_NE(rf, nullptr);
  EXPECT_EQ(rf->type, TensorType::kF32);
  ASSERT_EQ(rf->ne, (std::vector<uint64_t>{8}));
  EXPECT_EQ(f->Find("llama.rope.scaling.type"), nullptr);  // the tensor says it all
  const float* got = F32(*f, "rope_freqs.weight");
  int smooth = 0, long_waves = 0;
  for (int i = 0; i < 8; ++i) {
    const double freq = std::pow(10000.0, -2.0 * i / 16.0), wavelen = 2 * M_PI / freq;
    double want;
    if (wavelen < 16.0 / 4.0) {
      want = 1.0;
    } else if (wavelen > 16.0 / 1.0) {
      want = 8.0;
      ++long_waves;
    } else {
      const double sm = (16.0 / wavelen - 1.0) / (4.0 - 1.0);
      want = 1.0 / ((1 - sm) / 8.0 + sm);
      ++smooth;
    }
    EXPECT_NEAR(got[i], want, 1e-6 * want) << i;
  }
  EXPECT_GT(smooth, 0);  // the shape covers the smooth band and a scaled one
  EXPECT_GT(long_waves, 0);
  // llama.cpp's qwen2 graph does not read rope_freqs; its llama graph does and adds q/k/v biases,
  // so a Qwen2 with llama3 scaling is written as llama (permuted, with its biases).
  ModelConfig q = escale::testing::TinyQwen2();
  q.rope_scaling = c.rope_scaling;
  q.head_dim = 16;
  q.num_heads = 2;
  q.num_kv_heads = 1;
  q.hidden_size = 32;
  auto as_llama =
      ExportGguf(WriteModel(t, q, "q3"), t / "q3.gguf", {TensorType::kF16, false, false});
  ASSERT_TRUE(as_llama.ok()) << as_llama.status().message();
  auto g = ReadFile(t / "q3.gguf");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->Find("general.architecture")->s, "llama");
  EXPECT_NE(g->FindTensor("rope_freqs.weight"), nullptr);
  EXPECT_NE(g->FindTensor("blk.0.attn_q.bias"), nullptr);
  // A Qwen3 (q/k norm) has no graph that reads llama3 scaling: refused, not plain RoPE.
  ModelConfig q3 = escale::testing::TinyQwen3();
  q3.rope_scaling = c.rope_scaling;
  auto refused =
      ExportGguf(WriteModel(t, q3, "qwen3"), t / "qwen3.gguf", {TensorType::kF16, false, false});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("llama3"), std::string::npos)
      << refused.status().message();
  EXPECT_FALSE(fs::exists(t / "qwen3.gguf"));
}

TEST(GgufExport, MixtralExpertsAreMergedInOrder) {
  TempDir t;
  ModelConfig mc = escale::testing::TinyMixtral();
  mc.moe.router = RouterType::kMixtral;  // llama.cpp's llama MoE renormalises the top-k
  mc.moe.capacity_factor = 0;
  const std::string dir = WriteModel(t, mc, "moe");
  auto m = ReadHfModel(dir);
  ASSERT_TRUE(m.ok());
  const ModelConfig& c = m->config;
  auto ms = ExportGguf(dir, t / "moe.gguf", {TensorType::kF32, false, false});
  ASSERT_TRUE(ms.ok()) << ms.status().message();
  auto f = ReadFile(t / "moe.gguf");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->Find("llama.expert_count")->u, static_cast<uint64_t>(c.moe.num_experts));
  EXPECT_EQ(f->Find("llama.expert_used_count")->u, static_cast<uint64_t>(c.moe.top_k));
  const TensorInfo* down = f->FindTensor("blk.0.ffn_down_exps.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->ne, (std::vector<uint64_t>{static_cast<uint64_t>(c.moe.expert_intermediate),
                                             static_cast<uint64_t>(c.hidden_size),
                                             static_cast<uint64_t>(c.moe.num_experts)}));
  const Tensor& e2 = m->at(ExpertTensorName(0, 2, "down"));
  EXPECT_EQ(std::memcmp(f->TensorData(*down) + 2 * e2.nbytes(), e2.bytes(), e2.nbytes()), 0);
}

TEST(GgufExport, CliConvertAndInspect) {
  TempDir t;
  const std::string dir = WriteModel(t, escale::testing::TinyLlama(true), "m");
  auto r = escale::testing::RunEscale("convert " + dir + " " + t / "m.gguf --dtype q8_0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto i = escale::testing::RunEscale("inspect " + t / "m.gguf --tensors");
  ASSERT_EQ(i.exit_code, 0) << i.err;
  EXPECT_NE(i.out.find("general.architecture = \"llama\""), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("general.file_type = 7"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("token_embd.weight"), std::string::npos);
  // A damaged file: exit 1 and one line.
  std::string bytes = escale::testing::ReadFile(t / "m.gguf");
  escale::testing::WriteFile(t / "bad.gguf", bytes.substr(0, bytes.size() / 2));
  auto b = escale::testing::RunEscale("inspect " + t / "bad.gguf");
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_NE(b.err.find("runs past the end"), std::string::npos) << b.err;
  auto bad_dtype = escale::testing::RunEscale("convert " + dir + " " + t / "x.gguf --dtype q4_0");
  EXPECT_NE(bad_dtype.exit_code, 0);
}

TEST(GgufExport, RefusalsAreOneLine) {
  TempDir t;
  // Each Qwen2-MoE llama.cpp's qwen2moe cannot run as written is refused with its own reason.
  ModelConfig qm = escale::testing::TinyQwen2Moe();
  const std::vector<std::pair<std::string, std::string>> reasons = {
      {"dense", "every layer MoE"}, {"renorm", "renormalise"}, {"noshared", "shared expert"}};
  for (const auto& [name, reason] : reasons) {
    if (name == "renorm") qm.moe.every = 1, qm.moe.dense_layers.clear();
    if (name == "noshared") qm.moe.router = RouterType::kSt, qm.moe.shared_intermediate = 0;
    auto q = ExportGguf(WriteModel(t, qm, "qm-" + name), t / (name + ".gguf"), {});
    ASSERT_FALSE(q.ok()) << name;
    EXPECT_NE(q.status().message().find(reason), std::string::npos) << q.status().message();
    EXPECT_EQ(q.status().message().find('\n'), std::string::npos);
    EXPECT_FALSE(fs::exists(t / (name + ".gguf")));
  }
  const std::string dir = WriteModel(t, escale::testing::TinyLlama(), "m");
  fs::remove(dir + "/tokenizer.json");
  auto n = ExportGguf(dir, t / "m.gguf", {});
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().message().find("tokenizer.json"), std::string::npos);
  EXPECT_FALSE(ParseExportType("q4_0").ok());
}

}  // namespace
}  // namespace escale::gguf
