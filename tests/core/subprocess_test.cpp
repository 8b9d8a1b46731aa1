// RunProcess: output capture on both streams, exit codes, environment overrides, missing programs.
#include "core/subprocess.h"

#include <gtest/gtest.h>

namespace escale {
namespace {

TEST(Subprocess, CapturesStreamsAndExitCode) {
  auto r = RunProcess({"sh", "-c", "printf 'out 1'; printf 'err 2' >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->out, "out 1");
  EXPECT_EQ(r->err, "err 2");
  EXPECT_EQ(r->exit_code, 3);
}

TEST(Subprocess, LargeOutputOnBothStreamsDoesNotDeadlock) {
  // 1 MB on each stream: more than a pipe buffer, so both must be drained together.
  auto r = RunProcess({"sh", "-c", "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->out.size(), 1000000u);
  EXPECT_EQ(r->err.size(), 1000000u);
  EXPECT_EQ(r->exit_code, 0);
}

TEST(Subprocess, EnvironmentOverridesAndInherits) {
  setenv("ESCALE_SUBPROCESS_TEST", "outer", 1);
  setenv("ESCALE_SUBPROCESS_KEEP", "kept", 1);
  auto r = RunProcess(
      {"sh", "-c", "printf '%s %s' \"$ESCALE_SUBPROCESS_TEST\" \"$ESCALE_SUBPROCESS_KEEP\""},
      {{"ESCALE_SUBPROCESS_TEST", "inner"}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->out, "inner kept");
}

TEST(Subprocess, MissingProgramIsNotFound) {
  auto r = RunProcess({"escale-no-such-program-xyz"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kNotFound);
}

TEST(Subprocess, SignalGives128PlusSignal) {
  auto r = RunProcess({"sh", "-c", "kill -9 $$"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->exit_code, 128 + 9);
}

}  // namespace
}  // namespace escale
