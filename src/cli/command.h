// Subcommands register themselves: each cli/cmd_*.cpp defines one `static CommandRegistration`
// that adds its CLI11 subcommand and returns the function to run when it is chosen.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/status.h"

namespace escale::cli {

using RunFn = std::function<Status()>;
// Adds the subcommand (options bound to variables the returned RunFn captures) to `app`.
using SetupFn = std::function<RunFn(CLI::App& app)>;

struct CommandRegistration {
  CommandRegistration(int order, SetupFn setup);
};

struct RegisteredCommand {
  int order;
  SetupFn setup;
};
std::vector<RegisteredCommand>& Registry();

}  // namespace escale::cli
