// Token shards: the llm.c layout byte for byte, every reader check, and `escale tokenize`
// (documents recoverable from the shards, deterministic split, worker-count independence, no
// manifest after a failed run).
#include "data/token_shards.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "support/test_support.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

namespace escale::tok {
namespace {

namespace fs = std::filesystem;
using escale::testing::ReadFile;
using escale::testing::TempDir;
using escale::testing::WriteFile;

uint32_t Le32(const std::string& s, size_t off) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(s[off + i])) << (8 * i);
  return v;
}

void WriteShard(const std::string& path, int width, const std::vector<int32_t>& ids) {
  auto w = ShardWriter::Create(path, width);
  ASSERT_TRUE(w.ok()) << w.status().message();
  ASSERT_TRUE(w->Append(ids.data(), ids.size()).ok());
  ASSERT_TRUE(w->Commit().ok());
}

TEST(Shards, Uint16LayoutIsLlmC) {
  TempDir dir;
  WriteShard(dir / "s.bin", 2, {1, 65535, 300});
  const std::string b = ReadFile(dir / "s.bin");
  ASSERT_EQ(b.size(), 1024u + 6);
  EXPECT_EQ(Le32(b, 0), 20240520u);
  EXPECT_EQ(Le32(b, 4), 1u);
  EXPECT_EQ(Le32(b, 8), 3u);
  for (size_t i = 12; i < 1024; ++i) ASSERT_EQ(b[i], 0) << i;
  EXPECT_EQ(static_cast<unsigned char>(b[1024 + 2]), 0xff);
  EXPECT_EQ(static_cast<unsigned char>(b[1024 + 4]), 300 & 0xff);
  EXPECT_EQ(static_cast<unsigned char>(b[1024 + 5]), 300 >> 8);
  auto s = TokenShard::Open(dir / "s.bin", 65536);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->Slice(0, 10), (std::vector<int32_t>{1, 65535, 300}));
}

TEST(Shards, Uint32LayoutIsLlmCLlama3) {
  TempDir dir;
  WriteShard(dir / "s.bin", 4, {128000, 7});
  const std::string b = ReadFile(dir / "s.bin");
  ASSERT_EQ(b.size(), 1024u + 8);
  EXPECT_EQ(Le32(b, 0), 20240801u);
  EXPECT_EQ(Le32(b, 4), 7u);
  EXPECT_EQ(Le32(b, 8), 2u);
  EXPECT_EQ(Le32(b, 1024), 128000u);
  auto s = TokenShard::Open(dir / "s.bin");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->token_bytes(), 4);
  EXPECT_EQ((*s)[0], 128000u);
}

TEST(Shards, WriterRefusesIdsThatDoNotFit) {
  TempDir dir;
  auto w = ShardWriter::Create(dir / "s.bin", 2);
  ASSERT_TRUE(w.ok());
  const int32_t ids[] = {5, 70000};
  EXPECT_FALSE(w->Append(ids, 2).ok());
  const int32_t neg[] = {-1};
  EXPECT_FALSE(w->Append(neg, 1).ok());
}

