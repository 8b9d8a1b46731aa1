// escale: one binary, one subcommand per phase of EfficientScale (docs/method.md §7).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <new>

#include "cli/command.h"
#include "core/progress.h"
#include "dist/communicator.h"

namespace escale::cli {

std::vector<RegisteredCommand>& Registry() {
  static std::vector<RegisteredCommand> r;
  return r;
}

CommandRegistration::CommandRegistration(int order, SetupFn setup) {
  Registry().push_back({order, std::move(setup)});
}

CLI::App* CommandGroup(CLI::App& app, const std::string& name, const std::string& help) {
  for (CLI::App* sub : app.get_subcommands({}))
    if (sub->get_name() == name) return sub;
  CLI::App* group = app.add_subcommand(name, help);
  group->require_subcommand(1);
  return group;
}

namespace {
void CollectCommands(CLI::App* app, int depth, std::vector<std::pair<CLI::App*, int>>& out) {
  for (CLI::App* sub : app->get_subcommands({})) {
    out.emplace_back(sub, depth);
    CollectCommands(sub, depth + 1, out);
  }
}

int Run(int argc, char** argv) {
  CLI::App app{"escale: grow small dense language models into larger dense and Mixture-of-Experts "
               "models (EfficientScale: scale-up, scale-out, continued pretraining, evaluation)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "escale 0.1.0");
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "No progress display");
  auto& reg = Registry();
  std::sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  // Every command a registration adds (a group and its leaves) runs that registration's function;
  // at run time the deepest parsed command wins, so "bench gemm" and "bench train" can come from
  // two files while "tokenizer" can dispatch its own subcommands.
  struct Entry {
    CLI::App* app;
    int depth;
    std::shared_ptr<RunFn> fn;
  };
  std::vector<Entry> commands;
  for (auto& c : reg) {
    std::vector<std::pair<CLI::App*, int>> before, after;
    CollectCommands(&app, 0, before);
    auto fn = std::make_shared<RunFn>(c.setup(app));
    CollectCommands(&app, 0, after);
    for (const auto& cmd : after) {
      const bool is_new = std::none_of(before.begin(), before.end(),
                                       [&](const auto& b) { return b.first == cmd.first; });
      if (is_new) commands.push_back({cmd.first, cmd.second, fn});
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "escale: error: %s (see 'escale --help')\n", e.what());
    return 2;
  }
  Progress::SetGloballyEnabled(!quiet);
  const Entry* chosen = nullptr;
  for (const Entry& e : commands)
    if (e.app->parsed() && (chosen == nullptr || e.depth > chosen->depth)) chosen = &e;
  if (chosen != nullptr) {
    CLI::App* sub = chosen->app;
    std::string name = sub->get_name();
    for (CLI::App* p = sub->get_parent(); p != nullptr && p->get_parent() != nullptr; p = p->get_parent())
      name = p->get_name() + " " + name;
    // Under an MPI launcher the ranks agree on one status and rank 0 alone reports it; only
    // `train` knows how to share its work, any other command would run N times over one output.
    const dist::LaunchInfo launch = dist::DetectLauncher();
    const Status st = launch.launched && launch.size != 1 && name != "train"
                          ? Unsupported("only 'escale train' runs under an MPI launcher; run " + name + " as one process")
                          : (*chosen->fn)();
    if (!st.ok() && launch.rank == 0) std::fprintf(stderr, "escale %s: error: %s\n", name.c_str(), st.message().c_str());
    dist::FinalizeWorld();
    return st.ok() ? 0 : 1;
  }
  std::fprintf(stderr, "escale: error: no command given (see 'escale --help')\n");
  return 2;
}
}  // namespace
}  // namespace escale::cli

int main(int argc, char** argv) {
  // Anything a user can cause returns a Status; this net turns whatever escaped (allocation
  // failure, a library exception) into one line and a non-zero exit instead of an abort.
  try {
    return escale::cli::Run(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "escale: error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "escale: error: %s\n", e.what());
  }
  return 1;
}
