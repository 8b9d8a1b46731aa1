#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenizer_regex.h"

#include <pcre2.h>

#include "tokenizer/byte_level.h"

namespace escale::tok {

namespace {
pcre2_code* Code(void* p) {
  return static_cast<pcre2_code*>(p);
}
pcre2_match_data* Data(void* p) {
  return static_cast<pcre2_match_data*>(p);
}

// Work bounds of one match attempt. A pre-tokenizer match is one word, number or run of
// whitespace: real patterns (GPT-2, Llama 3, Qwen) need a few hundred steps; (a+)+$ on a 2 kB line
// needs more than 2^2000. The interpreter's heap and the JIT stack are bounded too.
constexpr uint32_t kMatchLimit = 20'000'000;
constexpr uint32_t kDepthLimit = 200'000;
constexpr PCRE2_SIZE kHeapLimitKiB = 64 * 1024;

// One JIT stack per thread, large enough for `\s+(?!\S)` over very long whitespace runs, and the
// limits above for both the JIT and the interpreter.
struct JitStack {
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* ctx = nullptr;
  pcre2_match_context* interp = nullptr;
  JitStack() {
    stack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    interp = pcre2_match_context_create(nullptr);
    for (pcre2_match_context* c : {ctx, interp}) {
      if (c == nullptr) continue;
      pcre2_set_match_limit(c, kMatchLimit);
      pcre2_set_depth_limit(c, kDepthLimit);
      pcre2_set_heap_limit(c, kHeapLimitKiB);
    }
    if (stack != nullptr && ctx != nullptr) pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~JitStack() {
    if (ctx != nullptr) pcre2_match_context_free(ctx);
    if (interp != nullptr) pcre2_match_context_free(interp);
    if (stack != nullptr) pcre2_jit_stack_free(stack);
  }
};
JitStack& ThreadStack() {
  thread_local JitStack js;
  return js;
}
}  // namespace

Result<std::shared_ptr<const Regex>> Regex::Compile(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    return FormatError("pre-tokenizer regex does not compile at offset " + std::to_string(err_off) +
                       ": " + reinterpret_cast<const char*>(buf) + " (pattern: " + pattern + ")");
  }
  std::shared_ptr<Regex> re(new Regex());
  re->pattern_ = pattern;
  re->code_ = code;
  re->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return std::shared_ptr<const Regex>(std::move(re));
}

Regex::~Regex() {
  if (code_ != nullptr) pcre2_code_free(Code(code_));
}

Regex::Matcher::Matcher(const Regex& re) : re_(re) {
  match_data_ = pcre2_match_data_create_from_pattern(Code(re.code_), nullptr);
}

Regex::Matcher::~Matcher() {
  if (match_data_ != nullptr) pcre2_match_data_free(Data(match_data_));
}

void Regex::Matcher::FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  JitStack& js = ThreadStack();
  size_t pos = 0;
  while (pos < text.size()) {
    int rc = pcre2_match(Code(re_.code_), subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                         Data(match_data_), js.ctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && re_.jit_) {
      // The JIT stack is smaller than the interpreter's heap limit: retry there, same limits.
      rc = pcre2_match(Code(re_.code_), subject, text.size(), pos,
                       PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, Data(match_data_), js.interp);
    }
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc < 0) {
      // A limit: retrying at the next character would pay the same bound once per byte. The
      // rest of the text becomes one piece (no text is lost) and the caller is told.
      exhausted_ = true;
      out.emplace_back(pos, text.size());
      return;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(Data(match_data_));
    const size_t b = ov[0];
    const size_t e = ov[1];
    if (e == b) {  // empty match: no pattern we load produces one, but never loop forever
      pos = b + std::max<size_t>(1, b < text.size() ? Utf8SequenceLength(text, b) : 1);
      continue;
    }
    out.emplace_back(b, e);
    pos = e;
  }
}

}  // namespace escale::tok
