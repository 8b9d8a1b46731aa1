// GGUF writer/reader: round trips of every value type and tensor type, the q8_0 quantizer against
// an independent dequantizer, and malformed files (truncated at every offset, huge counts, bad
// alignment, duplicate keys and tensors, out-of-range and overlapping data, bad types), each
// rejected with a Status.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/half.h"
#include "io/gguf.h"
#include "support/test_support.h"

namespace escale::gguf {
namespace {

using testing::TempDir;

// Little-endian builder for hand-made files, independent of the writer.
struct Bytes {
  std::string b;
  template <class T>
  Bytes& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  Bytes& pad(size_t a) {
    b.append((a - b.size() % a) % a, '\0');
    return *this;
  }
};

Result<File> ParseString(const std::string& s) {
  return Parse(reinterpret_cast<const std::byte*>(s.data()), s.size());
}

// A valid file: one u32 key, one f32 tensor [2,3] at offset 0 and one at offset 32.
Bytes Valid(uint32_t align = 32) {
  Bytes x;
  x.b = "GGUF";
  x.put<uint32_t>(3).put<uint64_t>(2).put<uint64_t>(2);
  x.str("general.alignment").put<uint32_t>(4).put<uint32_t>(align);
  x.str("k").put<uint32_t>(4).put<uint32_t>(7);
  x.str("a").put<uint32_t>(2).put<uint64_t>(3).put<uint64_t>(2).put<uint32_t>(0).put<uint64_t>(0);
  x.str("b").put<uint32_t>(1).put<uint64_t>(8).put<uint32_t>(0).put<uint64_t>(align);
  x.pad(align);
  x.b.append(static_cast<size_t>(align) + 32, '\x01');
  return x;
}

std::string Sub(std::string s, size_t at, const std::string& repl) {
  s.replace(at, repl.size(), repl);
  return s;
}
template <class T>
std::string Le(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(T));
}

TEST(GgufFormat, HandMadeValidFileParses) {
  auto f = ParseString(Valid().b);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->version, 3u);
  EXPECT_EQ(f->alignment, 32u);
  ASSERT_EQ(f->tensors.size(), 2u);
  EXPECT_EQ(f->tensors[0].ne, (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ(f->tensors[0].nbytes, 24u);
  EXPECT_EQ(f->tensors[1].offset, 32u);
  EXPECT_EQ(f->Find("k")->u, 7u);
}

// Tensor b ends exactly at the end of Valid(), so every shorter prefix lacks some needed byte.
TEST(GgufFormat, EveryTruncationIsRejected) {
  const std::string v = Valid().b;
  for (size_t n = 0; n < v.size(); ++n) {
    auto f = ParseString(v.substr(0, n));
    ASSERT_FALSE(f.ok()) << "truncated at " << n;
    EXPECT_FALSE(f.status().message().empty());
  }
  EXPECT_TRUE(ParseString(v).ok());
}

TEST(GgufFormat, MalformedHeadersAreRejectedWithAReason) {
  const std::string v = Valid().b;
  struct Case {
    std::string bytes, expect;
  };
  const size_t kv_count_at = 16, tensors_count_at = 8;
  // Offsets into Valid(): key 1 starts at 24; "general.alignment" key is 8+17 bytes, its type
  // at 49.
  const size_t align_value_at = 24 + 8 + 17 + 4;
  const size_t key2_at = align_value_at + 4;  // "k"
  const size_t key2_type_at = key2_at + 8 + 1;
  const size_t t1_at = key2_type_at + 8;  // tensor "a"
  const size_t t1_dims_at = t1_at + 9;
  const size_t t1_ne0_at = t1_dims_at + 4;
  const size_t t1_type_at = t1_ne0_at + 16;
  const size_t t1_off_at = t1_type_at + 4;
  const size_t t2_at = t1_off_at + 8;
  const size_t t2_name_at = t2_at + 8;
  const size_t t2_off_at = t2_at + 9 + 4 + 8 + 4;
  std::vector<Case> cases = {
      {Sub(v, 0, "GGUX"), "not a GGUF file"},
      {Sub(v, 4, Le<uint32_t>(1)), "version 1"},
      {Sub(v, tensors_count_at, Le<uint64_t>(1ull << 40)), "tensor count"},
      {Sub(v, kv_count_at, Le<uint64_t>(~0ull)), "key/value count"},
      {Sub(v, align_value_at, Le<uint32_t>(48)), "not a power of two"},
      {Sub(v, align_value_at, Le<uint32_t>(0)), "not a power of two"},
      {Sub(v, key2_at, Le<uint64_t>(1ull << 62)), "string length"},
      {Sub(v, key2_type_at, Le<uint32_t>(13)), "not a GGUF type"},
      {Sub(v, t1_dims_at, Le<uint32_t>(5)), "dimensions"},
      {Sub(v, t1_ne0_at, Le<uint64_t>(0)), "dimension of 0"},
      {Sub(Sub(v, t1_ne0_at, Le<uint64_t>(1ull << 40)), t1_ne0_at + 8, Le<uint64_t>(1ull << 40)),
       "63 bits"},
      {Sub(v, t1_type_at, Le<uint32_t>(99)), "ggml type 99"},
      {Sub(v, t1_type_at, Le<uint32_t>(8)), "block size"},  // q8_0 with ne0 = 3
      {Sub(v, t1_off_at, Le<uint64_t>(16)), "alignment"},
      {Sub(v, t1_off_at, Le<uint64_t>(1 << 20)), "past the end"},
      {Sub(v, t2_off_at, Le<uint64_t>(0)), "overlap"},
      {Sub(v, t2_name_at, "a"), "appears twice"},
  };
  for (const auto& c : cases) {
    auto f = ParseString(c.bytes);
    ASSERT_FALSE(f.ok()) << "expected: " << c.expect;
    EXPECT_NE(f.status().message().find(c.expect), std::string::npos) << f.status().message();
    EXPECT_EQ(f.status().message().find('\n'), std::string::npos);
  }
}

TEST(GgufFormat, DuplicateKeysAndHugeArraysAreRejected) {
  Bytes x;
  x.b = "GGUF";
  x.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(2);
  x.str("same").put<uint32_t>(7).put<uint8_t>(1);
  x.str("same").put<uint32_t>(7).put<uint8_t>(0);
  auto f = ParseString(x.b);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("appears twice"), std::string::npos);

  Bytes y;
  y.b = "GGUF";
  y.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  y.str("arr").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1ull << 30).put<uint32_t>(1);
  f = ParseString(y.b);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("elements"), std::string::npos) << f.status().message();

  Bytes z;  // an array of strings whose count fits the limit but not the bytes left
  z.b = "GGUF";
  z.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  z.str("arr").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(1000).str("x");
  f = ParseString(z.b);
  ASSERT_FALSE(f.ok());

  Bytes n;  // nested array
  n.b = "GGUF";
  n.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  n.str("arr").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(0);
  f = ParseString(n.b);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("nested"), std::string::npos);

  Bytes b;  // bool that is neither 0 nor 1
  b.b = "GGUF";
  b.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  b.str("flag").put<uint32_t>(7).put<uint8_t>(2);
  EXPECT_FALSE(ParseString(b.b).ok());
}

