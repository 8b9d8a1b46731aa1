// Checks a whole pipeline recipe up front (run and --dry-run alike): every stage's training table
// through escale train's own option table and validation, every [scale_up] / [scale_out] key
// against the options of the command it becomes. One line naming the table and key on failure.
#pragma once

#include <string>

#include "core/status.h"
#include "pipeline/recipe.h"

namespace escale::pipeline {

// `executable`: escale itself, asked for the surgery commands' options (their --help).
Status CheckRecipe(const Recipe& r, const std::string& executable);

// The in-process part of CheckRecipe: every stage's training table, as `escale train` reads and
// validates it. (The fuzz target for recipes runs this; the surgery keys need the binary.)
Status CheckRecipeTraining(const Recipe& r);

}  // namespace escale::pipeline
