// Pre-tokenizer regexes run verbatim through PCRE2 (UTF + UCP, JIT when available): the Llama 3
// and Qwen2 patterns need \p{L}, \p{N}, (?i:...), lookahead and leftmost-first alternation.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace escale::tok {

class Regex {
 public:
  static Result<std::shared_ptr<const Regex>> Compile(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  const std::string& pattern() const { return pattern_; }

  // Per-thread match state.
  class Matcher {
   public:
    explicit Matcher(const Regex& re);
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    // Appends [begin, end) of every non-overlapping match in `text` (valid UTF-8) to `out`.
    // Every match attempt is bounded (PCRE2 match and depth limits): a pattern that backtracks
    // catastrophically on this text stops there, the rest of the text becomes one match so that
    // nothing is lost, and exhausted() says so until ClearExhausted().
    void FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>& out);
    bool exhausted() const { return exhausted_; }
    void ClearExhausted() { exhausted_ = false; }

   private:
    const Regex& re_;
    void* match_data_ = nullptr;
    bool exhausted_ = false;
  };

 private:
  Regex() = default;
  std::string pattern_;
  void* code_ = nullptr;
  bool jit_ = false;
};

}  // namespace escale::tok