TEST(GgufFormat, WriterRoundTripsEveryValueAndTensorType) {
  TempDir t;
  Writer w(64);
  w.Add("general.alignment", Value::U32(64));
  auto scalar = [](ValueType ty, uint64_t u, int64_t i, double f) {
    Value v;
    v.type = ty;
    v.u = u;
    v.i = i;
    v.f = f;
    return v;
  };
  w.Add("u8", scalar(ValueType::kU8, 200, 0, 0));
  w.Add("i8", scalar(ValueType::kI8, 0, -100, 0));
  w.Add("u16", scalar(ValueType::kU16, 60000, 0, 0));
  w.Add("i16", scalar(ValueType::kI16, 0, -30000, 0));
  w.Add("u32", scalar(ValueType::kU32, 4000000000u, 0, 0));
  w.Add("i32", scalar(ValueType::kI32, 0, -2000000000, 0));
  w.Add("u64", scalar(ValueType::kU64, 1ull << 63, 0, 0));
  w.Add("i64", scalar(ValueType::kI64, 0, -(1ll << 62), 0));
  w.Add("f32", scalar(ValueType::kF32, 0, 0, 1.5));
  w.Add("f64", scalar(ValueType::kF64, 0, 0, 1e-300));
  w.Add("bool", Value::Bool(true));
  w.Add("str", Value::Str(std::string("h\0llo", 5)));
  w.Add("strs",
        Value::Array(ValueType::kString, {Value::Str("a"), Value::Str(""), Value::Str("ccc")}));
  w.Add("i32s", Value::Array(ValueType::kI32, {Value::I32(-1), Value::I32(5)}));
  w.Add("empty", Value::Array(ValueType::kF64, {}));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> x(64 * 3);
  for (float& v : x) v = nd(rng);
  ASSERT_TRUE(w.AddTensor("f32", {64, 3}, TensorType::kF32).ok());
  ASSERT_TRUE(w.AddTensor("f16", {64, 3}, TensorType::kF16).ok());
  ASSERT_TRUE(w.AddTensor("bf16", {64, 3}, TensorType::kBF16).ok());
  ASSERT_TRUE(w.AddTensor("q8", {64, 3}, TensorType::kQ8_0).ok());
  EXPECT_FALSE(w.AddTensor("bad", {33}, TensorType::kQ8_0).ok());
  const std::string path = t / "x.gguf";
  ASSERT_TRUE(w.Begin(path).ok());
  std::vector<uint16_t> h(x.size()), bh(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    h[i] = F32ToF16(x[i]);
    bh[i] = F32ToBf16(x[i]);
  }
  std::vector<std::byte> q(6 * 34);
  QuantizeQ8_0(x.data(), x.size(), q.data());
  ASSERT_TRUE(w.WriteTensorData(x.data(), x.size() * 4).ok());
  ASSERT_TRUE(w.WriteTensorData(h.data(), h.size() * 2).ok());
  ASSERT_TRUE(w.WriteTensorData(bh.data(), bh.size() * 2).ok());
  ASSERT_TRUE(w.WriteTensorData(q.data(), q.size()).ok());
  ASSERT_TRUE(w.Commit().ok());

  auto f = ReadFile(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->alignment, 64u);
  EXPECT_EQ(f->Find("u8")->u, 200u);
  EXPECT_EQ(f->Find("i8")->i, -100);
  EXPECT_EQ(f->Find("u16")->u, 60000u);
  EXPECT_EQ(f->Find("i16")->i, -30000);
  EXPECT_EQ(f->Find("u32")->u, 4000000000u);
  EXPECT_EQ(f->Find("i32")->i, -2000000000);
  EXPECT_EQ(f->Find("u64")->u, 1ull << 63);
  EXPECT_EQ(f->Find("i64")->i, -(1ll << 62));
  EXPECT_EQ(f->Find("f32")->f, 1.5);
  EXPECT_EQ(f->Find("f64")->f, 1e-300);
  EXPECT_EQ(f->Find("bool")->u, 1u);
  EXPECT_EQ(f->Find("str")->s, std::string("h\0llo", 5));
  const Value* strs = f->Find("strs");
  ASSERT_EQ(strs->arr.size(), 3u);
  EXPECT_EQ(strs->elem, ValueType::kString);
  EXPECT_EQ(strs->arr[2].s, "ccc");
  EXPECT_EQ(f->Find("i32s")->arr[0].i, -1);
  EXPECT_TRUE(f->Find("empty")->arr.empty());
  for (const auto& ti : f->tensors) EXPECT_EQ((f->data_offset + ti.offset) % 64, 0u) << ti.name;
  EXPECT_EQ(std::memcmp(f->TensorData(*f->FindTensor("f32")), x.data(), x.size() * 4), 0);
  EXPECT_EQ(std::memcmp(f->TensorData(*f->FindTensor("f16")), h.data(), h.size() * 2), 0);
  EXPECT_EQ(std::memcmp(f->TensorData(*f->FindTensor("bf16")), bh.data(), bh.size() * 2), 0);
  EXPECT_EQ(f->FindTensor("q8")->nbytes, 6u * 34u);
  EXPECT_EQ(std::memcmp(f->TensorData(*f->FindTensor("q8")), q.data(), q.size()), 0);
}

