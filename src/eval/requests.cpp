#include "eval/requests.h"

#include <algorithm>

namespace escale::eval {

namespace {

// Python's str.isspace set: bidirectional types WS, B, S and category Zs.
bool IsPythonSpace(uint32_t c) {
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return true;
  switch (c) {
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200a;
  }
}

// Decodes the UTF-8 character that ends at s[end-1]; returns its length, 0 when invalid.
size_t LastCodepoint(std::string_view s, size_t end, uint32_t& cp) {
  size_t start = end;
  int cont = 0;
  while (start > 0 && cont < 4 && (static_cast<unsigned char>(s[start - 1]) & 0xc0) == 0x80)
    --start, ++cont;
  if (start == 0) return 0;
  --start;
  const auto lead = static_cast<unsigned char>(s[start]);
  const size_t len = end - start;
  int want;
  if (lead < 0x80)
    want = 1, cp = lead;
  else if ((lead & 0xe0) == 0xc0)
    want = 2, cp = lead & 0x1f;
  else if ((lead & 0xf0) == 0xe0)
    want = 3, cp = lead & 0x0f;
  else if ((lead & 0xf8) == 0xf0)
    want = 4, cp = lead & 0x07;
  else
    return 0;
  if (static_cast<size_t>(want) != len) return 0;
  for (size_t i = start + 1; i < end; ++i)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3f);
  return len;
}

}  // namespace

size_t TrailingPythonWhitespace(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    uint32_t cp = 0;
    const size_t len = LastCodepoint(s, end, cp);
    if (len == 0 || !IsPythonSpace(cp)) break;
    end -= len;
  }
  return s.size() - end;
}

int32_t PrefixToken(const tok::Tokenizer& tok) {
  if (auto b = tok.bos_id()) return *b;
  if (auto e = tok.eos_id()) return *e;
  return -1;
}

RequestEncoder::RequestEncoder(const tok::Tokenizer& tok, bool add_bos)
    : enc_(tok), prefix_(PrefixToken(tok)) {
  opts_.parse_special = true;
  opts_.add_special_tokens = add_bos;
}

std::vector<int32_t> RequestEncoder::Encode(std::string_view text) {
  std::vector<int32_t> ids;
  enc_.Encode(text, opts_, ids);
  return ids;
}

Status RequestEncoder::Check(const std::string& what) const {
  if (enc_.error().empty()) return Status::Ok();
  return FormatError(what + ": " + enc_.error());
}

TokenRequest RequestEncoder::EncodePair(std::string_view context, std::string_view continuation) {
  TokenRequest r;
  if (context.empty()) {
    r.context = {prefix_};
    r.continuation = Encode(continuation);
    return r;
  }
  std::string ctx(context), cont(continuation);
  if (const size_t n = TrailingPythonWhitespace(ctx); n > 0) {
    cont = ctx.substr(ctx.size() - n) + cont;
    ctx.resize(ctx.size() - n);
  }
  std::vector<int32_t> whole = Encode(ctx + cont);
  r.context = Encode(ctx);
  const size_t n = std::min(r.context.size(), whole.size());
  r.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(n), whole.end());
  return r;
}

std::vector<TokenRequest> RollingWindows(std::span<const int32_t> tokens, int32_t prefix,
                                         int64_t max_len) {
  std::vector<TokenRequest> out;
  const auto n = static_cast<int64_t>(tokens.size());
  if (n == 0 || max_len < 1) return out;
  const int64_t first = std::min(max_len, n);
  out.push_back({{prefix}, {tokens.begin(), tokens.begin() + first}});
  for (int64_t predicted = first; predicted < n;) {
    const int64_t len = std::min(n - predicted, max_len);
    const int64_t end = predicted + len;
    // The window holds max_len inputs ending just before `end`; its context is the part of it
    // before the predicted block.
    out.push_back({{tokens.begin() + (end - max_len - 1), tokens.begin() + predicted},
                   {tokens.begin() + predicted, tokens.begin() + end}});
    predicted = end;
  }
  return out;
}

ModelInput MakeModelInput(const TokenRequest& r, int64_t max_len) {
  std::vector<int32_t> all = r.context;
  all.insert(all.end(), r.continuation.begin(), r.continuation.end());
  const auto keep =
      static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(all.size()), max_len + 1));
  ModelInput in;
  in.tokens.assign(all.end() - static_cast<std::ptrdiff_t>(keep), all.end() - 1);
  // Predicted tokens that fell off the left edge are not scored (lm-eval scores the last
  // len(continuation) logits, which all exist because the input keeps max_len tokens).
  const size_t scored = std::min(r.continuation.size(), in.tokens.size());
  in.targets.assign(r.continuation.end() - static_cast<std::ptrdiff_t>(scored),
                    r.continuation.end());
  return in;
}

}  // namespace escale::eval

namespace escale::eval {

int64_t CountPythonWords(std::string_view s) {
  int64_t runs = 0;
  bool in_space = false;
  for (size_t i = 0; i < s.size();) {
    const auto lead = static_cast<unsigned char>(s[i]);
    size_t len = lead < 0x80             ? 1
                 : (lead & 0xe0) == 0xc0 ? 2
                 : (lead & 0xf0) == 0xe0 ? 3
                 : (lead & 0xf8) == 0xf0 ? 4
                                         : 1;
    uint32_t cp = 0;
    if (i + len > s.size() || LastCodepoint(s, i + len, cp) != len)
      len = 1, cp = 0xfffd;  // invalid: not a space
    const bool space = IsPythonSpace(cp);
    if (space && !in_space) ++runs;
    in_space = space;
    i += len;
  }
  return runs + 1;
}

}  // namespace escale::eval
