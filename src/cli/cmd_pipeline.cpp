// escale pipeline RECIPE.toml: the whole EfficientScale run (docs/pipeline.md).
#include <memory>

#include "cli/command.h"
#include "core/subprocess.h"
#include "pipeline/recipe.h"
#include "pipeline/runner.h"

namespace escale::cli {
namespace {

struct PipelineArgs {
  std::string recipe, out;
  std::vector<std::string> set;
  int64_t seed = -1;
  bool dry_run = false;
};

CommandRegistration reg(90, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<PipelineArgs>();
  CLI::App* c = app.add_subcommand(
      "pipeline",
      "The whole EfficientScale run from a recipe: data, dense model, scale-up, scale-out, "
      "training, from-scratch baseline, evaluation, cost, report (rerun to resume)");
  c->add_option("recipe", a->recipe, "Recipe TOML (see recipes/demo.toml and docs/pipeline.md)")
      ->required();
  c->add_option("--seed", a->seed,
                "Override the recipe's seed (initialisation, data order, router draws; the "
                "held-out split keeps [data] seed): one recipe, several seeds")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--out", a->out, "Override the recipe's run directory");
  c->add_option("--set", a->set,
                "KEY=VALUE: override one recipe value, e.g. --set scale_up.train.lr=1e-3 "
                "(repeatable; values are TOML: numbers, true/false, \"strings\")");
  c->add_flag("--dry-run", a->dry_run,
              "Print the stages and their commands (and which are done) without running");
  return [a]() -> Status {
    ESCALE_ASSIGN_OR_RETURN(pipeline::Recipe r, pipeline::ParseRecipe(a->recipe, a->set));
    if (a->seed >= 0) r.seed = static_cast<uint64_t>(a->seed);
    if (!a->out.empty()) r.out = a->out;
    pipeline::PipelineOptions o;
    o.dry_run = a->dry_run;
    ESCALE_ASSIGN_OR_RETURN(o.executable, SelfExecutable());
    return pipeline::RunPipeline(r, o);
  };
});

}  // namespace
}  // namespace escale::cli
