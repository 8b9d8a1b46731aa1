// escale compare NAME=RUN ...: validation curves of training runs at equal compute (an SVG plot
// and a Markdown table).
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "core/atomic_output.h"
#include "pipeline/compare.h"

namespace escale::cli {
namespace {

struct CompareArgs {
  std::vector<std::string> runs;
  std::string svg, markdown, axis = "flops", title = "Validation loss";
};

Status RunCompare(const CompareArgs& a) {
  std::vector<pipeline::CompareInput> inputs;
  std::vector<pipeline::ComparedRun> runs;
  for (const std::string& text : a.runs) {
    ESCALE_ASSIGN_OR_RETURN(pipeline::CompareInput in,
                            pipeline::ParseCompareInput(text, inputs, runs));
    ESCALE_ASSIGN_OR_RETURN(pipeline::ComparedRun r, pipeline::ReadComparedRun(in));
    inputs.push_back(in);
    runs.push_back(std::move(r));
  }
  const std::string table = pipeline::CompareTable(runs);
  if (!a.svg.empty())
    ESCALE_RETURN_IF_ERROR(WriteFileAtomic(
        a.svg, pipeline::RenderCompareSvg(runs,
                                          a.axis == "tokens" ? pipeline::CompareAxis::kTokens
                                                             : pipeline::CompareAxis::kFlops,
                                          a.title)));
  if (!a.markdown.empty()) ESCALE_RETURN_IF_ERROR(WriteFileAtomic(a.markdown, table));
  std::fputs(table.c_str(), stdout);
  return Status::Ok();
}

CommandRegistration reg(85, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* c = app.add_subcommand(
      "compare", "Training runs side by side at equal compute: validation loss against FLOPs");
  c->add_option("runs", a->runs,
                "NAME=RUN_DIR, or NAME=RUN_DIR@OFFSET to start it after OFFSET FLOPs (a number, "
                "or the name of an earlier run it continues)")
      ->required();
  c->add_option("--svg", a->svg, "Write the plot here (inline-SVG file)");
  c->add_option("--markdown", a->markdown, "Write the table here");
  c->add_option("--axis", a->axis, "x axis: flops (log scale) or tokens")
      ->check(CLI::IsMember({"flops", "tokens"}))
      ->capture_default_str();
  c->add_option("--title", a->title, "Plot title");
  return [a]() { return RunCompare(*a); };
});

}  // namespace
}  // namespace escale::cli
