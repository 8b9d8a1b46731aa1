// The HTML report: tick choice and SVG charts, stage discovery and order, the figures in the stage
// table (computed here independently from the same records), and, when Chromium is installed,
// that a real browser parses the page into the expected tables and charts.
#include "pipeline/report.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "pipeline/svg_plot.h"
#include "support/test_support.h"

namespace escale::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

size_t Count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

TEST(SvgPlot, TicksAreRoundAndCoverTheRange) {
  const auto t = NiceTicks(0.13, 9.7);
  ASSERT_GE(t.size(), 4u);
  EXPECT_DOUBLE_EQ(t.front(), 2.0);  // steps of 2 from the first multiple above 0.13
  EXPECT_DOUBLE_EQ(t[1] - t[0], 2.0);
  EXPECT_LE(t.back(), 9.7);
  const auto small = NiceTicks(5.61, 5.69, 5);
  for (size_t i = 1; i < small.size(); ++i) EXPECT_NEAR(small[i] - small[i - 1], 0.02, 1e-12);
  EXPECT_EQ(NiceTicks(3, 3).size(), 1u);
}

TEST(SvgPlot, OnePolylinePerLineSeriesAndEscapedText) {
  PlotSpec p{"a < b & \"c\"", "x", "y", {}, {}, false};
  p.series.push_back({"one", {0, 1, 2}, {1, 2, 3}, false});
  p.series.push_back({"two", {0, 1}, {NAN, 5}, false});
  p.series.push_back({"dots", {0, 1, 2}, {1, 1, 1}, true});
  p.markers.push_back({1, "stage"});
  const std::string svg = RenderSvg(p);
  EXPECT_EQ(Count(svg, "<polyline"), 2u);
  EXPECT_EQ(Count(svg, "<circle"), 3u);
  EXPECT_EQ(Count(svg, "class=\"marker\""), 1u);
  EXPECT_NE(svg.find("a &lt; b &amp; &quot;c&quot;"), std::string::npos);
  PlotSpec empty{"nothing", "x", "y", {}, {}, false};
  EXPECT_NE(RenderSvg(empty).find("no data"), std::string::npos);
}

TEST(SvgPlot, LogXPlacesDecadesEvenlyAndSkipsNonPositiveX) {
  PlotSpec p{"log", "flops", "loss", {}, {}, false};
  p.log_x = true;
  p.series.push_back({"dots", {0, 1e10, 1e11, 1e12}, {9, 3, 2, 1}, true});
  const std::string svg = RenderSvg(p);
  EXPECT_EQ(Count(svg, "<circle"), 3u);  // x = 0 has no place on a log axis
  std::vector<double> cx;
  const std::regex circle("<circle cx=\"([0-9.]+)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), circle); it != std::sregex_iterator();
       ++it)
    cx.push_back(std::stod((*it)[1]));
  ASSERT_EQ(cx.size(), 3u);
  EXPECT_NEAR(cx[1] - cx[0], cx[2] - cx[1], 0.5);  // one decade, one equal step
}

TEST(Report, PipelineSummaryAddsTheComparisonAtEqualCompute) {
  const json summary = {
      {"stages",
       {{{"stage", "prepare"}, {"flops", 1e11}},
        {{"stage", "moe"}, {"flops", 2e11}},
        {{"stage", "baseline"}, {"flops", 6e11}}}},
      {"curves",
       {{"efficientscale", {{{"flops", 5e10}, {"loss", 6.0}}, {{"flops", 3e11}, {"loss", 4.0}}}},
        {"baseline_envelope", {{{"flops", 1e11}, {"loss", 7.0}}, {{"flops", 6e11}, {"loss", 4.5}}}},
        {"baseline_runs",
         {{"baseline", {{{"flops", 1e11}, {"loss", 7.0}}, {{"flops", 6e11}, {"loss", 4.5}}}}}}}},
      {"cost",
       {{"compute_savings_with_preparation", 2.5},
        {"compute_savings_without_preparation", nullptr},
        {"time_savings_with_preparation", 2.0},
        {"time_savings_without_preparation", 3.0},
        {"baseline_final_val_loss", 4.5},
        {"baseline_flops", 6e11},
        {"efficientscale_final_val_loss", 4.0},
        {"efficientscale_flops", 3e11},
        {"preparation_flops", 1e11},
        {"loss_gap_at_equal_flops", -0.6},
        {"target_loss", 4.5},
        {"target_loss_is", "the baseline's final loss"},
        {"baseline_to_target", "reached at 6e+11 FLOPs"},
        {"efficientscale_to_target", "reached at 2.4e+11 FLOPs"}}}};
  const std::string html = RenderReport({}, "t", &summary);
  EXPECT_NE(html.find("Validation loss against training compute"), std::string::npos);
  EXPECT_NE(html.find("id=\"savings\""), std::string::npos);
  EXPECT_NE(html.find("2.50&times;"), std::string::npos);
  EXPECT_NE(html.find("3.00&times;"), std::string::npos);
  EXPECT_NE(html.find("&ndash; (see below)"), std::string::npos);  // the null figure
  EXPECT_NE(html.find("to validation loss 4.5000"), std::string::npos);
  EXPECT_NE(html.find("reached at 2.4e+11 FLOPs"), std::string::npos);
  // EfficientScale's line, the envelope's line, the baseline run's dots; a stage boundary marker.
  EXPECT_GE(Count(html, "<polyline"), 2u);
  EXPECT_NE(html.find("class=\"marker\""), std::string::npos);
  // Without a summary the page has no such section.
  EXPECT_EQ(RenderReport({}, "t").find("id=\"savings\""), std::string::npos);
}

