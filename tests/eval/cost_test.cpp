// Cost accounting reproduces AquilaMoE Table 6 and checks its inputs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "eval/cost.h"
#include "support/test_support.h"

namespace escale {
namespace {

TEST(Cost, ReproducesPaperTable6) {
  auto r = ComputeCost(PaperTable6Phases(), PaperTable6Scratch());
  ASSERT_TRUE(r.ok()) << r.status().message();
  // The paper reports 4.12x time and 3.35x compute savings.
  EXPECT_NEAR(r->time_savings, 4.12, 0.005);
  EXPECT_NEAR(r->compute_savings, 3.35, 0.005);
  EXPECT_DOUBLE_EQ(r->scratch.tokens, 5345e9);
  // Hand-computed: 3600/279 + 1200/70 + 545/25 days.
  EXPECT_NEAR(r->days, 3600.0 / 279 + 1200.0 / 70 + 545.0 / 25, 1e-9);
}

TEST(Cost, SinglePhaseEqualToScratchSavesNothing) {
  CostPhase p{"same", 1e9, 2e8, 8, 100};
  auto r = ComputeCost({p}, {"", 0, 2e8, 8, 100});
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r->time_savings, 1.0);
  EXPECT_DOUBLE_EQ(r->compute_savings, 1.0);
}

TEST(Cost, ParsesQuantitiesAndRefusesGarbage) {
  EXPECT_DOUBLE_EQ(ParseQuantity("3600B").value(), 3600e9);
  EXPECT_DOUBLE_EQ(ParseQuantity("1.2T").value(), 1.2e12);
  EXPECT_DOUBLE_EQ(ParseQuantity("545e9").value(), 545e9);
  EXPECT_FALSE(ParseQuantity("12X").ok());
  EXPECT_FALSE(ParseQuantity("").ok());
  EXPECT_FALSE(ParseCostPhase("a:1:2:3", true).ok());
  EXPECT_FALSE(ComputeCost({{"zero", 1e9, 0, 1, 1}}, PaperTable6Scratch()).ok());
}

TEST(CostCli, PaperTableAsJsonAndBadFlags) {
  auto r = testing::RunEscale("cost --paper-table6 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j["time_savings"].get<double>(), 4.1237, 1e-3);
  EXPECT_NEAR(j["compute_savings"].get<double>(), 3.347, 1e-3);
  auto bad = testing::RunEscale("cost --phase x:1B:oops:1:1 --scratch 1B:1:1");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("'oops' is not a number"), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
}

}  // namespace
}  // namespace escale
