// safetensors: writer/reader round trips, sharding, zero-copy views, and one test per format
// rule the reader enforces (docs/formats.md, "safetensors reader").
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "io/model_fixtures.h"
#include "io/safetensors.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using testing::RawSafetensors;
using testing::TempDir;
using testing::WriteFile;

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string Bytes(size_t n, char fill = 'x') { return std::string(n, fill); }

TEST(SafetensorsWriter, RoundTripMixedDtypes) {
  TempDir tmp;
  std::vector<SafetensorsEntry> decl = {
      {"a.f32", DType::kF32, {2, 3}, 0, 0}, {"b.bf16", DType::kBF16, {5}, 0, 0},
      {"c.scalar", DType::kI64, {}, 0, 0},  {"d.empty", DType::kU8, {0, 4}, 0, 0},
      {"e \"quoted\"", DType::kF16, {3}, 0, 0}};
  SafetensorsWriter::Options opt;
  opt.metadata = {{"escale.note", "hello"}};
  auto w = SafetensorsWriter::Create(tmp.path(), decl, opt);
  ASSERT_TRUE(w.ok()) << w.status().message();
  std::vector<std::string> payload;
  for (size_t i = 0; i < decl.size(); ++i) {
    const int64_t numel = ShapeNumel(decl[i].shape);
    std::string p(static_cast<size_t>(numel * DTypeSize(decl[i].dtype)), '\0');
    for (size_t k = 0; k < p.size(); ++k) p[k] = static_cast<char>(i * 31 + k * 7);
    payload.push_back(p);
    ASSERT_TRUE(w->Write(decl[i].name, p.data(), p.size()).ok());
  }
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_EQ(ListDir(tmp.path()), std::vector<std::string>{"model.safetensors"});

  const std::string raw = testing::ReadFile(tmp / "model.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[static_cast<size_t>(i)]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw[8], '{');

  auto f = SafetensorsFile::Open(tmp / "model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("escale.note"), "hello");
  ASSERT_EQ(f->entries().size(), decl.size());
  for (size_t i = 0; i < decl.size(); ++i) {
    auto t = f->Get(decl[i].name);
    ASSERT_TRUE(t.ok()) << t.status().message();
    EXPECT_EQ(t->dtype(), decl[i].dtype);
    EXPECT_EQ(t->shape(), decl[i].shape);
    ASSERT_EQ(t->nbytes(), payload[i].size());
    EXPECT_EQ(std::memcmp(t->bytes(), payload[i].data(), payload[i].size()), 0) << decl[i].name;
  }
}

TEST(SafetensorsWriter, NothingAppearsWithoutFinish) {
  TempDir tmp;
  {
    auto w = SafetensorsWriter::Create(tmp.path(), {{"a", DType::kF32, {4}, 0, 0}, {"b", DType::kF32, {4}, 0, 0}}, {});
    ASSERT_TRUE(w.ok());
    const float x[4] = {1, 2, 3, 4};
    ASSERT_TRUE(w->Write("a", x, sizeof x).ok());
  }
  EXPECT_TRUE(ListDir(tmp.path()).empty());
}

TEST(SafetensorsWriter, RejectsOutOfOrderAndWrongSize) {
  TempDir tmp;
  auto w = SafetensorsWriter::Create(tmp.path(), {{"a", DType::kF32, {4}, 0, 0}, {"b", DType::kF32, {2}, 0, 0}}, {});
  ASSERT_TRUE(w.ok());
  const float x[4] = {1, 2, 3, 4};
  EXPECT_FALSE(w->Write("b", x, 8).ok());
  EXPECT_FALSE(w->Write("a", x, 8).ok());
  EXPECT_FALSE(w->Finish().ok());
  EXPECT_FALSE(SafetensorsWriter::Create(tmp.path(), {{"a", DType::kF32, {1}, 0, 0}, {"a", DType::kF32, {1}, 0, 0}}, {}).ok());
}

TEST(SafetensorsWriter, ShardsPastTheLimitWithIndex) {
  TempDir tmp;
  // 40-byte tensors with a 100-byte limit: {t0,t1}, {t2,t3}, then a 200-byte tensor alone, {t5}.
  std::vector<SafetensorsEntry> decl;
  for (int i = 0; i < 4; ++i) decl.push_back({"t" + std::to_string(i), DType::kF32, {10}, 0, 0});
  decl.push_back({"t4", DType::kF32, {50}, 0, 0});
  decl.push_back({"t5", DType::kF32, {10}, 0, 0});
  SafetensorsWriter::Options opt;
  opt.max_shard_bytes = 100;
  auto w = SafetensorsWriter::Create(tmp.path(), decl, opt);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->total_bytes(), 4u * 40 + 200 + 40);
  for (const auto& e : decl) {
    std::vector<float> v(static_cast<size_t>(e.shape[0]), static_cast<float>(e.name[1]));
    ASSERT_TRUE(w->Write(e.name, v.data(), v.size() * 4).ok());
  }
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_EQ(ListDir(tmp.path()),
            (std::vector<std::string>{"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                                      "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
                                      "model.safetensors.index.json"}));
  const auto index = nlohmann::json::parse(testing::ReadFile(tmp / "model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 4 * 40 + 200 + 40);
  EXPECT_EQ(index["weight_map"]["t1"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t2"], "model-00002-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t4"], "model-00003-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t5"], "model-00004-of-00004.safetensors");
  auto f = SafetensorsFile::Open(tmp / "model-00002-of-00004.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().message();
  ASSERT_EQ(f->entries().size(), 2u);
  EXPECT_EQ(f->entries()[0].name, "t2");
  EXPECT_EQ(f->entries()[0].begin, 0u);
  auto t3 = f->Get("t3");
  ASSERT_TRUE(t3.ok());
  EXPECT_EQ(t3->data<float>()[9], static_cast<float>('3'));
}

TEST(SafetensorsReader, AlignedTensorsAreViewsIntoTheMapping) {
  TempDir tmp;
  auto w = SafetensorsWriter::Create(tmp.path(), {{"a", DType::kF32, {1000}, 0, 0}}, {});
  ASSERT_TRUE(w.ok());
  std::vector<float> v(1000, 2.5f);
  ASSERT_TRUE(w->Write("a", v.data(), 4000).ok());
  ASSERT_TRUE(w->Finish().ok());
  auto f = SafetensorsFile::Open(tmp / "model.safetensors");
  ASSERT_TRUE(f.ok());
  auto t = f->Get("a");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->bytes(), f->file()->data() + f->data_offset());  // zero-copy
  // Writing through the view (the mapping is read-only: a write there would fault) copies it first;
  // the file and a second view of it keep their bytes.
  Tensor copy = *t;
  copy.mutable_data<float>()[0] = -1.0f;
  EXPECT_NE(copy.bytes(), t->bytes());
  EXPECT_EQ(copy.data<float>()[0], -1.0f);
  EXPECT_EQ(copy.data<float>()[1], 2.5f);
  EXPECT_EQ(t->data<float>()[0], 2.5f);
  EXPECT_EQ(f->Get("a")->data<float>()[0], 2.5f);
  // Owned storage stays shared by copies and is written in place.
  Tensor owned = Tensor::Zeros(DType::kF32, {4});
  Tensor alias = owned;
  alias.mutable_data<float>()[2] = 7.0f;
  EXPECT_EQ(owned.data<float>()[2], 7.0f);
}

TEST(SafetensorsReader, UnalignedDataIsCopiedIntoAlignedStorage) {
  TempDir tmp;
  // Header of 9 bytes after padding: the data section starts at byte 17, misaligned for F32.
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header += std::string((4 - (8 + header.size()) % 4) % 4 + 1, ' ');
  ASSERT_NE((8 + header.size()) % 4, 0u);
  const float vals[2] = {1.5f, -3.25f};
  WriteFile(tmp / "u.safetensors", RawSafetensors(header, std::string(reinterpret_cast<const char*>(vals), 8)));
  auto f = SafetensorsFile::Open(tmp / "u.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().message();
  auto t = f->Get("a");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->bytes()) % 4, 0u);
  EXPECT_NE(t->bytes(), f->file()->data() + f->data_offset());
  EXPECT_EQ(t->data<float>()[0], 1.5f);
  EXPECT_EQ(t->data<float>()[1], -3.25f);
}

// Parses a literal header + data in memory.
Status Parse(const std::string& header, const std::string& data, int64_t n = -1,
             std::vector<SafetensorsEntry>* out = nullptr) {
  const std::string file = RawSafetensors(header, data, n);
  uint64_t off = 0;
  std::map<std::string, std::string> meta;
  auto r = ParseSafetensorsHeader(reinterpret_cast<const std::byte*>(file.data()), file.size(), &off, &meta);
  if (r.ok() && out) *out = *r;
  return r.ok() ? Status::Ok() : r.status();
}

std::string T(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t b, uint64_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}

TEST(SafetensorsReader, AcceptsJsonWhitespaceAroundTheHeader) {
  EXPECT_TRUE(Parse("\t\n {" + T("a", "F32", "[2]", 0, 8) + "}\r\n  ", Bytes(8)).ok());
}

TEST(SafetensorsReader, AcceptsAnyJsonOrderWhenContiguous) {
  std::vector<SafetensorsEntry> e;
  ASSERT_TRUE(Parse("{" + T("b", "F32", "[1]", 4, 8) + "," + T("a", "F32", "[1]", 0, 4) + "}", Bytes(8), -1, &e).ok());
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].name, "a");  // entries come back in offset order
}

TEST(SafetensorsReader, AcceptsEmptyAndScalarTensors) {
  std::vector<SafetensorsEntry> e;
  ASSERT_TRUE(Parse("{" + T("s", "F64", "[]", 0, 8) + "," + T("z", "F32", "[0,5]", 8, 8) + "}", Bytes(8), -1, &e).ok());
  EXPECT_EQ(e.size(), 2u);
  EXPECT_TRUE(Parse("{}", "").ok());
  EXPECT_TRUE(Parse(R"({"__metadata__":{"format":"pt"}})", "").ok());
}

struct BadCase {
  const char* label;
  std::string header;
  std::string data;
  int64_t n;
  const char* expect;  // a phrase the one-line error must contain
};

TEST(SafetensorsReader, RejectsEveryMalformedHeader) {
  const std::string ok_a = T("a", "F32", "[2]", 0, 8);
  const std::vector<BadCase> cases = {
      {"length past end", "{}", "", 3, "runs past the end"},
      {"header over cap", "{}", "", 100'000'001, "exceeds the 100 MB limit"},
      {"overlap", "{" + T("a", "F32", "[4]", 0, 16) + "," + T("b", "F32", "[4]", 0, 16) + "}", Bytes(16), -1, "overlap"},
      {"gap", "{" + T("a", "F32", "[2]", 0, 8) + "," + T("b", "F32", "[2]", 16, 24) + "}", Bytes(24), -1, "gap"},
      {"out-of-order gap", "{" + T("b", "F32", "[2]", 12, 20) + "," + T("a", "F32", "[2]", 0, 8) + "}", Bytes(20), -1, "gap"},
      {"first not at zero", "{" + T("a", "F32", "[2]", 4, 12) + "}", Bytes(12), -1, "expected begin 0"},
      {"trailing bytes", "{" + ok_a + "}", Bytes(12), -1, "4 trailing bytes"},
      {"data truncated", "{" + ok_a + "}", Bytes(5), -1, "past the end of the file"},
      {"wrong size", "{" + T("a", "F32", "[2]", 0, 4) + "}", Bytes(4), -1, "needs 8"},
      {"end before begin", "{" + T("a", "F32", "[0]", 8, 4) + "}", Bytes(8), -1, "before begin"},
      {"unknown dtype", "{" + T("a", "F128", "[2]", 0, 8) + "}", Bytes(8), -1, "unknown dtype 'F128'"},
      {"non-utf8", "{\"a\xff\":1}", "", -1, "not valid UTF-8"},
      {"overlong utf8", "{\"a\xc0\xaf\":1}", "", -1, "not valid UTF-8"},
      {"surrogate utf8", "{\"a\xed\xa0\x80\":1}", "", -1, "not valid UTF-8"},
      {"not json", "{nope", "", -1, "not valid JSON"},
      {"trailing garbage", "{} x", "", -1, "not valid JSON"},
      {"not an object", "[1,2]", "", -1, "must be a JSON object"},
      {"duplicate tensor", "{" + ok_a + "," + ok_a + "}", Bytes(8), -1, "duplicate key 'a'"},
      {"duplicate field", R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", Bytes(8), -1, "duplicate key 'dtype'"},
      {"metadata not string", R"({"__metadata__":{"format":1}})", "", -1, "metadata values must be strings"},
      {"metadata not object", R"({"__metadata__":"pt"})", "", -1, "__metadata__ must be an object"},
      {"too deep", R"({"a":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", Bytes(8), -1, "deeper than"},
      {"extra key", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", Bytes(8), -1, "unexpected key 'x'"},
      {"missing shape", R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", Bytes(8), -1, "missing key 'shape'"},
      {"negative dim", "{" + T("a", "F32", "[-2]", 0, 8) + "}", Bytes(8), -1, "non-negative integers"},
      {"float dim", "{" + T("a", "F32", "[2.0]", 0, 8) + "}", Bytes(8), -1, "non-negative integers"},
      {"dim over 2^48", "{" + T("a", "U8", "[281474976710656]", 0, 8) + "}", Bytes(8), -1, "exceeds 2^48-1"},
      {"numel overflow", "{" + T("a", "F32", "[140737488355328,140737488355328,140737488355328]", 0, 8) + "}", Bytes(8), -1, "overflows"},
      {"bits overflow", "{" + T("a", "F64", "[4294967296,1073741824]", 0, 8) + "}", Bytes(8), -1, "overflows the byte count"},
      {"sub-byte", "{" + T("a", "F4", "[3]", 0, 2) + "}", Bytes(2), -1, "do not fill whole bytes"},
      {"offsets not pair", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", Bytes(8), -1, "data_offsets must be [begin, end]"},
  };
  for (const BadCase& c : cases) {
    const Status st = Parse(c.header, c.data, c.n);
    ASSERT_FALSE(st.ok()) << c.label;
    EXPECT_EQ(st.code(), ErrorCode::kFormat) << c.label;
    EXPECT_NE(st.message().find(c.expect), std::string::npos) << c.label << ": " << st.message();
    EXPECT_EQ(st.message().find('\n'), std::string::npos) << c.label;
  }
}

TEST(SafetensorsReader, RejectsFilesShorterThanTheLengthPrefix) {
  for (size_t len : {0, 1, 7}) {
    const std::string file(len, '\0');
    auto r = ParseSafetensorsHeader(reinterpret_cast<const std::byte*>(file.data()), file.size(), nullptr, nullptr);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("shorter than the 8-byte"), std::string::npos);
  }
}

TEST(SafetensorsReader, OpenNamesTheFileAndTensorInTheError) {
  TempDir tmp;
  WriteFile(tmp / "bad.safetensors", RawSafetensors("{" + T("w.x", "F32", "[2]", 0, 4) + "}", Bytes(4)));
  auto f = SafetensorsFile::Open(tmp / "bad.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find(tmp / "bad.safetensors"), std::string::npos);
  EXPECT_NE(f.status().message().find("'w.x'"), std::string::npos);
  EXPECT_FALSE(SafetensorsFile::Open(tmp / "missing.safetensors").ok());
}

TEST(SafetensorsReader, GetUnknownNameIsNotFound) {
  TempDir tmp;
  WriteFile(tmp / "a.safetensors", RawSafetensors("{" + T("a", "F32", "[2]", 0, 8) + "}", Bytes(8)));
  auto f = SafetensorsFile::Open(tmp / "a.safetensors");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->Get("b").status().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace escale
