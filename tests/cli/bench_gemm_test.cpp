// escale bench gemm: with --size, the one OpenBLAS-threaded size it names; without, the MFU peak
// (the best of both ways of threading at 1024 and 2048: the size and thread count it reports are
// asserted, not its rate); bad sizes are refused on the command line (exit 2). No timing is
// asserted: figures go to docs/benchmarks.md.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace escale {
namespace {

using json = nlohmann::json;
using testing::RunEscale;

TEST(BenchGemm, OneSizeOrThePeakAsJson) {
  const auto one = RunEscale("bench gemm --size 64 --threads 1 --seconds 0.05 --json");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const json a = json::parse(one.out);
  EXPECT_EQ(a["size"], 64);
  EXPECT_EQ(a["peak"], false);
  EXPECT_EQ(a["team"], false);
  EXPECT_GT(a["gflops"].get<double>(), 0.0);

  const auto peak = RunEscale("bench gemm --threads 1 --seconds 0.2 --json");
  ASSERT_EQ(peak.exit_code, 0) << peak.err;
  const json p = json::parse(peak.out);
  EXPECT_EQ(p["peak"], true);
  EXPECT_TRUE(p["size"] == 1024 || p["size"] == 2048) << p.dump();
  EXPECT_EQ(p["threads"], 1);
  EXPECT_GT(p["gflops"].get<double>(), 0.0);
}

TEST(BenchGemm, BadSizesAreRefusedOnTheCommandLine) {
  for (const char* size : {"8", "abc", "-5", "20000"}) {
    const auto r = RunEscale(std::string("bench gemm --size ") + size);
    EXPECT_EQ(r.exit_code, 2) << size << ": " << r.err;
    EXPECT_NE(r.err.find("--size"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace escale
