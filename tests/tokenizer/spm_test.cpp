// SentencePiece-style BPE on a hand-built toy tokenizer (tests/tokenizer/data/toy_spm/), so the
// logic is tested without the fetched Llama 2 file. Vocabulary (id: token), U+2581 written "_":
//   0 <unk>  1 <s>  2 </s>  3 <0x0A>  4 <0xC3>  5 <0xA9>  6 <0xE2>  7 <0x82>  8 <0xAC>
//   9 _  10 a  11 b  12 c  13 h  14 i  15 _a  16 _h  17 _hi  18 ab  19 _ab  20 __  21 bc
// Merges by rank: _ h, a b, _ a, _h i, _ ab, _ _, b c. Byte tokens exist for \n, é (C3 A9) and
// € (E2 82 AC) only, so ü (C3 BC) and x fall to <unk>.
// Every expected id list below was worked out by hand from these merges and then confirmed with
// the Rust tokenizers crate (@anush008/tokenizers 0.6.0, tokenizers 0.22) on the same files; the
// variants are built by the same JSON edits in both runs.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "support/test_support.h"
#include "tokenizer/tokenizer.h"

namespace escale::tok {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

const std::string kMeta = "\xe2\x96\x81";

json Toy() {
  return json::parse(escale::testing::ReadFile(escale::testing::SourceDir() +
                                               "/tests/tokenizer/data/toy_spm/tokenizer.json"));
}

std::shared_ptr<const Tokenizer> Load(const json& j) {
  auto t = Tokenizer::FromJson(j.dump());
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? *t : nullptr;
}

// Older conversions: no normalizer, a Metaspace pre-tokenizer and decoder.
json Metaspace(json j, json opts) {
  j["normalizer"] = nullptr;
  opts["type"] = "Metaspace";
  opts["replacement"] = kMeta;
  j["pre_tokenizer"] = opts;
  j["decoder"] = opts;
  return j;
}

// A token "c_" reached by the first merge: a merge across the start of a U+2581 run.
json MidSpace(json j) {
  j["model"]["vocab"]["c" + kMeta] = 22;
  j["model"]["merges"].insert(j["model"]["merges"].begin(), json::array({"c", kMeta}));
  return j;
}

std::string Dec(const Tokenizer& t, const Ids& ids, bool skip = false) {
  auto r = t.Decode(ids, skip);
  EXPECT_TRUE(r.ok());
  return r.ok() ? *r : "";
}

TEST(SpmToy, PrependNormalizerLikeLlama2) {
  auto t = Load(Toy());
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("hi"), (Ids{17}));        // _hi: "_ h" (rank 0) then "_h i"
  EXPECT_EQ(t->Encode("abc"), (Ids{19, 12}));   // "a b" (1) before "_ a" (2), then "_ ab"; bc lost
  EXPECT_EQ(t->Encode("  hi"), (Ids{20, 17}));  // "___hi": _h, _hi, then the first "_ _"
  EXPECT_EQ(t->Encode(" "), (Ids{20}));
  EXPECT_EQ(t->Encode("h i ab"), (Ids{16, 9, 14, 19}));
  EXPECT_EQ(t->Encode(""), (Ids{}));
  // Byte fallback, unk fused, and tokenizers' order when both meet: the byte tokens of € go in
  // before the pending unk of ü.
  EXPECT_EQ(t->Encode("\xc3\xa9"), (Ids{9, 4, 5}));
  EXPECT_EQ(t->Encode("a\nb"), (Ids{15, 3, 11}));
  EXPECT_EQ(t->Encode("\xc3\xbc\xc3\xbc"), (Ids{9, 0}));
  EXPECT_EQ(t->Encode("\xc3\xbc\xe2\x82\xac"), (Ids{9, 6, 7, 8, 0}));
  EXPECT_EQ(t->Encode("x"), (Ids{9, 0}));
  // Special tokens split first; the normalizer prepends _ to every piece between them.
  EXPECT_EQ(t->Encode("<s>hi"), (Ids{1, 17}));
  EXPECT_EQ(t->Encode("hi</s> hi"), (Ids{17, 2, 9, 17}));
  EncodeOptions plain;
  plain.parse_special = false;
  EXPECT_NE(t->Encode("<s>hi", plain), (Ids{1, 17}));
  EncodeOptions bos;
  bos.add_special_tokens = true;
  EXPECT_EQ(t->Encode("hi", bos), (Ids{1, 17}));
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  // Decoder: _ -> space, bytes, fuse, strip one leading space.
  EXPECT_EQ(Dec(*t, {20, 17}), "  hi");
  EXPECT_EQ(Dec(*t, {9, 4, 5}), "\xc3\xa9");
  EXPECT_EQ(Dec(*t, {9, 6, 7, 8, 0}), "\xe2\x82\xac<unk>");
  EXPECT_EQ(Dec(*t, {1, 17}), "<s> hi");
  EXPECT_EQ(Dec(*t, {17, 2, 9, 17}), "hi</s>  hi");
  EXPECT_EQ(Dec(*t, {1, 17}, /*skip=*/true), "hi");
  // Invalid UTF-8 (which Rust strings cannot hold): the byte is its own character, <0xC3> here.
  EXPECT_EQ(t->Encode("\xc3"), (Ids{9, 4}));
  EXPECT_EQ(Dec(*t, {9, 4}), "\xc3");
}

