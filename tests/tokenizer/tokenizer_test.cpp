// The tokenizer on small hand-built tokenizer.json files whose right answers follow from the
// rules (merge rank order, ignore_merges, added-token options, split behaviours), plus the
// byte table, UTF-8 helpers, SHA-256 and every load error.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"

namespace escale::tok {
namespace {

using nlohmann::json;

// 256 byte tokens (ids = byte values) plus `extra` tokens, merges as given.
json MakeJson(const std::vector<std::string>& extra, const json& merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[BytesToByteLevel(std::string(1, static_cast<char>(b)))] = b;
  int id = 256;
  for (const auto& t : extra) vocab[BytesToByteLevel(t)] = id++;
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = json::array();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", false}};
  return j;
}

std::shared_ptr<const Tokenizer> Load(const json& j) {
  auto t = Tokenizer::FromJson(j.dump());
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? *t : nullptr;
}

std::vector<int32_t> Bytes(const std::string& s) {
  std::vector<int32_t> v;
  for (unsigned char c : s) v.push_back(c);
  return v;
}

TEST(ByteTable, MatchesGpt2BytesToUnicode) {
  const auto& t = ByteToCodepoint();
  EXPECT_EQ(t[' '], 0x120u);
  EXPECT_EQ(t['\n'], 0x10Au);
  EXPECT_EQ(t['\t'], 0x109u);
  EXPECT_EQ(t[0x00], 0x100u);
  EXPECT_EQ(t[0x7F], 0x121u);
  EXPECT_EQ(t[0xA0], 0x142u);
  EXPECT_EQ(t[0xAD], 0x143u);
  EXPECT_EQ(t['A'], static_cast<uint32_t>('A'));
  EXPECT_EQ(t[0xFF], 0xFFu);
  int self = 0;
  for (int b = 0; b < 256; ++b) {
    self += t[b] == static_cast<uint32_t>(b);
    EXPECT_EQ(CodepointToByte(t[b]), b);
  }
  EXPECT_EQ(self, 188);
  EXPECT_EQ(CodepointToByte(' '), -1);  // a real space is not a stand-in
  std::string back;
  ASSERT_TRUE(ByteLevelToBytes(BytesToByteLevel(std::string("a b\n\xff\x00", 6)), back));
  EXPECT_EQ(back, std::string("a b\n\xff\x00", 6));
}

TEST(Utf8, ValidityFollowsTheStandard) {
  EXPECT_TRUE(IsValidUtf8("plain ascii text, long enough for the fast path"));
  EXPECT_TRUE(IsValidUtf8("\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("abc\xe4\xbd"));       // truncated
  EXPECT_FALSE(IsValidUtf8("\x80"));
  SanitizedUtf8 s;
  SanitizeUtf8("a\xffz", s);
  EXPECT_EQ(s.text, "a\xef\xbf\xbdz");
  EXPECT_EQ(s.offsets, (std::vector<uint32_t>{0, 1, 1, 1, 2, 3}));
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";  // 56 bytes: 2 blocks
  EXPECT_EQ(Sha256Hex(m.data(), m.size()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Bpe, LowestRankMergesFirstInBothMergeForms) {
  // Same vocabulary; only the merge order differs, and it decides the segmentation of "abc".
  const std::vector<std::string> extra = {"ab", "bc"};
  auto bc_first = Load(MakeJson(extra, json::array({"b c", "a b"})));
  auto ab_first = Load(MakeJson(extra, json::array({json::array({"a", "b"}), json::array({"b", "c"})})));
  ASSERT_TRUE(bc_first && ab_first);
  EXPECT_EQ(bc_first->Encode("abc"), (std::vector<int32_t>{'a', 257}));
  EXPECT_EQ(ab_first->Encode("abc"), (std::vector<int32_t>{256, 'c'}));
}

TEST(Bpe, LeftmostWinsOnEqualRankAndMergesChain) {
  auto t = Load(MakeJson({"aa", "aaaa"}, json::array({"a a", "aa aa"})));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("aaa"), (std::vector<int32_t>{256, 'a'}));
  EXPECT_EQ(t->Encode("aaaaa"), (std::vector<int32_t>{257, 'a'}));
  EXPECT_EQ(t->Encode("aaaaaa"), (std::vector<int32_t>{257, 256}));
}

TEST(Bpe, IgnoreMergesEmitsWholeWordsFromTheVocabulary) {
  json j = MakeJson({"xyz"}, json::array());
  auto plain = Load(j);
  j["model"]["ignore_merges"] = true;
  auto ignore = Load(j);
  ASSERT_TRUE(plain && ignore);
  EXPECT_EQ(plain->Encode("xyz"), Bytes("xyz"));
  EXPECT_EQ(ignore->Encode("xyz"), (std::vector<int32_t>{256}));
  EXPECT_EQ(ignore->Encode("xyzw"), Bytes("xyzw"));  // not a vocab word: bytes, no merges
}

TEST(Bpe, DecodeIsExactAndRejectsUnknownIds) {
  auto t = Load(MakeJson({"he", "ll", "hell", "hello"}, json::array({"h e", "l l", "he ll", "hell o"})));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("hello"), (std::vector<int32_t>{259}));
  EXPECT_EQ(t->Encode("hello hello"), (std::vector<int32_t>{259, ' ', 259}));
  EXPECT_EQ(*t->Decode({259, ' ', 0xff, 0x00}), std::string("hello \xff\x00", 8));
  auto bad = t->Decode({5, 260});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("260"), std::string::npos);
}

json WithAdded(json j, const std::string& content, bool special, bool lstrip, bool rstrip, bool single_word) {
  const int id = static_cast<int>(j["model"]["vocab"].size() + j["added_tokens"].size());
  j["added_tokens"].push_back({{"id", id}, {"content", content}, {"special", special}, {"normalized", false},
                               {"lstrip", lstrip}, {"rstrip", rstrip}, {"single_word", single_word}});
  return j;
}

TEST(AddedTokens, SplitOutLongestFirstAndOnlyWhenAsked) {
  json j = MakeJson({}, json::array());
  j = WithAdded(j, "<|a|>", true, false, false, false);     // 256
  j = WithAdded(j, "<|a|>b", true, false, false, false);    // 257: longer, same start
  j = WithAdded(j, "[word]", false, false, false, false);   // 258: not special
  auto t = Load(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("x<|a|>y"), (std::vector<int32_t>{'x', 256, 'y'}));
  EXPECT_EQ(t->Encode("<|a|>b"), (std::vector<int32_t>{257}));
  EncodeOptions plain;
  plain.parse_special = false;
  std::vector<int32_t> expect = Bytes("<|a|>");
  expect.push_back(258);  // non-special added tokens still split out
  EXPECT_EQ(t->Encode("<|a|>[word]", plain), expect);
  EXPECT_TRUE(t->IsSpecial(256));
  EXPECT_FALSE(t->IsSpecial(258));
  EXPECT_EQ(*t->Decode({'x', 256, 258}, /*skip_special=*/true), "x[word]");
}

TEST(AddedTokens, StripAndSingleWord) {
  json j = MakeJson({}, json::array());
  j = WithAdded(j, "<m>", true, /*lstrip=*/true, /*rstrip=*/true, false);  // 256
  j = WithAdded(j, "cat", false, false, false, /*single_word=*/true);     // 257
  auto t = Load(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("a  <m>  b"), (std::vector<int32_t>{'a', 256, 'b'}));
  std::vector<int32_t> expect = {257, ' '};
  auto concat = Bytes("concat");
  expect.insert(expect.end(), concat.begin(), concat.end());
  EXPECT_EQ(t->Encode("cat concat"), expect);
}

TEST(PostProcessor, TemplateAddsBosWhenAsked) {
  json j = WithAdded(MakeJson({}, json::array()), "<s>", true, false, false, false);  // 256
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                         {"pair", json::array()},
                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}}}}};
  auto t = Load(j);
  ASSERT_TRUE(t);
  EncodeOptions with;
  with.add_special_tokens = true;
  EXPECT_EQ(t->Encode("a", with), (std::vector<int32_t>{256, 'a'}));
  EXPECT_EQ(t->Encode("a"), (std::vector<int32_t>{'a'}));
  EXPECT_EQ(t->bos_id(), 256);
}

