#include "eval/answer_extraction.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>

namespace escale::eval {

namespace {
pcre2_code* Code(void* p) {
  return static_cast<pcre2_code*>(p);
}

// Python's str.strip() for the ASCII whitespace answers contain.
std::string Strip(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r\f\v");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\n\r\f\v") - b + 1);
}
}  // namespace

Result<std::shared_ptr<const Pattern>> Pattern::Compile(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return InvalidArgument("regex '" + pattern +
                           "' does not compile: " + reinterpret_cast<const char*>(msg));
  }
  std::shared_ptr<Pattern> p(new Pattern());
  p->code_ = code;
  uint32_t groups = 0;
  pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &groups);
  p->groups_ = static_cast<int>(groups);
  return std::shared_ptr<const Pattern>(std::move(p));
}

Pattern::~Pattern() {
  pcre2_code_free(Code(code_));
}

std::vector<std::vector<std::string>> Pattern::FindAll(const std::string& text) const {
  std::vector<std::vector<std::string>> out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(Code(code_), nullptr);
  PCRE2_SIZE start = 0;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  while (start <= text.size()) {
    const int rc = pcre2_match(Code(code_), subject, text.size(), start, 0, md, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    std::vector<std::string> m;
    if (groups_ == 0) {
      m.push_back(text.substr(ov[0], ov[1] - ov[0]));
    } else {
      for (int g = 1; g <= groups_; ++g) {
        const bool set = g < rc && ov[2 * g] != PCRE2_UNSET;
        m.push_back(set ? text.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]) : std::string());
      }
    }
    out.push_back(std::move(m));
    // Like Python's finditer: after an empty match, move on by one character.
    if (ov[1] == ov[0]) {
      start = ov[1] + 1;
      while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xc0) == 0x80)
        ++start;
    } else {
      start = ov[1];
    }
  }
  pcre2_match_data_free(md);
  return out;
}

std::string Pattern::ReplaceAll(const std::string& text, const std::string& replacement) const {
  std::string out;
  PCRE2_SIZE prev = 0;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(Code(code_), nullptr);
  PCRE2_SIZE start = 0;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  while (start <= text.size()) {
    const int rc = pcre2_match(Code(code_), subject, text.size(), start, 0, md, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    out.append(text, prev, ov[0] - prev);
    out += replacement;
    prev = ov[1];
    if (ov[1] == ov[0]) {
      if (ov[1] >= text.size()) break;
      size_t next = ov[1] + 1;
      while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xc0) == 0x80) ++next;
      out.append(text, ov[1], next - ov[1]);
      prev = start = next;
    } else {
      start = ov[1];
    }
  }
  pcre2_match_data_free(md);
  if (prev < text.size()) out.append(text, prev, std::string::npos);
  return out;
}

std::string ExtractAnswer(const Pattern& p, const std::string& text, int group_select) {
  const auto matches = p.FindAll(text);
  if (matches.empty()) return "[invalid]";
  const int n = static_cast<int>(matches.size());
  const int i = group_select < 0 ? n + group_select : group_select;
  if (i < 0 || i >= n) return "[invalid]";
  const auto& m = matches[static_cast<size_t>(i)];
  if (m.size() == 1) return Strip(m.front());
  // Several groups (a tuple in Python): the first non-empty one, else the fallback.
  for (const auto& g : m)
    if (!g.empty()) return Strip(g);
  return "[invalid]";
}

Result<Gsm8kExtractors> Gsm8kExtractors::Create() {
  Gsm8kExtractors x;
  ESCALE_ASSIGN_OR_RETURN(x.strict, Pattern::Compile(R"(#### (\-?[0-9\.\,]+))"));
  ESCALE_ASSIGN_OR_RETURN(x.flexible, Pattern::Compile(R"((-?[$0-9.,]{2,})|(-?[0-9]+))"));
  for (const char* r : {",", "\\$", "(?s).*#### ", "\\.$"}) {
    ESCALE_ASSIGN_OR_RETURN(auto p, Pattern::Compile(r));
    x.ignore.push_back(std::move(p));
  }
  return x;
}

bool Gsm8kExtractors::ExactMatch(const std::string& prediction,
                                 const std::string& reference) const {
  auto norm = [&](std::string s) {
    for (const auto& p : ignore) s = p->ReplaceAll(s, "");
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
  };
  return norm(prediction) == norm(reference);
}

}  // namespace escale::eval