TEST(SpmToy, UnkWithoutFusionOrByteFallback) {
  json j = Toy();
  j["model"]["fuse_unk"] = false;
  auto nofuse = Load(j);
  ASSERT_TRUE(nofuse);
  EXPECT_EQ(nofuse->Encode("\xc3\xbc\xc3\xbc"), (Ids{9, 0, 0}));
  EXPECT_EQ(Dec(*nofuse, {9, 0, 0}), "<unk><unk>");
  j = Toy();
  j["model"]["byte_fallback"] = false;
  auto nofb = Load(j);
  ASSERT_TRUE(nofb);
  EXPECT_EQ(nofb->Encode("\xc3\xa9"), (Ids{9, 0}));
  EXPECT_EQ(nofb->Encode("\xc3\xbc\xe2\x82\xac"), (Ids{9, 0}));  // one fused unk
  EXPECT_EQ(nofb->Encode("a\nb"), (Ids{15, 0, 11}));
}

TEST(SpmToy, MetaspacePreTokenizer) {
  auto always = Load(Metaspace(Toy(), {{"prepend_scheme", "always"}, {"split", true}}));
  auto first = Load(Metaspace(Toy(), {{"prepend_scheme", "first"}, {"split", true}}));
  auto never = Load(Metaspace(Toy(), {{"prepend_scheme", "never"}, {"split", true}}));
  auto legacy = Load(Metaspace(Toy(), {{"add_prefix_space", true}}));  // before prepend_scheme
  ASSERT_TRUE(always && first && never && legacy);
  for (const auto* t : {&always, &legacy}) {
    // A text starting with a space gets no second _ (unlike Prepend), and the split before every
    // _ keeps "__" apart.
    EXPECT_EQ((*t)->Encode("  hi"), (Ids{9, 17}));
    EXPECT_EQ((*t)->Encode("hi"), (Ids{17}));
    EXPECT_EQ((*t)->Encode("<s>hi"), (Ids{1, 17}));
    EXPECT_EQ((*t)->Encode("hi</s> hi"), (Ids{17, 2, 17}));
    EXPECT_EQ((*t)->Encode("\xc3\xbc\xe2\x82\xac"), (Ids{9, 6, 7, 8, 0}));
  }
  // "first": only the piece at the start of the input gets the prefix.
  EXPECT_EQ(first->Encode("hi"), (Ids{17}));
  EXPECT_EQ(first->Encode("<s>hi"), (Ids{1, 13, 14}));
  EXPECT_EQ(never->Encode("hi"), (Ids{13, 14}));
  EXPECT_EQ(never->Encode("abc"), (Ids{18, 12}));
  EXPECT_EQ(never->Encode("hi</s> hi"), (Ids{13, 14, 2, 17}));
  // Metaspace decoder: no ByteFallback step, so byte tokens stay as text; the first token loses
  // every _ unless the scheme is "never".
  EXPECT_EQ(Dec(*always, {9, 17}), " hi");
  EXPECT_EQ(Dec(*always, {9}), "");
  EXPECT_EQ(Dec(*always, {15, 3, 11}), "a<0x0A>b");
  EXPECT_EQ(Dec(*never, {9, 17}), "  hi");
}