TEST(PreTokenizer, SplitBehaviours) {
  // Merge "a" + "-" exists: it only happens when the split leaves "a-" in one piece.
  auto make = [](const std::string& behavior) {
    json j = MakeJson({"a-"}, json::array({"a -"}));
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"String", "-"}}},
                                                          {"behavior", behavior}, {"invert", false}},
                                                         {{"type", "ByteLevel"}, {"use_regex", false}}})}};
    return Load(j);
  };
  EXPECT_EQ(make("Isolated")->Encode("a-b"), (std::vector<int32_t>{'a', '-', 'b'}));
  EXPECT_EQ(make("Removed")->Encode("a-b"), (std::vector<int32_t>{'a', 'b'}));
  EXPECT_EQ(make("MergedWithPrevious")->Encode("a-b"), (std::vector<int32_t>{256, 'b'}));
  EXPECT_EQ(make("MergedWithNext")->Encode("a-b"), (std::vector<int32_t>{'a', '-', 'b'}));
  EXPECT_EQ(make("MergedWithNext")->Encode("b-a-"), (std::vector<int32_t>{'b', '-', 'a', '-'}));
}

TEST(PreTokenizer, Gpt2RegexKeepsLastSpaceForTheNextWord) {
  // "a  b": \s+(?!\S) takes one space, the other starts " b"; a merge of " " + "b" shows it.
  auto t = Load(MakeJson({" b"}, json::array({"\xc4\xa0 b"})));  // "Ġ b"
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("a  b"), (std::vector<int32_t>{'a', ' ', 256}));
}

