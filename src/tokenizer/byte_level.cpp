#include "tokenizer/byte_level.h"

namespace escale::tok {

namespace {
struct Tables {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<int16_t, 512> cp_to_byte{};  // every stand-in is < U+0144
};

Tables BuildTables() {
  Tables t;
  t.cp_to_byte.fill(-1);
  std::array<bool, 256> printable{};
  for (int b = 0x21; b <= 0x7e; ++b) printable[b] = true;
  for (int b = 0xa1; b <= 0xac; ++b) printable[b] = true;
  for (int b = 0xae; b <= 0xff; ++b) printable[b] = true;
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b) {
    t.byte_to_cp[b] = printable[b] ? static_cast<uint32_t>(b) : 256 + n++;
    t.cp_to_byte[t.byte_to_cp[b]] = static_cast<int16_t>(b);
  }
  return t;
}

const Tables& GetTables() {
  static const Tables t = BuildTables();
  return t;
}
}  // namespace

const std::array<uint32_t, 256>& ByteToCodepoint() {
  return GetTables().byte_to_cp;
}

int CodepointToByte(uint32_t cp) {
  return cp < 512 ? GetTables().cp_to_byte[cp] : -1;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

std::string BytesToByteLevel(std::string_view bytes) {
  const auto& table = ByteToCodepoint();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) AppendUtf8(table[c], out);
  return out;
}

bool ByteLevelToBytes(std::string_view token, std::string& out) {
  size_t i = 0;
  while (i < token.size()) {
    const size_t len = Utf8SequenceLength(token, i);
    if (len == 0) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(token.data() + i);
    uint32_t cp = 0;
    if (len == 1)
      cp = p[0];
    else if (len == 2)
      cp = ((p[0] & 0x1fu) << 6) | (p[1] & 0x3fu);
    else
      return false;  // every stand-in is below U+0800
    const int b = CodepointToByte(cp);
    if (b < 0) return false;
    out.push_back(static_cast<char>(b));
    i += len;
  }
  return true;
}

size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  const unsigned c = p[i];
  if (c < 0x80) return 1;
  auto cont = [&](size_t k) { return i + k < n && (p[i + k] & 0xc0u) == 0x80u; };
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xe0 && p[i + 1] < 0xa0) return 0;   // overlong
    if (c == 0xed && p[i + 1] >= 0xa0) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xf0 && p[i + 1] < 0x90) return 0;   // overlong
    if (c == 0xf4 && p[i + 1] >= 0x90) return 0;  // > U+10FFFF
    return 4;
  }
  return 0;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    const size_t len = Utf8SequenceLength(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

void SanitizeUtf8(std::string_view s, SanitizedUtf8& out) {
  out.text.clear();
  out.offsets.clear();
  out.text.reserve(s.size() + 16);
  out.offsets.reserve(s.size() + 16);
  size_t i = 0;
  while (i < s.size()) {
    const size_t len = Utf8SequenceLength(s, i);
    if (len == 0) {
      out.text.append("\xef\xbf\xbd");
      for (int k = 0; k < 3; ++k) out.offsets.push_back(static_cast<uint32_t>(i));
      ++i;
      continue;
    }
    out.text.append(s.substr(i, len));
    for (size_t k = 0; k < len; ++k) out.offsets.push_back(static_cast<uint32_t>(i + k));
    i += len;
  }
  out.offsets.push_back(static_cast<uint32_t>(s.size()));
}

}  // namespace escale::tok
