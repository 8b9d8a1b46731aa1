// What scale-up and scale-out share on the command line: --dtype, --dry-run, --overwrite and
// --carry-moments (the moments read from SRC's training checkpoint) into ConvertOptions.
#pragma once

#include <functional>
#include <string>

#include "core/status.h"
#include "surgery/convert.h"

namespace escale::cli {

struct ConversionArgs {
  std::string src, dst, dtype;
  bool dry_run = false, overwrite = false, carry_moments = false;
};

// Runs `convert` with the options the flags give and prints its plan and the output's name.
Status RunConversion(
    const ConversionArgs& a,
    const std::function<Result<std::string>(const surgery::ConvertOptions&)>& convert);

}  // namespace escale::cli
