// escale report RUN_DIR: an HTML page with the run's stage table and plots.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/command.h"
#include "core/atomic_output.h"
#include "pipeline/report.h"

namespace escale::cli {
namespace {

struct ReportArgs {
  std::string run_dir, output, title;
};

Status RunReport(const ReportArgs& a) {
  ESCALE_ASSIGN_OR_RETURN(std::vector<pipeline::StageMetrics> stages,
                          pipeline::DiscoverStages(a.run_dir));
  const std::string out = a.output.empty() ? a.run_dir + "/report.html" : a.output;
  const std::string title = a.title.empty() ? "escale run: " + a.run_dir : a.title;
  // A pipeline run's summary adds the comparison at equal compute.
  std::optional<nlohmann::json> summary;
  if (std::filesystem::exists(a.run_dir + "/pipeline.json")) {
    ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(a.run_dir + "/pipeline.json"));
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return FormatError(a.run_dir + "/pipeline.json is not valid JSON; rerun escale pipeline");
    summary = std::move(j);
  }
  ESCALE_RETURN_IF_ERROR(
      WriteFileAtomic(out, pipeline::RenderReport(stages, title, summary ? &*summary : nullptr)));
  std::printf("%s (%zu stage%s)\n", out.c_str(), stages.size(), stages.size() == 1 ? "" : "s");
  return Status::Ok();
}

CommandRegistration reg(80, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<ReportArgs>();
  CLI::App* c = app.add_subcommand(
      "report", "HTML report of a run: stage table, loss curves, throughput, expert load");
  c->add_option("run_dir", a->run_dir,
                "A training output directory, or a run directory whose subdirectories are stages")
      ->required();
  c->add_option("-o,--output", a->output, "Output HTML file (default: RUN_DIR/report.html)");
  c->add_option("--title", a->title, "Page title");
  return [a]() { return RunReport(*a); };
});

}  // namespace
}  // namespace escale::cli
