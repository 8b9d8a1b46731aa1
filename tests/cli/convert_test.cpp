// escale convert: dtype and shard changes keep every value (bit-exact or correctly rounded),
// tokenizer files travel along, bad options fail with one line.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "core/half.h"
#include "io/model_fixtures.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using testing::RunEscale;
using testing::TempDir;

TEST(Convert, Bf16ShardedAndBack) {
  TempDir tmp;
  const ModelConfig c = testing::TinyQwen2Moe();
  const auto w = testing::WriteRandomModel(tmp / "a", c);
  testing::WriteFile(tmp / "a/tokenizer.json", "{\"model\":{}}");
  auto r = RunEscale("convert " + tmp / "a" + " " + tmp / "b" + " --dtype bf16 --max-shard-bytes 2000");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "b/model.safetensors.index.json"));
  EXPECT_EQ(testing::ReadFile(tmp / "b/tokenizer.json"), "{\"model\":{}}");
  auto b = ReadHfModel(tmp / "b");
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(b->config.dtype, DType::kBF16);
  for (const auto& [name, t] : w)
    for (int64_t i = 0; i < t.numel(); ++i)
      ASSERT_EQ(b->at(name).data<uint16_t>()[i], F32ToBf16(t.data<float>()[i])) << name;
  // bf16 -> f32 is exact, and back to bf16 gives the same bytes.
  r = RunEscale("convert " + tmp / "b" + " " + tmp / "c" + " --dtype f32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunEscale("convert " + tmp / "c" + " " + tmp / "d");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto d = ReadHfModel(tmp / "d");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->config.dtype, DType::kF32);
  for (const auto& [name, t] : b->tensors) {
    const Tensor& x = d->at(name);
    for (int64_t i = 0; i < t.numel(); ++i)
      ASSERT_EQ(F32ToBf16(x.data<float>()[i]), t.data<uint16_t>()[i]) << name;
  }
}

// Output paths as users type them: a trailing slash works for a new output and for --overwrite,
// and an output that holds the input is refused before anything is deleted.
TEST(Convert, OutputPathsNeverSwallowTheInput) {
  TempDir tmp;
  const ModelConfig c = testing::TinyQwen2Moe();
  testing::WriteRandomModel(tmp / "p/src", c);
  const std::string before = testing::ReadFile(tmp / "p/src/model.safetensors");
  for (const std::string& dst : {tmp / "p", tmp / "p/", tmp / "p/src", tmp / "p/src/inner"}) {
    auto r = RunEscale("convert " + tmp / "p/src" + " " + dst + " --overwrite");
    EXPECT_NE(r.exit_code, 0) << dst;
    EXPECT_NE(r.err.find("input"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    ASSERT_TRUE(fs::exists(tmp / "p/src/model.safetensors")) << dst;
  }
  EXPECT_EQ(testing::ReadFile(tmp / "p/src/model.safetensors"), before);
  auto r = RunEscale("convert " + tmp / "p/src" + " " + tmp / "out/");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunEscale("convert " + tmp / "p/src" + " " + tmp / "out/" + " --dtype bf16 --overwrite");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = ReadHfModel(tmp / "out");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->config.dtype, DType::kBF16);
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST(Convert, ArchitectureChangeAndErrors) {
  TempDir tmp;
  const auto w = testing::WriteRandomModel(tmp / "a", testing::TinyMistral());
  auto r = RunEscale("convert " + tmp / "a" + " " + tmp / "b" + " --arch llama");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto b = ReadHfModel(tmp / "b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->config.arch, Architecture::kLlama);
  for (const auto& [name, t] : w) EXPECT_TRUE(testing::SameBytes(b->at(name), t)) << name;

  r = RunEscale("convert " + tmp / "a" + " " + tmp / "b");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  r = RunEscale("convert " + tmp / "a" + " " + tmp / "c" + " --arch qwen2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("always has q/k/v biases"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "c"));
  r = RunEscale("convert " + tmp / "a" + " " + tmp / "c" + " --dtype int8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace escale
