// Runs a child process and tees its output (stdout and stderr merged) to our stdout and to a log
// file, so a pipeline stage shows its progress live and keeps a record of it.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace escale {

// Returns the child's exit code, or 128 + signal when it was killed. `log_path` empty: no log.
Result<int> RunProcessTee(const std::vector<std::string>& argv, const std::string& log_path);

// The path of the running executable (/proc/self/exe).
Result<std::string> SelfExecutable();

// Shell-quotes argv for display and logs ("a 'b c'").
std::string ShellJoin(const std::vector<std::string>& argv);

}  // namespace escale
