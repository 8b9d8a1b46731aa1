// Pipeline recipes: parsed, planned into stages, and every stage's training table checked as
// `escale train` would (the surgery keys are checked by asking the escale binary, a process per
// recipe: left to the tests).
#include "fuzz_input.h"
#include "pipeline/recipe.h"
#include "pipeline/recipe_check.h"
#include "pipeline/runner.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = escale::fuzz::FreshDir("recipe");
  escale::fuzz::WriteBytes(dir + "/recipe.toml", data, size);
  auto r = escale::pipeline::ParseRecipe(dir + "/recipe.toml");
  if (!r.ok()) return 0;
  (void)escale::pipeline::PlanStages(*r);
  (void)escale::pipeline::CheckRecipeTraining(*r);
  return 0;
}
