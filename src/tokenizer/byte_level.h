// Byte-level helpers shared by the tokenizer, its trainer and its tests: the GPT-2
// bytes_to_unicode table and lenient UTF-8 handling (invalid bytes never stop tokenization).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace escale::tok {

// byte -> code point of its visible stand-in (GPT-2 bytes_to_unicode): the 188 printable bytes
// map to themselves, the other 68 to U+0100.. in increasing byte order (space -> U+0120 'Ġ').
const std::array<uint32_t, 256>& ByteToCodepoint();
// Inverse: code point -> byte, or -1 when the code point is not in the table.
int CodepointToByte(uint32_t cp);

// Appends the UTF-8 encoding of `cp` (cp < 0x110000).
void AppendUtf8(uint32_t cp, std::string& out);
// Raw bytes -> byte-level alphabet string ("a b" -> "aĠb").
std::string BytesToByteLevel(std::string_view bytes);
// Byte-level alphabet string -> raw bytes; false when a character is outside the table.
bool ByteLevelToBytes(std::string_view token, std::string& out);

// Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 when the byte there does not
// start one (stray continuation byte, overlong form, surrogate, > U+10FFFF, truncated).
size_t Utf8SequenceLength(std::string_view s, size_t i);
bool IsValidUtf8(std::string_view s);

// A valid UTF-8 stand-in for arbitrary bytes: every invalid byte becomes U+FFFD. `offsets` maps
// each byte position of `text` (and its end) back to the matching position in the original, so
// that pieces found on the stand-in can be cut from the original bytes.
struct SanitizedUtf8 {
  std::string text;
  std::vector<uint32_t> offsets;
};
void SanitizeUtf8(std::string_view s, SanitizedUtf8& out);

}  // namespace escale::tok