// Reference dequantizer written from the format description: x = d * q.
TEST(GgufFormat, Q8_0DequantizesWithinHalfAStep) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> x(32 * 50);
  for (float& v : x) v = nd(rng);
  for (int j = 0; j < 32; ++j) x[32 * 7 + j] = 0;  // an all-zero block
  std::vector<std::byte> q(50 * 34);
  QuantizeQ8_0(x.data(), x.size(), q.data());
  for (size_t b = 0; b < 50; ++b) {
    uint16_t dh;
    std::memcpy(&dh, q.data() + b * 34, 2);
    const double d = F16ToF32(dh);
    double amax = 0;
    for (int j = 0; j < 32; ++j)
      amax = std::max(amax, std::fabs(static_cast<double>(x[b * 32 + j])));
    EXPECT_NEAR(d, amax / 127, amax / 127 * 1e-3) << "block " << b;
    for (int j = 0; j < 32; ++j) {
      int8_t qi;
      std::memcpy(&qi, q.data() + b * 34 + 2 + j, 1);
      const double back = d * qi;
      // Half a step of rounding plus the fp16 scale's rounding (2^-11 relative, times 127 steps).
      EXPECT_LE(std::fabs(back - x[b * 32 + j]), 0.5 * d + 127 * d * std::ldexp(1.0, -11) + 1e-12)
          << "block " << b << " item " << j;
    }
  }
}

}  // namespace
}  // namespace escale::gguf

namespace escale::gguf {
namespace {

// Random byte corruption of a valid file: every result is either a parse whose tensors all lie
// inside the buffer, or a one-line error (ASan/UBSan builds catch any out-of-bounds read).
TEST(GgufFormat, RandomCorruptionIsParsedOrRejectedCleanly) {
  const std::string v = Valid().b;
  std::mt19937 rng(11);
  int rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s = v;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) s[rng() % s.size()] = static_cast<char>(rng() & 0xff);
    auto f = ParseString(s);
    if (!f.ok()) {
      ++rejected;
      EXPECT_EQ(f.status().message().find('\n'), std::string::npos);
      continue;
    }
    for (const auto& t : f->tensors) EXPECT_LE(f->data_offset + t.offset + t.nbytes, s.size());
  }
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace escale::gguf
