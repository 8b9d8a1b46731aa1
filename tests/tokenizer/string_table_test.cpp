// StringTable (the encoder's word cache and bytes -> id map) against std::unordered_map, and its
// key comparison against memcmp at every length and every differing position.
#include "tokenizer/string_table.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <unordered_map>

namespace escale::tok {
namespace {

TEST(StringTable, SameBytesAgreesWithMemcmp) {
  std::mt19937 rng(7);
  for (size_t n = 0; n <= 40; ++n) {
    std::string a(n, '\0');
    for (char& c : a) c = static_cast<char>(rng());
    EXPECT_TRUE(SameBytes(a.data(), std::string(a).data(), n)) << n;
    for (size_t pos = 0; pos < n; ++pos) {
      std::string b = a;
      b[pos] = static_cast<char>(b[pos] ^ (1 << (pos % 8)));
      ASSERT_NE(std::memcmp(a.data(), b.data(), n), 0);
      EXPECT_FALSE(SameBytes(a.data(), b.data(), n)) << "length " << n << " differing at " << pos;
    }
  }
}

TEST(StringTable, MatchesUnorderedMap) {
  std::mt19937 rng(11);
  StringTable table;
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> oracle;
  auto random_key = [&] {
    // Short keys from a small alphabet collide in prefix and length, as words do.
    std::string k(rng() % 20, 'a');
    for (char& c : k) c = static_cast<char>('a' + rng() % 3);
    return k;
  };
  for (int i = 0; i < 20000; ++i) {
    const std::string k = random_key();
    const uint32_t a = static_cast<uint32_t>(rng()), b = static_cast<uint32_t>(i);
    table.InsertOrAssign(k, {a, b});  // an existing key is overwritten, as oracle[k] = ...
    oracle[k] = {a, b};
  }
  EXPECT_EQ(table.size(), oracle.size());
  for (const auto& [k, v] : oracle) {
    const StringTable::Value* got = table.Find(k);
    const StringTable::Value value = got != nullptr ? *got : StringTable::Value{~0u, ~0u};
    EXPECT_NE(got, nullptr) << k;
    EXPECT_EQ(value.a, v.first);
    EXPECT_EQ(value.b, v.second);
  }
  int absent = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string k = random_key() + "x";  // never inserted
    EXPECT_EQ(table.Find(k), nullptr) << k;
    ++absent;
  }
  EXPECT_EQ(absent, 20000);
  table.Clear();
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.Find(oracle.begin()->first), nullptr);
  table.InsertOrAssign("", {5, 6});
  const StringTable::Value* empty_key = table.Find("");
  EXPECT_EQ(empty_key != nullptr ? empty_key->a : 0u, 5u);
}

}  // namespace
}  // namespace escale::tok
