// escale init and train --from-config read a config.json the user wrote: a damaged file is one
// line that says where, and nothing after the document is ignored.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "support/test_support.h"

namespace escale {
namespace {

using testing::RunEscale;
using testing::TempDir;

const char* kConfig = R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 64,
  "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2})";

TEST(InitCli, DamagedConfigFilesSayWhereAndWriteNothing) {
  TempDir t;
  testing::WriteFile(t / "good.json", kConfig);
  auto r = RunEscale("init --config " + t / "good.json" + " " + t / "ok");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct Case {
    std::string text, says;
  };
  for (const Case& c : {Case{std::string(kConfig) + '\0' + "junk", "NUL byte"},
                        Case{std::string(kConfig) + " {}", "not valid JSON"},
                        Case{"{\"vocab_size\": 64,\n  \"hidden_size\": }", "line 2"}}) {
    testing::WriteFile(t / "bad.json", c.text);
    for (const std::string& cmd : {"init --config " + t / "bad.json" + " " + t / "out",
                                   "train --from-config " + t / "bad.json" + " --data " +
                                       t / "nowhere" + " --steps 1 --out " + t / "run"}) {
      r = RunEscale(cmd);
      EXPECT_EQ(r.exit_code, 1) << cmd;
      EXPECT_NE(r.err.find(c.says), std::string::npos) << cmd << "\n" << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
    EXPECT_FALSE(std::filesystem::exists(t / "out"));
    EXPECT_FALSE(std::filesystem::exists(t / "run"));
  }
}

}  // namespace
}  // namespace escale
