#include "core/json_text.h"

#include <algorithm>

namespace escale {

Result<nlohmann::json> ParseJsonText(const std::string& text, const std::string& what) {
  // A raw NUL is never valid JSON (control characters inside strings must be escaped), and the
  // parser would take it for the end of the input, ignoring whatever follows.
  if (const size_t z = text.find('\0'); z != std::string::npos)
    return FormatError(what + " is not valid JSON: a NUL byte at byte " + std::to_string(z) +
                       " (the file is truncated, padded or not text)");
  try {
    // Trailing content after the document is an error: the whole input is parsed.
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based and points just past the offending character.
    const size_t at =
        std::min(text.size(), e.byte > 0 ? static_cast<size_t>(e.byte - 1) : size_t{0});
    const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + at, '\n'));
    const size_t line_start = text.rfind('\n', at == 0 ? 0 : at - 1);
    const size_t column =
        at - (line_start == std::string::npos || at == 0 ? 0 : line_start + 1) + 1;
    std::string msg = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." -> the
    // reason.
    if (const size_t colon = msg.find(": "); colon != std::string::npos)
      msg = msg.substr(colon + 2);
    return FormatError(what + " is not valid JSON: line " + std::to_string(line) + ", column " +
                       std::to_string(column) + ": " + msg);
  } catch (const nlohmann::json::exception& e) {
    // Not a syntax error but a value the parser cannot hold (a number beyond double's range: 1e999,
    // found by fuzzing), thrown as out_of_range.406: refused the same way.
    std::string msg = e.what();
    if (const size_t b = msg.find("] "); b != std::string::npos) msg = msg.substr(b + 2);
    return FormatError(what + " is not valid JSON: " + msg);
  }
}

}  // namespace escale
