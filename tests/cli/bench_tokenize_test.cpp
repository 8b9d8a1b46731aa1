// escale bench tokenize: the JSON report counts the same bytes and tokens as an independent path
// (file sizes, the documents' text bytes, and `escale tokenizer encode` per document), the
// baseline is skipped with a note when its packages are missing, runs and agrees with Hugging
// Face when they are present, and bad input ends in a non-zero exit with one error line. No
// timing is asserted: figures go to docs/benchmarks.md.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/test_support.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::RunEscale;
using testing::TempDir;

const std::vector<std::string>& Documents() {
  static const std::vector<std::string> docs = {
      "The quick brown fox jumps over the lazy dog. It's 1234 o'clock!\n",
      "Caf\xc3\xa9 na\xc3\xafve d\xc3\xa9j\xc3\xa0 vu "
      "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c",
      "  leading spaces, a tab\there and <|endoftext|> inside\r\n",
      "the cat sat on the mat; the cat sat on the mat again.",
  };
  return docs;
}

// A small tokenizer trained by escale on the documents, so the test needs no download.
std::string TrainTokenizer(const TempDir& tmp) {
  std::string text;
  for (int i = 0; i < 20; ++i) {
    for (const std::string& d : Documents()) text += d + "\n";
  }
  testing::WriteFile(tmp / "train.txt", text);
  const auto r =
      RunEscale("tokenizer train " + tmp / "train.txt" + " --vocab-size 320 -o " + tmp / "t.json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return tmp / "t.json";
}

int64_t EncodeCount(const std::string& tokenizer, const std::string& file) {
  const auto r = RunEscale("tokenizer encode " + tokenizer + " --file " + file + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out)["count"].get<int64_t>();
}

TEST(BenchTokenize, PlainFileCountsBytesAndTokensLikeEncode) {
  TempDir tmp;
  const std::string tok = TrainTokenizer(tmp);
  std::string text;
  for (int i = 0; i < 5; ++i) {
    for (const std::string& d : Documents()) text += d;
  }
  testing::WriteFile(tmp / "in.txt", text);
  const auto r = RunEscale("bench tokenize --tokenizer " + tok + " --input " + tmp / "in.txt" +
                           " --baseline none --json --repeat 2 --workers 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["bench"], "tokenize");
  EXPECT_EQ(j["bytes"].get<uint64_t>(), fs::file_size(tmp / "in.txt"));
  EXPECT_EQ(j["documents"], 1);
  EXPECT_EQ(j["tokens"].get<int64_t>(), EncodeCount(tok, tmp / "in.txt"));
  EXPECT_EQ(j["workers"], 2);
  ASSERT_EQ(j["runs"].size(), 2u);
  for (const json& run : j["runs"]) {
    EXPECT_GT(run["seconds"].get<double>(), 0);
    EXPECT_GE(run["cpu_seconds"].get<double>(), 0);
  }
  EXPECT_GT(j["mb_per_s"].get<double>(), 0);
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
  EXPECT_GE(j["load_seconds"].get<double>(), 0);
  EXPECT_EQ(j["baseline"]["status"], "off");
  EXPECT_TRUE(j["baseline"]["results"].empty());
}

TEST(BenchTokenize, JsonlCountsTextBytesAndTokensPerDocument) {
  TempDir tmp;
  const std::string tok = TrainTokenizer(tmp);
  std::string lines;
  uint64_t text_bytes = 0;
  int64_t tokens = 0;
  for (size_t i = 0; i < Documents().size(); ++i) {
    const std::string& d = Documents()[i];
    // ASCII-escaped JSON: the line bytes differ from the text bytes the benchmark must count.
    lines += json{{"text", d}, {"id", i}}.dump(-1, ' ', true) + "\n";
    if (i == 1) lines += "   \n";  // blank lines are skipped, as escale tokenize does
    text_bytes += d.size();
    const std::string f = tmp / ("doc" + std::to_string(i) + ".txt");
    testing::WriteFile(f, d);
    tokens += EncodeCount(tok, f);
  }
  testing::WriteFile(tmp / "in.jsonl", lines);
  ASSERT_NE(text_bytes, fs::file_size(tmp / "in.jsonl"));
  const auto r = RunEscale("bench tokenize --tokenizer " + tok + " --input " + tmp / "in.jsonl" +
                           " --baseline none --json --repeat 1 --workers 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["documents"], Documents().size());
  EXPECT_EQ(j["bytes"].get<uint64_t>(), text_bytes);
  EXPECT_EQ(j["tokens"].get<int64_t>(), tokens);
}

TEST(BenchTokenize, BaselineWithoutPackagesIsSkippedWithANote) {
  TempDir tmp;
  const std::string tok = TrainTokenizer(tmp);
  testing::WriteFile(tmp / "in.txt", Documents()[0]);
  const auto r = RunEscale("bench tokenize --tokenizer " + tok + " --input " + tmp / "in.txt" +
                           " --json --repeat 1 --node-modules " + tmp / "no_such_node_modules");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["baseline"]["status"], "skipped");
  EXPECT_FALSE(j["baseline"]["note"].get<std::string>().empty());
  EXPECT_EQ(j["baseline"]["note"].get<std::string>().find('\n'), std::string::npos);
}

TEST(BenchTokenize, BaselineAgreesWithHuggingFaceWhenInstalled) {
  const std::string modules = testing::SourceDir() + "/build/tokenizer-npm/node_modules";
  if (!fs::exists(modules + "/@anush008/tokenizers") ||
      !fs::exists(modules + "/@huggingface/tokenizers") ||
      testing::RunShell("command -v node").exit_code != 0) {
    GTEST_SKIP() << "node or the npm packages are missing (scripts/tokenizer/fetch_tokenizers.sh)";
  }
  TempDir tmp;
  const std::string tok = TrainTokenizer(tmp);
  std::string lines;
  for (const std::string& d : Documents()) lines += json{{"text", d}}.dump() + "\n";
  testing::WriteFile(tmp / "in.jsonl", lines);
  const auto r = RunEscale("bench tokenize --tokenizer " + tok + " --input " + tmp / "in.jsonl" +
                           " --json --repeat 1 --node-modules " + modules);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_EQ(j["baseline"]["status"], "ran") << j["baseline"]["note"];
  ASSERT_EQ(j["baseline"]["results"].size(), 3u);
  for (const json& res : j["baseline"]["results"]) {
    EXPECT_EQ(res["tokens"], j["tokens"]) << res["impl"];
    EXPECT_EQ(res["bytes"], j["bytes"]) << res["impl"];
    EXPECT_EQ(res["documents"], Documents().size()) << res["impl"];
    EXPECT_TRUE(res["tokens_match"].get<bool>()) << res["impl"];
  }
}

void ExpectOneLineError(const std::string& args) {
  const auto r = RunEscale("bench tokenize " + args + " --baseline none");
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_TRUE(r.out.empty()) << r.out;
  ASSERT_FALSE(r.err.empty()) << args;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

TEST(BenchTokenize, BadInputIsOneErrorLine) {
  TempDir tmp;
  const std::string tok = TrainTokenizer(tmp);
  testing::WriteFile(tmp / "in.txt", "some text");
  testing::WriteFile(tmp / "bad_tok.json", "{\"model\": {\"type\": \"BPE\"");
  testing::WriteFile(tmp / "bad.jsonl", "{\"text\": \"ok\"}\nnot json\n");
  testing::WriteFile(tmp / "notext.jsonl", "{\"body\": \"no text field\"}\n");
  testing::WriteFile(tmp / "empty.txt", "");
  ExpectOneLineError("--tokenizer " + tmp / "bad_tok.json" + " --input " + tmp / "in.txt");
  ExpectOneLineError("--tokenizer " + tok + " --input " + tmp / "bad.jsonl");
  ExpectOneLineError("--tokenizer " + tok + " --input " + tmp / "notext.jsonl");
  ExpectOneLineError("--tokenizer " + tok + " --input " + tmp / "empty.txt");
  ExpectOneLineError("--tokenizer " + tok + " --input " + tmp / "missing.txt");
  ExpectOneLineError("--tokenizer " + tok + " --input " + tmp / "in.txt" + " --workers 0");
}

}  // namespace
}  // namespace escale