TEST(Shards, UncommittedWriterLeavesNothing) {
  TempDir dir;
  {
    auto w = ShardWriter::Create(dir / "s.bin", 2);
    ASSERT_TRUE(w.ok());
    const int32_t ids[] = {1, 2, 3};
    ASSERT_TRUE(w->Append(ids, 3).ok());
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

void ExpectOpenError(const std::string& path, const std::string& part,
                     std::optional<int64_t> vocab = std::nullopt) {
  auto s = TokenShard::Open(path, vocab);
  ASSERT_FALSE(s.ok()) << "expected an error mentioning '" << part << "'";
  EXPECT_EQ(s.status().code(), ErrorCode::kFormat);
  EXPECT_NE(s.status().message().find(part), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find(path), std::string::npos) << s.status().message();
}

TEST(Shards, ReaderRejectsEveryBrokenField) {
  TempDir dir;
  WriteShard(dir / "good.bin", 2, {1, 2, 3, 4});
  const std::string good = ReadFile(dir / "good.bin");
  auto patch = [&](const std::string& name, size_t off, uint32_t v) {
    std::string b = good;
    for (int i = 0; i < 4; ++i) b[off + i] = static_cast<char>(v >> (8 * i));
    WriteFile(dir / name, b);
    return dir / name;
  };
  ExpectOpenError(patch("magic.bin", 0, 12345), "magic 12345");
  ExpectOpenError(patch("version.bin", 4, 2), "version 2");
  ExpectOpenError(patch("count.bin", 8, 5), "header says 5 tokens");
  ExpectOpenError(patch("negative.bin", 8, 0xffffffffu), "negative token count");
  WriteFile(dir / "truncated.bin", good.substr(0, good.size() - 1));
  ExpectOpenError(dir / "truncated.bin", "truncated");
  WriteFile(dir / "tiny.bin", good.substr(0, 100));
  ExpectOpenError(dir / "tiny.bin", "too small");
  ExpectOpenError(dir / "good.bin", "token 4 at position 3", /*vocab=*/4);
  EXPECT_TRUE(TokenShard::Open(dir / "good.bin", 5).ok());
  EXPECT_EQ(TokenShard::Open(dir / "absent.bin").status().code(), ErrorCode::kIo);
}

TEST(Shards, ValidationSplitIsDeterministicAndNearTheFraction) {
  int val = 0;
  for (uint64_t i = 0; i < 20000; ++i) {
    const bool v = IsValidationDocument(42, i, 0.1);
    EXPECT_EQ(v, IsValidationDocument(42, i, 0.1));
    val += v;
  }
  EXPECT_GT(val, 1800);
  EXPECT_LT(val, 2200);
  int differ = 0;
  for (uint64_t i = 0; i < 1000; ++i)
    differ += IsValidationDocument(1, i, 0.5) != IsValidationDocument(2, i, 0.5);
  EXPECT_GT(differ, 300);
  EXPECT_FALSE(IsValidationDocument(1, 3, 0.0));
  EXPECT_TRUE(IsValidationDocument(1, 3, 1.0));
}

class TokenizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 300; ++i) {
      docs_.push_back("Doc " + std::to_string(i) + " says: the quick brown fox, 狐狸 " +
                      std::string(i % 5, '!') + (i % 17 == 0 ? " <|endoftext|> inside" : ""));
    }
    TrainOptions o;
    o.vocab_size = 300;
    o.min_frequency = 1;
    o.progress = false;
    auto j = TrainByteLevelBpeFromTexts(docs_, o);
    ASSERT_TRUE(j.ok());
    WriteFile(dir_ / "tokenizer.json", *j);
    nlohmann::json lines;
    std::string jsonl;
    for (size_t i = 0; i < 200; ++i)
      jsonl += nlohmann::json({{"text", docs_[i]}, {"id", i}}).dump() + "\n";
    WriteFile(dir_ / "a.jsonl", jsonl);
    fs::create_directories(dir_ / "more");
    for (size_t i = 200; i < 300; ++i)
      WriteFile(dir_ / ("more/" + std::to_string(1000 + i) + ".txt"), docs_[i]);
  }

  escale::testing::CommandResult Tokenize(const std::string& out, const std::string& extra) {
    return escale::testing::RunEscale("tokenize --tokenizer " + (dir_ / "tokenizer.json") +
                                      " --input " + (dir_ / "a.jsonl") + " --input " +
                                      (dir_ / "more") + " --output " + out + " " + extra);
  }

  std::vector<std::string> docs_;
  TempDir dir_;
};

// Splits a shard's ids at the delimiter and decodes each document.
std::vector<std::string> DocsOf(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                int32_t delim) {
  std::vector<std::string> out;
  std::vector<int32_t> cur;
  for (size_t i = 0; i <= ids.size(); ++i) {
    if (i == ids.size() || ids[i] == delim) {
      if (i > 0) out.push_back(*tok.Decode(cur));
      cur.clear();
    } else {
      cur.push_back(ids[i]);
    }
  }
  return out;
}

TEST_F(TokenizeTest, ShardsHoldEveryDocumentOnceAndManifestAddsUp) {
  const std::string out = dir_ / "out";
  auto r = Tokenize(out, "--val-fraction 0.2 --seed 3 --workers 3 --shard-tokens 1000");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto m = nlohmann::json::parse(ReadFile(out + "/manifest.json"));
  auto tok = *Tokenizer::FromFile(dir_ / "tokenizer.json");
  const int32_t delim = *tok->TokenToId("<|endoftext|>");
  EXPECT_EQ(m["delimiter"]["id"], delim);
  EXPECT_EQ(m["tokenizer"]["sha256"], tok->sha256());
  EXPECT_EQ(m["documents"], 300);
  EXPECT_EQ(m["sources"].size(), 101u);
  std::vector<std::string> seen;
  uint64_t total = 0;
  for (const char* split : {"train", "val"}) {
    std::vector<int32_t> all;
    uint64_t split_tokens = 0;
    for (const auto& s : m["splits"][split]["shards"]) {
      auto shard = TokenShard::Open(out + "/" + s["file"].get<std::string>(), tok->vocab_size());
      ASSERT_TRUE(shard.ok()) << shard.status().message();
      EXPECT_EQ(shard->size(), s["tokens"].get<uint64_t>());
      EXPECT_LE(shard->size(), 1000u);
      const auto ids = shard->Slice(0, shard->size());
      all.insert(all.end(), ids.begin(), ids.end());
      split_tokens += shard->size();
    }
    EXPECT_EQ(split_tokens, m["splits"][split]["tokens"].get<uint64_t>());
    ASSERT_FALSE(all.empty());
    EXPECT_EQ(all[0], delim);
    const auto split_docs = DocsOf(*tok, all, delim);
    EXPECT_EQ(split_docs.size(), m["splits"][split]["documents"].get<size_t>());
    // Documents keep input order within a split, and go where IsValidationDocument says.
    size_t k = 0;
    for (size_t i = 0; i < docs_.size(); ++i) {
      if (IsValidationDocument(3, i, 0.2) != (std::string(split) == "val")) continue;
      ASSERT_LT(k, split_docs.size());
      EXPECT_EQ(split_docs[k++], docs_[i]) << split << " document " << i;
    }
    total += split_tokens;
  }
  EXPECT_EQ(total, m["tokens"].get<uint64_t>());
  EXPECT_GT(m["splits"]["train"]["shards"].size(), 1u);
}