// A Split pattern that backtracks catastrophically ((a+)+$ needs ~2^n steps on n a's and a b) is
// bounded: the encoder stops matching, keeps every byte, and says which pattern failed, so a
// tokenize run fails in well under a second instead of running for hours.
TEST(PreTokenizer, CatastrophicBacktrackingIsBoundedAndReported) {
  json j = MakeJson({}, json::array());
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", json::array({{{"type", "Split"},
                                      {"pattern", {{"Regex", "(a+)+$"}}},
                                      {"behavior", "Isolated"},
                                      {"invert", false}},
                                     {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  auto t = Load(j);
  ASSERT_TRUE(t);
  const std::string evil = std::string(2000, 'a') + "b";
  auto r = t->TryEncode(evil);  // unbounded, this would not return (the test's timeout fails it)
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("(a+)+$"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("catastrophic backtracking"), std::string::npos);
  // Nothing is lost in the plain Encode: the pieces still decode to the input.
  auto back = t->Decode(t->Encode(evil));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, evil);
  // Matching text is unaffected and reports no error.
  auto ok = t->TryEncode("xyz aaa");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  auto text = t->Decode(*ok);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "xyz aaa");
}

struct LoadErrorCase {
  const char* what;
  std::function<void(json&)> edit;
  ErrorCode code;
  const char* message_part;
};

TEST(Load, ErrorsAreClear) {
  const std::vector<LoadErrorCase> cases = {
      {"not a model", [](json& j) { j.erase("model"); }, ErrorCode::kFormat, "no 'model'"},
      {"wordpiece", [](json& j) { j["model"]["type"] = "WordPiece"; }, ErrorCode::kUnsupported,
       "WordPiece"},
      {"byte fallback", [](json& j) { j["model"]["byte_fallback"] = true; },
       ErrorCode::kUnsupported, "byte_fallback"},
      {"unigram", [](json& j) { j["model"]["type"] = "Unigram"; }, ErrorCode::kUnsupported,
       "Unigram"},
      {"regex replace",
       [](json& j) {
         j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", " "}};
       },
       ErrorCode::kUnsupported, "Regex"},
      {"spm with split",
       [](json& j) {
         j["decoder"] = nullptr;
         j["pre_tokenizer"] = {
             {"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}};
       },
       ErrorCode::kUnsupported, "Split"},
      {"spm with wordpiece decoder",
       [](json& j) {
         j["pre_tokenizer"] = nullptr;
         j["decoder"] = {{"type", "WordPiece"}};
       },
       ErrorCode::kUnsupported, "WordPiece"},
      {"spm unk missing",
       [](json& j) {
         j["pre_tokenizer"] = nullptr;
         j["decoder"] = nullptr;
         j["model"]["unk_token"] = "<unk>";
       },
       ErrorCode::kFormat, "<unk>"},
      {"three-part merge", [](json& j) { j["model"]["merges"] = json::array({"a b c"}); },
       ErrorCode::kFormat, "merge 1"},
      {"merge of unknown", [](json& j) { j["model"]["merges"] = json::array({"a b"}); },
       ErrorCode::kFormat, "missing from model.vocab"},
      {"bad merge type", [](json& j) { j["model"]["merges"] = json::array({42}); },
       ErrorCode::kFormat, "merge 1"},
      {"negative id", [](json& j) { j["model"]["vocab"]["zz"] = -3; }, ErrorCode::kFormat,
       "out of range"},
      {"lowercase normalizer",
       [](json& j) {
         j["normalizer"] = {{"type", "Lowercase"}};
       },
       ErrorCode::kUnsupported, "Lowercase"},
      {"metaspace",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Metaspace"}};
       },
       ErrorCode::kUnsupported, "Metaspace"},
      {"no byte level", [](json& j) { j["pre_tokenizer"] = nullptr; }, ErrorCode::kUnsupported,
       "ByteLevel"},
      {"bad regex",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
       },
       ErrorCode::kFormat, "regex"},
      {"sparse ids", [](json& j) { j["model"]["vocab"]["zz"] = 10000000; }, ErrorCode::kFormat,
       "dense"},
      {"vocab wrong type", [](json& j) { j["model"]["vocab"] = json::array(); }, ErrorCode::kFormat,
       "vocab"},
      {"two tokens, one id", [](json& j) { j["model"]["vocab"]["zz"] = 65; }, ErrorCode::kFormat,
       "gives id 65 to both"},
      {"added token over a byte",
       [](json& j) {
         j["added_tokens"] =
             json::array({{{"id", 5}, {"content", "<|endoftext|>"}, {"special", true}}});
       },
       ErrorCode::kFormat, "model.vocab gives to"},
      {"two added tokens, one id",
       [](json& j) {
         j["added_tokens"] = json::array({{{"id", 300}, {"content", "<a>"}, {"special", true}},
                                          {{"id", 300}, {"content", "<b>"}, {"special", true}}});
       },
       ErrorCode::kFormat, "added_tokens give id 300"},
  };
  for (const auto& c : cases) {
    json j = MakeJson({}, json::array());
    c.edit(j);
    auto t = Tokenizer::FromJson(j.dump());
    ASSERT_FALSE(t.ok()) << c.what;
    EXPECT_EQ(t.status().code(), c.code) << c.what << ": " << t.status().message();
    EXPECT_NE(t.status().message().find(c.message_part), std::string::npos) << c.what << ": " << t.status().message();
  }
  // An added token that repeats its vocabulary entry (Llama 2's <s>, GPT-2's <|endoftext|>) is
  // fine.
  json again = MakeJson({"<s>"}, json::array());
  again["added_tokens"] = json::array({{{"id", 256}, {"content", "<s>"}, {"special", true}}});
  auto repeated = Tokenizer::FromJson(again.dump());
  ASSERT_TRUE(repeated.ok()) << repeated.status().message();
  EXPECT_EQ((*repeated)->TokenToId("<s>"), std::optional<int32_t>(256));
  auto bad_json = Tokenizer::FromJson("{\"model\": ");
  ASSERT_FALSE(bad_json.ok());
  EXPECT_EQ(bad_json.status().code(), ErrorCode::kFormat);
  // Syntax errors say where; a document followed by a NUL byte and garbage is not accepted.
  auto at = Tokenizer::FromJson("{\n  \"model\": {\n    \"type\": BPE\n}");
  ASSERT_FALSE(at.ok());
  EXPECT_NE(at.status().message().find("line 3, column"), std::string::npos)
      << at.status().message();
  auto trailing =
      Tokenizer::FromJson(MakeJson({}, json::array()).dump() + std::string("\0garbage", 8));
  ASSERT_FALSE(trailing.ok());
  EXPECT_NE(trailing.status().message().find("not valid JSON"), std::string::npos)
      << trailing.status().message();
  // A missing key deep in the file: one line without nlohmann's exception id.
  json no_content = WithAdded(MakeJson({}, json::array()), "<x>", true, false, false, false);
  no_content["added_tokens"][0].erase("content");
  auto missing_key = Tokenizer::FromJson(no_content.dump());
  ASSERT_FALSE(missing_key.ok());
  EXPECT_EQ(missing_key.status().message().find("[json.exception"), std::string::npos)
      << missing_key.status().message();
  EXPECT_NE(missing_key.status().message().find("content"), std::string::npos)
      << missing_key.status().message();
  auto missing = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
}

