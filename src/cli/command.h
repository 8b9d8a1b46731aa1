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

// A command with subcommands of its own ("bench", "tokenizer"): returned if it exists, else
// added. A registration that adds "bench gemm" calls this and adds its leaf to the group.
CLI::App* CommandGroup(CLI::App& app, const std::string& name, const std::string& help);

}  // namespace escale::cli
