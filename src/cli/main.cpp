// escale: one binary, one subcommand per phase of EfficientScale (SPEC.md §7).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <new>

#include "cli/command.h"
#include "core/progress.h"

namespace escale::cli {

std::vector<RegisteredCommand>& Registry() {
  static std::vector<RegisteredCommand> r;
  return r;
}

CommandRegistration::CommandRegistration(int order, SetupFn setup) {
  Registry().push_back({order, std::move(setup)});
}

namespace {
int Run(int argc, char** argv) {
  CLI::App app{"escale: grow small dense language models into larger dense and Mixture-of-Experts "
               "models (EfficientScale: scale-up, scale-out, continued pretraining, evaluation)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "escale 0.1.0");
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "No progress display");
  auto& reg = Registry();
  std::sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  std::vector<std::pair<CLI::App*, RunFn>> commands;
  for (auto& c : reg) {
    const size_t before = app.get_subcommands({}).size();
    RunFn fn = c.setup(app);
    auto subs = app.get_subcommands({});
    if (subs.size() > before) commands.emplace_back(subs.back(), std::move(fn));
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
  for (auto& [sub, fn] : commands) {
    if (!sub->parsed()) continue;
    const Status st = fn();
    if (!st.ok()) {
      std::fprintf(stderr, "escale %s: error: %s\n", sub->get_name().c_str(), st.message().c_str());
      return 1;
    }
    return 0;
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
