// A mapped input truncated by another process while escale reads it: one line naming the file,
// exit status 1, and no staging output left behind (instead of death by SIGBUS).
#include "core/input_fault_guard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/atomic_output.h"
#include "core/mapped_file.h"
#include "support/test_support.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

void ReadAfterTruncation(const std::string& input, const std::string& output) {
  auto f = MappedFile::Open(input);
  if (!f.ok()) std::_Exit(3);
  auto dir = StagingDir::Create(output, false);
  if (!dir.ok()) std::_Exit(4);
  testing::WriteFile(dir->path() + "/model.safetensors", "half written");
  auto file = AtomicFile::Create(output + ".json");
  if (!file.ok()) std::_Exit(5);
  if (::truncate(input.c_str(), 0) != 0) std::_Exit(6);
  volatile std::byte b = (*f)->data()[3 * 4096];  // the page is gone: SIGBUS
  (void)b;
  std::_Exit(7);
}

TEST(InputFaultGuardDeathTest, ATruncatedMappedInputIsOneLineAndLeavesNoStaging) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir tmp;
  const std::string input = tmp / "source.safetensors";
  testing::WriteFile(input, std::string(1 << 16, 'x'));
  EXPECT_EXIT(ReadAfterTruncation(input, tmp / "out"), ::testing::ExitedWithCode(1),
              "error: .*source.safetensors shrank while it was being read .*the unfinished output "
              "was removed");
  // Only the (now empty) input is left: the staging directory and the temporary file are gone.
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename(), "source.safetensors") << e.path();
}

// A SIGBUS outside every registered mapping is not an input problem: the guard stays out of it.
TEST(InputFaultGuardDeathTest, AnUnrelatedSigbusKeepsItsDefaultAction) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir tmp;
  testing::WriteFile(tmp / "a", "abc");
  ASSERT_TRUE(MappedFile::Open(tmp / "a").ok());  // installs the handler
  EXPECT_EXIT(::raise(SIGBUS), ::testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace escale
