// Running a helper program (a benchmark baseline in node or Python) and capturing its output.
// Arguments are passed as a vector, never through a shell, so paths need no quoting.
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

}  // namespace escale
