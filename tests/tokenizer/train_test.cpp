// The BPE trainer: merge choice by frequency with the documented tie break, determinism, the
// vocabulary budget, and that its tokenizer.json loads and round-trips. Parity with Hugging Face
// on a trained file is in golden_test.cpp (it needs node).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/test_support.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

namespace escale::tok {
namespace {

using nlohmann::json;

TrainOptions Opts(int vocab) {
  TrainOptions o;
  o.vocab_size = vocab;
  o.min_frequency = 1;
  o.progress = false;
  return o;
}

TEST(Train, MostFrequentPairFirstThenSmallestPairOnTies) {
  // Pairs in "xy xy xy ab": (x,y)=3, (' ',x)=2, (a,b)=1, (' ',a)=1.
  auto r = TrainByteLevelBpeFromTexts({"xy xy xy ab"}, Opts(256 + 1 + 3));
  ASSERT_TRUE(r.ok()) << r.status().message();
  const json j = json::parse(*r);
  const auto merges = j["model"]["merges"];
  ASSERT_EQ(merges.size(), 3u);
  EXPECT_EQ(merges[0], json::array({"x", "y"}));
  EXPECT_EQ(merges[1], json::array({"Ġ", "xy"}));  // count 2
  // Count-1 tie between (' ', 'a') and ('a', 'b'): the smaller pair of ids, ' ' (32) < 'a' (97).
  EXPECT_EQ(merges[2], json::array({"Ġ", "a"}));
  EXPECT_EQ(j["model"]["vocab"].size(), 256u + 3 + 1);
  EXPECT_EQ(j["added_tokens"][0]["content"], "<|endoftext|>");
  EXPECT_EQ(j["added_tokens"][0]["id"], 259);
}

TEST(Train, DeterministicAndLoadable) {
  std::vector<std::string> docs;
  for (int i = 0; i < 200; ++i) {
    docs.push_back("Document " + std::to_string(i) + ": the cat sat on the mat, 你好世界 " +
                   std::string(i % 7, ' ') + "naïve café déjà vu\n\tend.");
  }
  docs.push_back("raw \xff\xfe bytes \x80");
  TrainOptions o = Opts(400);
  o.special_tokens = {"<|endoftext|>", "<|pad|>"};
  auto a = TrainByteLevelBpeFromTexts(docs, o);
  auto b = TrainByteLevelBpeFromTexts(docs, o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  auto tok = Tokenizer::FromJson(*a);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  EXPECT_EQ((*tok)->vocab_size(), 400);
  EXPECT_EQ((*tok)->TokenToId("<|pad|>"), 399);
  for (const auto& d : docs) {
    const auto ids = (*tok)->Encode(d);
    EXPECT_LT(ids.size(), d.size());  // merges learned on this text compress it
    EXPECT_EQ(*(*tok)->Decode(ids), d);
  }
}

TEST(Train, RefusesTooSmallVocabulary) {
  auto r = TrainByteLevelBpeFromTexts({"abc"}, Opts(256));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
}

TEST(Train, CliWritesATokenizerThatEncodes) {
  escale::testing::TempDir dir;
  escale::testing::WriteFile(dir / "a.txt", "hello hello hello world world\n");
  escale::testing::WriteFile(dir / "b.jsonl", "{\"text\": \"hello there\"}\n\n{\"text\": \"world peace\"}\n");
  auto r = escale::testing::RunEscale("tokenizer train " + (dir / "a.txt") + " " + (dir / "b.jsonl") +
                                      " --vocab-size 262 --min-frequency 1 -o " + (dir / "t.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto enc = escale::testing::RunEscale("tokenizer encode " + (dir / "t.json") + " --text 'hello world'");
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  auto dec = escale::testing::RunEscale("tokenizer decode " + (dir / "t.json") + " --ids '" +
                                        enc.out.substr(0, enc.out.find('\n')) + "'");
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  EXPECT_EQ(dec.out, "hello world");
  // Refuses to overwrite, and a broken JSONL line is one clear error.
  auto again = escale::testing::RunEscale("tokenizer train " + (dir / "a.txt") + " --vocab-size 262 -o " + (dir / "t.json"));
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
  escale::testing::WriteFile(dir / "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
  auto bad = escale::testing::RunEscale("tokenizer train " + (dir / "bad.jsonl") + " --vocab-size 262 -o " + (dir / "u.json"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("bad.jsonl:2"), std::string::npos) << bad.err;
}

TEST(Train, CliRoundTripsArbitraryBytesThroughFiles) {
  escale::testing::TempDir dir;
  auto json_text = TrainByteLevelBpeFromTexts({"some text to learn from, some text"}, Opts(270));
  ASSERT_TRUE(json_text.ok());
  escale::testing::WriteFile(dir / "t.json", *json_text);
  std::string bytes;
  for (int i = 0; i < 512; ++i) bytes.push_back(static_cast<char>((i * 37 + 11) & 0xff));  // all bytes, invalid UTF-8
  bytes += "<|endoftext|> some text";
  escale::testing::WriteFile(dir / "in.bin", bytes);
  auto enc = escale::testing::RunEscale("tokenizer encode " + (dir / "t.json") + " --file " + (dir / "in.bin") +
                                        " --no-special");
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  escale::testing::WriteFile(dir / "ids.txt", enc.out);
  auto dec = escale::testing::RunEscale("tokenizer decode " + (dir / "t.json") + " --file " + (dir / "ids.txt"));
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  EXPECT_EQ(dec.out, bytes);
  auto bad = escale::testing::RunEscale("tokenizer decode " + (dir / "t.json") + " --ids 1,2,99999");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("99999"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace escale::tok