// Damaged files end in an error or a working tokenizer, never a crash (run under ASan+UBSan).
TEST(Load, MutatedFilesNeverCrash) {
  json j = MakeJson({"he", "ll", "hell"}, json::array({"h e", "l l", "he ll"}));
  j = WithAdded(j, "<|x|>", true, false, false, false);
  const std::string base = j.dump();
  std::mt19937 rng(11);
  int errors = 0, loaded = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::string m = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % m.size();
      switch (rng() % 3) {
        case 0: m[pos] = static_cast<char>(rng() & 0xff); break;
        case 1: m.erase(pos, 1 + rng() % 8); break;
        default: m.insert(pos, 1, "\"[]{}:,0123456789-"[rng() % 18]); break;
      }
    }
    auto t = Tokenizer::FromJson(m);
    if (!t.ok()) {
      EXPECT_FALSE(t.status().message().empty());
      ++errors;
      continue;
    }
    ++loaded;
    const auto ids = (*t)->Encode("hello <|x|> \xff world");
    for (int32_t id : ids) ASSERT_LT(id, (*t)->vocab_size());
    ASSERT_TRUE((*t)->Decode(ids).ok());
  }
  EXPECT_GT(errors, 100);  // most damage must be detected
}

TEST(Normalizer, NfcComposesButKeepsInvalidBytes) {
  json j = MakeJson({}, json::array());
  j["normalizer"] = {{"type", "NFC"}};
  auto t = Load(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Normalize("e\xcc\x81\xff" "A\xcc\x8a"), "\xc3\xa9\xff\xc3\x85");
  EXPECT_EQ(*t->Decode(t->Encode("e\xcc\x81\xff")), "\xc3\xa9\xff");
}

}  // namespace
}  // namespace escale::tok