TEST_F(TokenizeTest, JsonlFilterKeepsOnlyMatchingDocuments) {
  // Odd documents are "zh", even ones "en", every fifth has no lang at all.
  std::string jsonl;
  std::vector<std::string> want_zh;
  for (size_t i = 0; i < 120; ++i) {
    nlohmann::json j = {{"text", docs_[i]}, {"n", i}};
    if (i % 5 != 0) j["lang"] = i % 2 ? "zh" : "en";
    if (i % 5 != 0 && i % 2) want_zh.push_back(docs_[i]);
    jsonl += j.dump() + "\n";
  }
  WriteFile(dir_ / "mixed.jsonl", jsonl);
  auto run = [&](const std::string& input, const std::string& out, const std::string& filter) {
    return escale::testing::RunEscale("tokenize --tokenizer " + (dir_ / "tokenizer.json") +
                                      " --input " + input + " --output " + out +
                                      " --jsonl-filter " + filter);
  };
  const std::string out = dir_ / "zh";
  auto r = run(dir_ / "mixed.jsonl", out, "lang=zh");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto m = nlohmann::json::parse(ReadFile(out + "/manifest.json"));
  EXPECT_EQ(m["jsonl_filter"]["value"], "zh");
  auto tok = *Tokenizer::FromFile(dir_ / "tokenizer.json");
  auto shard = TokenShard::Open(
      out + "/" + m["splits"]["train"]["shards"][0]["file"].get<std::string>(), tok->vocab_size());
  ASSERT_TRUE(shard.ok());
  EXPECT_EQ(DocsOf(*tok, shard->Slice(0, shard->size()), *tok->TokenToId("<|endoftext|>")),
            want_zh);
  // A number field matches its JSON text.
  ASSERT_EQ(run(dir_ / "mixed.jsonl", dir_ / "n7", "n=7").exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir_ / "n7/manifest.json"))["documents"], 1);
  // Plain-text inputs have no fields; a filter without '=' is no filter.
  auto plain = run(dir_ / "more", dir_ / "p", "lang=zh");
  EXPECT_NE(plain.exit_code, 0);
  EXPECT_NE(plain.err.find("plain text"), std::string::npos) << plain.err;
  auto bad = run(dir_ / "mixed.jsonl", dir_ / "b", "lang");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("KEY=VALUE"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir_ / "p"));
}

TEST_F(TokenizeTest, OutputDoesNotDependOnWorkerCount) {
  ASSERT_EQ(Tokenize(dir_ / "w1", "--val-fraction 0.3 --workers 1 --shard-tokens 700").exit_code,
            0);
  ASSERT_EQ(Tokenize(dir_ / "w4", "--val-fraction 0.3 --workers 4 --shard-tokens 700").exit_code,
            0);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir_ / "w1")) {
    if (e.path().extension() != ".bin") continue;
    EXPECT_EQ(ReadFile(e.path().string()),
              ReadFile((dir_ / "w4") + "/" + e.path().filename().string()));
    ++files;
  }
  EXPECT_GT(files, 2u);
}

TEST_F(TokenizeTest, FailedRunLeavesNoManifestAndNoOutput) {
  // A broken line after enough text for several shards: the run fails part-way.
  std::string jsonl = ReadFile(dir_ / "a.jsonl") + "{\"text\": \"fine\"}\n{\"no_text\": true}\n";
  WriteFile(dir_ / "a.jsonl", jsonl);
  const std::string out = dir_ / "broken";
  auto r = Tokenize(out, "--shard-tokens 200");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("a.jsonl:202"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + "/manifest.json"));
  for (const auto& e : fs::directory_iterator(dir_.path())) {
    EXPECT_EQ(e.path().filename().string().find("broken"), std::string::npos)
        << "leftover " << e.path();
  }
}

TEST_F(TokenizeTest, ExistingOutputNeedsOverwrite) {
  const std::string out = dir_ / "o";
  ASSERT_EQ(Tokenize(out, "").exit_code, 0);
  auto again = Tokenize(out, "");
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
  EXPECT_EQ(Tokenize(out, "--overwrite").exit_code, 0);
  EXPECT_TRUE(fs::exists(out + "/manifest.json"));
}

TEST_F(TokenizeTest, UnknownDelimiterIsAnError) {
  auto r = Tokenize(dir_ / "d", "--delimiter '<|nope|>'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("<|nope|>"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace escale::tok