TEST(SpmToy, MergesAcrossMetaspaceRuns) {
  // With "c_" in the vocabulary the segment must not be cut before "_a".
  auto prepend = Load(MidSpace(Toy()));
  auto nosplit = Load(MidSpace(Metaspace(Toy(), {{"prepend_scheme", "always"}, {"split", false}})));
  auto split = Load(MidSpace(Metaspace(Toy(), {{"prepend_scheme", "always"}, {"split", true}})));
  auto base = Load(Toy());
  ASSERT_TRUE(prepend && nosplit && split && base);
  EXPECT_EQ(prepend->Encode("c a"), (Ids{9, 22, 10}));
  EXPECT_EQ(nosplit->Encode("c a"), (Ids{9, 22, 10}));
  EXPECT_EQ(split->Encode("c a"), (Ids{9, 12, 15}));
  EXPECT_EQ(base->Encode("c a"), (Ids{9, 12, 15}));
}

// The encoder cuts segments before U+2581 runs (and, with all 256 byte tokens, around ASCII
// characters that are always byte tokens, here \n); a vocabulary with an unreachable token holding
// _ in the middle turns the cuts off. Both must give the same ids on any text.
json AllBytes(json j) {
  int32_t id = 22;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    if (!j["model"]["vocab"].contains(name)) j["model"]["vocab"][name] = id++;
  }
  return j;
}

json NoCut(json j) {
  const auto next = static_cast<int32_t>(j["model"]["vocab"].size());  // ids are 0..size-1
  j["model"]["vocab"]["z" + kMeta + "z"] = next;                       // no merge makes it
  return j;
}

class SpmCut : public ::testing::TestWithParam<bool> {};

TEST_P(SpmCut, CutSegmentsEncodeLikeWholeSegments) {
  const json base = GetParam() ? AllBytes(Toy()) : Toy();
  auto whole = Load(NoCut(base));
  auto cut = Load(base);
  ASSERT_TRUE(whole && cut);
  const std::vector<std::string> pieces = {"a",
                                           "b",
                                           "c",
                                           "h",
                                           "i",
                                           " ",
                                           " ",
                                           "  ",
                                           kMeta,
                                           "\n",
                                           "\xc3\xa9",
                                           "\xc3\xbc",
                                           "\xe2\x82\xac",
                                           "x",
                                           "\xff",
                                           "<s>"};
  std::mt19937 rng(11);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    for (size_t k = rng() % 24; k > 0; --k) s += pieces[rng() % pieces.size()];
    const Ids a = cut->Encode(s), b = whole->Encode(s);
    ASSERT_EQ(a, b) << "text: " << s;
    // Round trip: spaces and _ both decode to spaces; the prepended one is stripped.
    EncodeOptions plain;
    plain.parse_special = false;
    std::string expected = s;
    for (size_t p = 0; (p = expected.find(kMeta, p)) != std::string::npos;)
      expected.replace(p, kMeta.size(), " ");
    const std::string got = Dec(*cut, cut->Encode(s, plain));
    // Without all byte tokens ü, x, the invalid byte 0xFF and "<s>" read as plain text give <unk>.
    if (GetParam() || (s.find("\xc3\xbc") == std::string::npos &&
                       s.find_first_of("x<\xff") == std::string::npos)) {
      ASSERT_EQ(got, expected) << "text: " << s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(ToyVocabularies, SpmCut, ::testing::Values(false, true));

}  // namespace
}  // namespace escale::tok
