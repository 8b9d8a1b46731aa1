// GSM8K answer extraction and exact match as lm-evaluation-harness does them
// (docs/eval.md, "GSM8K"): the "strict-match" and "flexible-extract" regex filters and the
// exact_match metric with its regexes_to_ignore, run through PCRE2 (same semantics as Python's
// `re` for these patterns).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale::eval {

// One compiled pattern (UTF mode; invalid UTF-8 in the subject never matches across it).
class Pattern {
 public:
  static Result<std::shared_ptr<const Pattern>> Compile(const std::string& pattern);
  ~Pattern();
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;
  // Every non-overlapping match, left to right: the captured groups (empty string for a group that
  // did not take part), or the whole match when the pattern has no groups.
  std::vector<std::vector<std::string>> FindAll(const std::string& text) const;
  // re.sub(pattern, replacement, text) with a literal replacement.
  std::string ReplaceAll(const std::string& text, const std::string& replacement) const;

 private:
  Pattern() = default;
  void* code_ = nullptr;
  int groups_ = 0;
};

// lm-eval's RegexFilter: the match at `group_select` (0 first, -1 last); for a match with several
// groups, the first non-empty one; stripped; "[invalid]" when nothing matches.
std::string ExtractAnswer(const Pattern& p, const std::string& text, int group_select);

struct Gsm8kExtractors {
  std::shared_ptr<const Pattern> strict, flexible;
  std::vector<std::shared_ptr<const Pattern>> ignore;  // exact_match's regexes_to_ignore
  static Result<Gsm8kExtractors> Create();
  std::string Strict(const std::string& generation) const {
    return ExtractAnswer(*strict, generation, 0);
  }
  std::string Flexible(const std::string& generation) const {
    return ExtractAnswer(*flexible, generation, -1);
  }
  // exact_match(ignore_case=true, ignore_punctuation=false, regexes_to_ignore).
  bool ExactMatch(const std::string& prediction, const std::string& reference) const;
};

}  // namespace escale::eval
