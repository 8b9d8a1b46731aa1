// Megatron .bin/.idx reader on files assembled byte by byte from the documented layout.
#include "data/megatron_dataset.h"

#include <gtest/gtest.h>

#include <cstring>

#include "support/test_support.h"

namespace escale::tok {
namespace {

using escale::testing::TempDir;
using escale::testing::WriteFile;

template <class T>
void Put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}

struct Built {
  std::string idx, bin;
};

// Two documents: doc 0 = sequences {0}, doc 1 = sequences {1, 2}; uint16 tokens.
Built Build() {
  const std::vector<std::vector<uint16_t>> seqs = {{5, 6, 7}, {1}, {65000, 2}};
  Built b;
  b.idx.append("MMIDIDX\0\0", 9);
  Put<uint64_t>(b.idx, 1);
  Put<uint8_t>(b.idx, 8);
  Put<uint64_t>(b.idx, seqs.size());
  Put<uint64_t>(b.idx, 3);
  for (const auto& s : seqs) Put<int32_t>(b.idx, static_cast<int32_t>(s.size()));
  int64_t ptr = 0;
  for (const auto& s : seqs) {
    Put<int64_t>(b.idx, ptr);
    ptr += static_cast<int64_t>(s.size() * 2);
  }
  for (int64_t v : {0, 1, 3}) Put<int64_t>(b.idx, v);
  for (const auto& s : seqs) {
    for (uint16_t t : s) Put<uint16_t>(b.bin, t);
  }
  return b;
}

TEST(Megatron, ReadsSequencesAndDocuments) {
  TempDir dir;
  const Built b = Build();
  WriteFile(dir / "d.idx", b.idx);
  WriteFile(dir / "d.bin", b.bin);
  auto d = MegatronDataset::Open(dir / "d", 65536);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->sequences(), 3u);
  EXPECT_EQ(d->documents(), 2u);
  EXPECT_EQ(d->tokens(), 6u);
  EXPECT_EQ(d->token_bytes(), 2);
  EXPECT_EQ(d->Sequence(0), (std::vector<int64_t>{5, 6, 7}));
  EXPECT_EQ(d->Sequence(2), (std::vector<int64_t>{65000, 2}));
  EXPECT_EQ(d->DocumentSequences(1), (std::pair<uint64_t, uint64_t>{1, 3}));
}

TEST(Megatron, EveryInconsistencyIsAnError) {
  const Built good = Build();
  struct Case {
    const char* what;
    size_t offset;  // byte in .idx to overwrite (or npos: edit .bin)
    std::string bytes;
    const char* message_part;
  };
  auto u64 = [](uint64_t v) {
    std::string s;
    Put(s, v);
    return s;
  };
  auto i64 = [](int64_t v) {
    std::string s;
    Put(s, v);
    return s;
  };
  const size_t lens = 34, ptrs = lens + 12, docs = ptrs + 24;
  const std::vector<Case> cases = {
      {"magic", 0, "XMIDIDX", "magic"},
      {"version", 9, u64(2), "version 2"},
      {"float dtype", 17, std::string(1, '\x07'), "dtype code 7"},
      {"sequence count", 18, u64(4), "need"},
      {"huge count", 18, u64(~uint64_t{0} / 2), "overflow"},
      {"gap between sequences", ptrs + 8, i64(8), "contiguous"},
      {"document index start", docs, i64(1), "start with 0"},
      {"document index end", docs + 16, i64(2), "ends at 2"},
      {"decreasing documents", docs + 8, i64(5), "decreases"},
  };
  for (const auto& c : cases) {
    TempDir dir;
    std::string idx = good.idx;
    idx.replace(c.offset, c.bytes.size(), c.bytes);
    WriteFile(dir / "d.idx", idx);
    WriteFile(dir / "d.bin", good.bin);
    auto d = MegatronDataset::Open(dir / "d");
    ASSERT_FALSE(d.ok()) << c.what;
    EXPECT_NE(d.status().message().find(c.message_part), std::string::npos)
        << c.what << ": " << d.status().message();
  }
  TempDir dir;
  WriteFile(dir / "d.idx", good.idx);
  WriteFile(dir / "d.bin", good.bin.substr(0, good.bin.size() - 2));
  auto truncated = MegatronDataset::Open(dir / "d");
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.status().message().find("truncated"), std::string::npos)
      << truncated.status().message();
  WriteFile(dir / "d.bin", good.bin);
  auto vocab = MegatronDataset::Open(dir / "d", 1000);
  ASSERT_FALSE(vocab.ok());
  EXPECT_NE(vocab.status().message().find("token 65000"), std::string::npos)
      << vocab.status().message();
}

}  // namespace
}  // namespace escale::tok