// A trainer-like metrics.jsonl: `steps` steps of `tokens_per_step`, loss falling from `start`.
void WriteMetrics(const std::string& dir, int steps, double start, bool moe, bool cut_last_line) {
  fs::create_directories(dir);
  std::string text = json{{"event", "eval"}, {"step", 0}, {"val_loss", start + 0.5}}.dump() + "\n";
  for (int s = 1; s <= steps; ++s) {
    json r = {{"step", s},           {"loss", start - 0.01 * s},   {"lr", 1e-3},
              {"tokens", 100.0 * s}, {"tokens_per_s", 1000.0 + s}, {"step_s", 0.1},
              {"mfu", 0.5}};
    if (moe)
      r["expert_load"] =
          json::array({{{"layer", 0}, {"cv", 0.1 * s}}, {{"layer", 1}, {"cv", 0.2}}});
    if (moe) r["aux"] = 1.0;
    text += r.dump() + "\n";
  }
  text += json{{"event", "eval"}, {"step", steps}, {"val_loss", start - 0.2}}.dump() + "\n";
  if (cut_last_line) text += "{\"step\": 99, \"loss\":";
  testing::WriteFile(dir + "/metrics.jsonl", text);
}

TEST(Report, StagesInWriteOrderWithTheirFigures) {
  TempDir tmp;
  WriteMetrics(tmp / "b_first", 20, 5.0, false, false);
  WriteMetrics(tmp / "a_second", 11, 4.0, true, true);
  // Make the write order disagree with the name order.
  const auto now = fs::file_time_type::clock::now();
  fs::last_write_time(tmp / "b_first/metrics.jsonl", now - std::chrono::hours(1));
  fs::last_write_time(tmp / "a_second/metrics.jsonl", now);
  fs::create_directories(tmp / "not_a_stage");
  auto stages = DiscoverStages(tmp.path());
  ASSERT_TRUE(stages.ok()) << stages.status().message();
  ASSERT_EQ(stages->size(), 2u);
  EXPECT_EQ((*stages)[0].name, "b_first");
  EXPECT_EQ((*stages)[1].name, "a_second");
  EXPECT_EQ((*stages)[1].skipped_lines, 1);
  EXPECT_EQ((*stages)[1].steps.size(), 11u);
  ASSERT_EQ((*stages)[1].evals.size(), 2u);
  const std::string html = RenderReport(*stages, "T");
  // Row figures: tokens of the last step, first/last val loss, mean of the last 10 losses.
  double tail = 0;
  for (int s = 11; s <= 20; ++s) tail += 5.0 - 0.01 * s;
  char want[64];
  std::snprintf(want, sizeof want, "%.4f", tail / 10);
  EXPECT_NE(html.find("<td>b_first</td><td>20</td><td>2000</td><td>5.5000</td><td>4.8000</td><td>" +
                      std::string(want)),
            std::string::npos);
  // Median tokens/s of 1001..1011 is 1006; the MoE stage's last CV is the mean of 1.1 and 0.2.
  EXPECT_NE(html.find("<td>1006</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>0.650</td>"), std::string::npos);
  EXPECT_NE(html.find("1 unreadable metrics line"), std::string::npos);
  EXPECT_NE(html.find("Mixture-of-Experts routing"), std::string::npos);
  // Loss, lr and throughput: one line per stage each; MoE: one per layer plus the aux loss.
  EXPECT_EQ(Count(html, "<polyline"), 2u * 3u + 2u + 1u);
}

TEST(Report, CliWritesTheFileAndRefusesEmptyDirectories) {
  TempDir tmp;
  WriteMetrics(tmp / "run/prep", 5, 6.0, false, false);
  auto r = testing::RunEscale("report " + (tmp / "run"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string html = testing::ReadFile(tmp / "run/report.html");
  EXPECT_NE(html.find("<td>prep</td>"), std::string::npos);
  fs::create_directories(tmp / "empty");
  for (const std::string& bad : {tmp / "empty", tmp / "missing"}) {
    auto e = testing::RunEscale("report " + bad);
    EXPECT_NE(e.exit_code, 0);
    EXPECT_EQ(std::count(e.err.begin(), e.err.end(), '\n'), 1) << e.err;
  }
  EXPECT_FALSE(fs::exists(tmp / "empty/report.html"));

  // A real browser: the parsed DOM holds the stage table and the charts.
  if (!fs::exists("/usr/bin/chromium"))
    GTEST_SKIP() << "chromium not installed (ESCALE_WITH_CHROMIUM=1 scripts/setup.sh)";
  auto dom = testing::RunShell(
      "/usr/bin/chromium --headless --no-sandbox --disable-gpu --dump-dom file://" +
      (tmp / "run/report.html"));
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  EXPECT_EQ(Count(dom.out, "<svg"), 4u);
  EXPECT_EQ(Count(dom.out, "<polyline"), 3u);
  EXPECT_NE(dom.out.find("<table id=\"stages\">"), std::string::npos);
  EXPECT_EQ(Count(dom.out, "<tr>"), 2u);
}

}  // namespace
}  // namespace escale::pipeline
