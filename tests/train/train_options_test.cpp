#include <gtest/gtest.h>

#include "support/test_support.h"
#include "train/train_options.h"

namespace escale {
namespace {

const OptionSpec& Spec(const std::vector<OptionSpec>& t, const std::string& key) {
  for (const auto& s : t)
    if (s.key == key) return s;
  throw std::runtime_error("no option " + key);
}

TEST(TrainOptions, TomlThenFlagsWin) {
  testing::TempDir d;
  testing::WriteFile(d / "train.toml",
                     "model = \"m\"\ndata = \"d\"\nout = \"o\"\nlr = 4e-4\nsteps = 100\n"
                     "warmup = 7\nschedule = \"wsd\"\nresume = true\nclip = 2\n");
  TrainOptions o;
  auto table = TrainOptionTable(o);
  ASSERT_TRUE(ApplyTomlFile(d / "train.toml", table).ok());
  EXPECT_EQ(o.model_dir, "m");
  EXPECT_DOUBLE_EQ(o.lr, 4e-4);
  EXPECT_EQ(o.steps, 100);
  EXPECT_EQ(o.schedule, "wsd");
  EXPECT_TRUE(o.resume);
  EXPECT_DOUBLE_EQ(o.clip, 2.0);  // an integer is accepted where a number is expected
  ASSERT_TRUE(ApplyOptionText(Spec(table, "lr"), "1e-3").ok());
  EXPECT_DOUBLE_EQ(o.lr, 1e-3);
  EXPECT_TRUE(o.Validate().ok()) << o.Validate().message();
}

TEST(TrainOptions, ErrorsNameTheKey) {
  testing::TempDir d;
  TrainOptions o;
  auto table = TrainOptionTable(o);
  testing::WriteFile(d / "a.toml", "learning_rate = 1\n");
  EXPECT_NE(ApplyTomlFile(d / "a.toml", table).message().find("unknown option 'learning_rate'"), std::string::npos);
  testing::WriteFile(d / "b.toml", "steps = \"ten\"\n");
  EXPECT_NE(ApplyTomlFile(d / "b.toml", table).message().find("'steps' must be an integer"), std::string::npos);
  testing::WriteFile(d / "c.toml", "steps = [\n");
  EXPECT_NE(ApplyTomlFile(d / "c.toml", table).message().find("c.toml:"), std::string::npos);
  EXPECT_NE(ApplyOptionText(Spec(table, "micro_batch"), "8x").message().find("--micro-batch takes an integer"),
            std::string::npos);
}

TEST(TrainOptions, ValidateCatchesInconsistentSettings) {
  TrainOptions o;
  o.model_dir = "m";
  o.data = "d";
  o.out = "o";
  o.steps = 10;
  ASSERT_TRUE(o.Validate().ok());
  o.global_batch_tokens = 1000;  // not a multiple of 256 x 8
  EXPECT_NE(o.Validate().message().find("multiple of seq-len x micro-batch"), std::string::npos);
  o.global_batch_tokens = 4 * 2048;
  EXPECT_EQ(o.accumulation_steps(), 4);
  o.scale_out = "8,2";
  EXPECT_NE(o.Validate().message().find("--init-from"), std::string::npos);
  o.scale_out.clear();
  o.from_config = "c.json";
  EXPECT_NE(o.Validate().message().find("exactly one"), std::string::npos);
}

TEST(TrainOptions, DataOrDataBlendFromFlagsOrToml) {
  testing::TempDir d;
  testing::WriteFile(d / "train.toml",
                     "model = \"m\"\nout = \"o\"\nsteps = 5\ndata_blend = \"en=0.7:a zh=0.3:b\"\n");
  TrainOptions o;
  auto table = TrainOptionTable(o);
  ASSERT_TRUE(ApplyTomlFile(d / "train.toml", table).ok());
  EXPECT_EQ(o.data_blend, "en=0.7:a zh=0.3:b");
  EXPECT_TRUE(o.Validate().ok()) << o.Validate().message();
  o.data = "d";  // both
  EXPECT_NE(o.Validate().message().find("exactly one of --data"), std::string::npos);
  o.data_blend.clear();
  EXPECT_TRUE(o.Validate().ok());
  o.data.clear();  // neither
  EXPECT_NE(o.Validate().message().find("exactly one of --data"), std::string::npos);
  ASSERT_TRUE(ApplyOptionText(Spec(table, "data_blend"), "en=0.7:a en=0.3:b").ok());
  EXPECT_NE(o.Validate().message().find("twice"), std::string::npos);
}

}  // namespace
}  // namespace escale
