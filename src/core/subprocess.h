// Running child programs: capturing a helper's output (a benchmark baseline in node or Python), or
// teeing a pipeline stage's output to our stdout and a log. Arguments are passed as a vector, never
// through a shell, so paths need no quoting.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace escale {

struct ProcessOutput {
  int exit_code = -1;  // 128 + signal number when the child was killed by a signal
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs argv[0] (looked up on PATH) with the current environment plus `env` (NAME, value pairs
// that override). NotFound when the program does not exist; other spawn failures are IoError.
Result<ProcessOutput> RunProcess(const std::vector<std::string>& argv,
                                 const std::vector<std::pair<std::string, std::string>>& env = {});

// Runs argv[0] (a path) and tees its output (stdout and stderr merged) to our stdout and to
// `log_path` (appended; empty: no log), so a pipeline stage shows its progress live and keeps a
// record. Returns the child's exit code, or 128 + signal when it was killed.
Result<int> RunProcessTee(const std::vector<std::string>& argv, const std::string& log_path);

// The path of the running executable (/proc/self/exe).
Result<std::string> SelfExecutable();

// Shell-quotes argv for display and logs ("a 'b c'").
std::string ShellJoin(const std::vector<std::string>& argv);

}  // namespace escale
