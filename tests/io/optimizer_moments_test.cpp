// The carried-moments file: a round trip keeps every value and count, and damaged files are
// refused with what is wrong.
#include "io/optimizer_moments.h"

#include <gtest/gtest.h>

#include <limits>

#include "io/safetensors.h"
#include "support/test_support.h"

namespace escale {
namespace {

MomentMap Sample() {
  MomentMap m;
  m["embed"] = {{0.5f, -1.25f, 3.0f}, {0.25f, 1.5f, 9.0f}, 17};
  m["layers.0.attn.q"] = {{0.0f, 0.0f}, {0.0f, 0.0f}, 0};
  return m;
}

TEST(MomentsFile, RoundTripKeepsValuesAndSteps) {
  testing::TempDir d;
  const std::string path = d.path() + "/moments/moments.safetensors";
  ASSERT_TRUE(WriteMomentsFile(path, Sample()).ok());
  auto r = ReadMomentsFile(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ(r->at("embed").m, Sample().at("embed").m);
  EXPECT_EQ(r->at("embed").v, Sample().at("embed").v);
  EXPECT_EQ(r->at("embed").steps, 17);
  EXPECT_EQ(r->at("layers.0.attn.q").steps, 0);
}

TEST(MomentsFile, NegativeSecondMomentsAndPlainCheckpointsAreRefused) {
  testing::TempDir d;
  MomentMap bad = Sample();
  bad["embed"].v[1] = -1.0f;
  ASSERT_TRUE(WriteMomentsFile(d.path() + "/a.safetensors", bad).ok());
  auto r = ReadMomentsFile(d.path() + "/a.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("v.embed"), std::string::npos) << r.status().message();
  bad = Sample();
  bad["embed"].m[0] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(WriteMomentsFile(d.path() + "/b.safetensors", bad).ok());
  EXPECT_FALSE(ReadMomentsFile(d.path() + "/b.safetensors").ok());
  // A safetensors file without the steps metadata is not a moments file.
  const float x[2] = {1, 2};
  SafetensorsWriter::Options so;
  so.basename = "c";
  auto w = SafetensorsWriter::Create(d.path(), {{"m.embed", DType::kF32, {2}, 0, 0}}, so);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->Write("m.embed", x, sizeof x).ok());
  ASSERT_TRUE(w->Finish().ok());
  r = ReadMomentsFile(d.path() + "/c.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a moments file"), std::string::npos)
      << r.status().message();
  EXPECT_FALSE(ReadMomentsFile(d.path() + "/missing.safetensors").ok());
}

}  // namespace
}  // namespace escale
