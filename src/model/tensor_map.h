// A model's weights by canonical name (model/layout.h): what readers produce, surgery rewrites and
// every engine consumes.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace escale {

using TensorMap = std::map<std::string, Tensor>;  // canonical name -> tensor (any float dtype)

}  // namespace escale
