// Output paths as users spell them: a trailing slash, a long legal name, an output that would
// swallow its input, and the staging left behind by a killed run.
#include "core/atomic_output.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/test_support.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// A process number that is not running: the largest one the kernel can hand out is rarely live,
// and the test checks that it is not.
long DeadPid() {
  for (long pid = 4194303; pid > 100000; --pid)
    if (!fs::exists("/proc/" + std::to_string(pid))) return pid;
  return -1;
}

Status BuildDir(const std::string& dir, bool overwrite, const std::string& contents,
                const std::vector<std::string>& inputs = {}) {
  ESCALE_ASSIGN_OR_RETURN(StagingDir s, StagingDir::Create(dir, overwrite, inputs));
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(s.path() + "/f", contents));
  return s.Commit();
}

TEST(AtomicOutput, TrailingSlashIsTheSameDirectoryForCreateAndOverwrite) {
  TempDir tmp;
  ASSERT_TRUE(BuildDir(tmp / "out/", false, "one").ok());
  EXPECT_EQ(testing::ReadFile(tmp / "out/f"), "one");
  const Status again = BuildDir(tmp / "out/", false, "two");
  EXPECT_FALSE(again.ok());
  EXPECT_NE(again.message().find("already exists"), std::string::npos) << again.message();
  const Status replaced = BuildDir(tmp / "out//", true, "two");
  ASSERT_TRUE(replaced.ok()) << replaced.message();
  EXPECT_EQ(testing::ReadFile(tmp / "out/f"), "two");
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(tmp.path()))
    entries += e.path().filename() == "out" ? 0 : 1;
  EXPECT_EQ(entries, 0u) << "staging or the old output was left behind";
}

TEST(AtomicOutput, LongLegalNamesFitWithTheirStagingSuffix) {
  TempDir tmp;
  const std::string name(250, 'n');
  const Status st = BuildDir(tmp / name, false, "x");
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(testing::ReadFile(tmp / (name + "/f")), "x");
  ASSERT_TRUE(WriteFileAtomic(tmp / (name + "/" + std::string(254, 'f')), "y").ok());
}

TEST(AtomicOutput, PathsThatNameNoDirectoryAreRefused) {
  TempDir tmp;
  for (const std::string& p : {std::string(""), tmp / ".", tmp / "..", std::string("/")}) {
    const Status st = BuildDir(p, true, "x");
    EXPECT_FALSE(st.ok()) << "'" << p << "'";
  }
  testing::WriteFile(tmp / "file", "keep");
  const Status st = BuildDir(tmp / "file", true, "x");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not a directory"), std::string::npos) << st.message();
  EXPECT_EQ(testing::ReadFile(tmp / "file"), "keep");
}

TEST(AtomicOutput, AnOutputThatEqualsContainsOrIsInsideAnInputIsRefused) {
  TempDir tmp;
  fs::create_directories(tmp / "p/src");
  testing::WriteFile(tmp / "p/src/model", "weights");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {tmp / "p/src", tmp / "p/src"},         // equals
      {tmp / "p/src/", tmp / "p/./src"},      // equals, spelled differently
      {tmp / "p", tmp / "p/src"},             // contains: --overwrite would delete the input
      {tmp / "p/src/inner", tmp / "p/src"},   // inside
      {tmp / "p/../p", tmp / "p/src/model"},  // contains a file input
  };
  for (const auto& [out, in] : bad) {
    const Status st = BuildDir(out, true, "x", {in});
    EXPECT_FALSE(st.ok()) << out << " vs " << in;
    EXPECT_NE(st.message().find("input"), std::string::npos) << st.message();
  }
  EXPECT_EQ(testing::ReadFile(tmp / "p/src/model"), "weights");
  // A symlink to the input is the input.
  fs::create_directory_symlink(tmp / "p/src", tmp / "link");
  EXPECT_FALSE(BuildDir(tmp / "link", true, "x", {tmp / "p/src"}).ok());
  // Siblings are fine.
  EXPECT_TRUE(BuildDir(tmp / "p/out", false, "x", {tmp / "p/src"}).ok());
  EXPECT_TRUE(BuildDir(tmp / "p/src2", false, "x", {tmp / "p/src"}).ok());
}

TEST(AtomicOutput, StagingOfAKilledRunIsRemovedAndALiveOneIsKept) {
  TempDir tmp;
  const long dead = DeadPid();
  ASSERT_GT(dead, 0);
  const std::string stale = tmp / ("out.tmp-" + std::to_string(dead) + "-0");
  const std::string live =
      tmp / ("out.tmp-" + std::to_string(::getppid()) + "-3");  // our parent runs
  const std::string other =
      tmp / ("output.tmp-" + std::to_string(dead) + "-0");  // another output's
  for (const std::string& d : {stale, live, other}) {
    fs::create_directories(d + "/sub");
    testing::WriteFile(d + "/sub/big", std::string(1000, 'z'));
  }
  ASSERT_TRUE(BuildDir(tmp / "out", false, "x").ok());
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  // Long names: the staging prefix is the shortened name, and stale entries are still found.
  const std::string name(250, 'n');
  const std::string long_stale =
      tmp / (name.substr(0, 231) + ".tmp-" + std::to_string(dead) + "-7");
  fs::create_directories(long_stale);
  ASSERT_TRUE(BuildDir(tmp / name, false, "x").ok());
  EXPECT_FALSE(fs::exists(long_stale));
}

}  // namespace
}  // namespace escale
