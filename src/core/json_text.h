// JSON documents a user hands escale (config.json, tokenizer.json): a syntax error says where
// (line and column), and anything after the document (a NUL byte, a second object) is an error,
// not silently ignored.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace escale {

// `what` names the document in the error ("config.json", a path).
Result<nlohmann::json> ParseJsonText(const std::string& text, const std::string& what);

}  // namespace escale
