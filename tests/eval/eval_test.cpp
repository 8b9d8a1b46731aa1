// Evaluation: lm-eval's request construction, few-shot sampling (against CPython itself), the
// batched scorer against the fp64 reference model, multiple-choice rendering and metrics, and the
// `escale eval` command's errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "eval/answer_extraction.h"
#include "eval/generation.h"
#include "eval/generation_task.h"
#include "eval/lm_scorer.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"
#include "eval/python_random.h"
#include "eval/requests.h"
#include "io/hf_model.h"
#include "model/layout.h"
#include "model/reference_forward.h"
#include "model/train_model.h"
#include "support/test_support.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace escale::eval {
namespace {

using nlohmann::json;
using testing::RunShell;
using testing::TempDir;

constexpr const char* kPython = "/usr/bin/python3";

bool HavePython() {
  return std::filesystem::exists(kPython);
}

// Runs a Python program and parses its stdout as JSON.
json RunPython(const std::string& program) {
  TempDir tmp;
  testing::WriteFile(tmp / "p.py", program);
  auto r = RunShell(std::string(kPython) + " " + (tmp / "p.py"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out);
}

// Byte tokens (ids = byte values), merges as given (byte-level strings), <|endoftext|> last.
json ByteTokenizerJson(const std::vector<std::string>& extra = {},
                       const json& merges = json::array()) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b)
    vocab[tok::BytesToByteLevel(std::string(1, static_cast<char>(b)))] = b;
  int id = 256;
  for (const auto& t : extra) vocab[tok::BytesToByteLevel(t)] = id++;
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = json::array({{{"id", id},
                                    {"content", "<|endoftext|>"},
                                    {"single_word", false},
                                    {"lstrip", false},
                                    {"rstrip", false},
                                    {"normalized", false},
                                    {"special", true}}});
  vocab["<|endoftext|>"] = id;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", false}};
  return j;
}

std::shared_ptr<const tok::Tokenizer> ByteTokenizer(const std::vector<std::string>& extra = {},
                                                    const json& merges = json::array()) {
  auto t = tok::Tokenizer::FromJson(ByteTokenizerJson(extra, merges).dump());
  EXPECT_TRUE(t.ok()) << t.status().message();
  return *t;
}

std::vector<int32_t> Bytes(std::string_view s) {
  return {s.begin(), s.end()};
}

// ---------------------------------------------------------------------------------------------
// CPython's generator

TEST(PythonRandom, MatchesCPythonSampleAndGetrandbits) {
  if (!HavePython()) GTEST_SKIP() << kPython << " not found";
  const std::vector<uint64_t> seeds = {0, 1, 1234, (uint64_t{1} << 40) + 5};
  const std::vector<std::pair<int64_t, int64_t>> nk = {
      {10, 3}, {22, 21}, {30, 7}, {1000, 5}, {100, 30}, {5, 5}, {1, 1}, {2, 0}, {500, 6}, {85, 20}};
  std::string prog =
      "import random, json\nout = []\nfor seed in [0, 1, 1234, 2**40 + 5]:\n"
      "    r = random.Random(seed)\n    seq = []\n";
  for (auto [n, k] : nk)
    prog +=
        "    seq.append(r.sample(range(" + std::to_string(n) + "), " + std::to_string(k) + "))\n";
  prog +=
      "    seq.append([r.getrandbits(b) for b in (1, 7, 31, 32)])\n    "
      "out.append(seq)\nprint(json.dumps(out))\n";
  const json want = RunPython(prog);
  ASSERT_EQ(want.size(), seeds.size());
  for (size_t s = 0; s < seeds.size(); ++s) {
    PythonRandom r(seeds[s]);
    for (size_t i = 0; i < nk.size(); ++i) {
      EXPECT_EQ(json(r.Sample(nk[i].first, nk[i].second)), want[s][i])
          << "seed " << seeds[s] << " case " << i;
    }
    std::vector<uint32_t> bits;
    for (int b : {1, 7, 31, 32}) bits.push_back(r.GetRandBits(b));
    EXPECT_EQ(json(bits), want[s][nk.size()]);
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

TEST(Requests, PythonWhitespaceAndWordCounts) {
  EXPECT_EQ(TrailingPythonWhitespace("Answer: \t\n"), 3u);
  EXPECT_EQ(TrailingPythonWhitespace("abc\u3000\u00a0"),
            5u);                                         // ideographic space (3 bytes) + NBSP (2)
  EXPECT_EQ(TrailingPythonWhitespace("abc\u200b"), 0u);  // zero-width space is not a space
  EXPECT_EQ(TrailingPythonWhitespace("   "), 3u);
  EXPECT_EQ(TrailingPythonWhitespace("ab\xff "), 1u);  // stops at the invalid byte
  if (!HavePython()) GTEST_SKIP() << kPython << " not found";
  const std::vector<std::string> texts = {"",
                                          " ",
                                          "a b",
                                          " lead and trail ",
                                          "x\u00a0y\u2003z\u200bw\x1c v",
                                          "one\n\ntwo\tthree  four",
                                          "中文 文本\u3000全角"};
  json arr = json::array();
  for (const auto& t : texts) arr.push_back(t);
  const json want = RunPython(
      "import json, re\nprint(json.dumps([len(re.split(r'\\s+', t)) for t in json.loads(" +
      json(arr.dump()).dump() + ")]))\n");
  for (size_t i = 0; i < texts.size(); ++i)
    EXPECT_EQ(CountPythonWords(texts[i]), want[i].get<int64_t>()) << texts[i];
}

TEST(Requests, RollingWindowsMatchLmEvalAlgorithm) {
  if (!HavePython()) GTEST_SKIP() << kPython << " not found";
  // lm-eval's get_rolling_token_windows + make_disjoint_window, transcribed.
  const std::string prog = R"(import json
def rolling(tokens, prefix, max_seq_len, context_len=1):
    if not tokens:
        return
    pred_len = max_seq_len - context_len + 1
    predicted = 0
    first_seq_len = min(max_seq_len, len(tokens))
    yield ([prefix] + tokens[: first_seq_len - 1], tokens[:first_seq_len])
    predicted += first_seq_len
    while predicted < len(tokens):
        window_pred_len = min(len(tokens) - predicted, pred_len)
        window_end = predicted + window_pred_len
        yield (tokens[window_end - max_seq_len - 1 : window_end - 1], tokens[window_end - window_pred_len : window_end])
        predicted += window_pred_len
def disjoint(a, b):
    return (a[: len(a) - (len(b) - 1)], b)
out = []
for n in [0, 1, 3, 4, 5, 8, 9, 23]:
    for m in [1, 2, 4, 7]:
        toks = list(range(100, 100 + n))
        out.append([[list(w[0]), list(w[1])] for w in (disjoint(*x) for x in rolling(toks, 7, m))])
print(json.dumps(out))
)";
  const json want = RunPython(prog);
  size_t i = 0;
  for (int n : {0, 1, 3, 4, 5, 8, 9, 23}) {
    for (int m : {1, 2, 4, 7}) {
      std::vector<int32_t> toks(static_cast<size_t>(n));
      for (int t = 0; t < n; ++t) toks[static_cast<size_t>(t)] = 100 + t;
      json got = json::array();
      for (const TokenRequest& r : RollingWindows(toks, 7, m))
        got.push_back({r.context, r.continuation});
      EXPECT_EQ(got, want[i]) << "n=" << n << " max_len=" << m;
      ++i;
    }
  }
}

TEST(Requests, ModelInputKeepsTheLastMaxLenPlusOneTokens) {
  const TokenRequest r{{1, 2, 3, 4, 5}, {6, 7}};
  ModelInput in = MakeModelInput(r, 4);  // (ctx+cont)[-5:][:-1] = [3,4,5,6]
  EXPECT_EQ(in.tokens, (std::vector<int32_t>{3, 4, 5, 6}));
  EXPECT_EQ(in.targets, (std::vector<int32_t>{6, 7}));
  in = MakeModelInput(r, 100);
  EXPECT_EQ(in.tokens, (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
  in = MakeModelInput({{9}, {1, 2, 3}},
                      2);  // continuation longer than the window: its tail is scored
  EXPECT_EQ(in.tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(in.targets, (std::vector<int32_t>{2, 3}));
}

TEST(Requests, EncodePairFollowsLmEval) {
  // Merges "c"+"d" -> "cd": the joint string "abcdef" tokenises as a b cd e f, so the
  // continuation is whatever follows the context's 3 tokens: e f (lm-eval's lossy split).
  auto tok = ByteTokenizer({"cd"}, json::array({"c d"}));
  RequestEncoder enc(*tok, false);
  TokenRequest r = enc.EncodePair("abc", "def");
  EXPECT_EQ(r.context, Bytes("abc"));
  EXPECT_EQ(r.continuation, Bytes("ef"));
  // Trailing whitespace of the context moves to the continuation.
  r = enc.EncodePair("Answer: \n", "yes");
  EXPECT_EQ(r.context, Bytes("Answer:"));
  EXPECT_EQ(r.continuation, Bytes(" \nyes"));
  // An empty context is the prefix token (here <|endoftext|>, id 257 after "cd").
  r = enc.EncodePair("", " x");
  EXPECT_EQ(r.context, (std::vector<int32_t>{257}));
  EXPECT_EQ(r.continuation, Bytes(" x"));
  // Special tokens in the text are parsed, as HF tokenizers do by default.
  EXPECT_EQ(enc.Encode("a<|endoftext|>"), (std::vector<int32_t>{'a', 257}));
}

// ---------------------------------------------------------------------------------------------
// The scorer against the fp64 reference

ModelConfig TinyModel(bool moe) {
  ModelConfig c;
  c.vocab_size = 260;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.rms_norm_eps = 1e-5;
  c.qkv_bias = true;
  if (moe) {
    c.arch = Architecture::kMixtral;
    c.moe.num_experts = 4;
    c.moe.top_k = 2;
    c.moe.expert_intermediate = 12;
    c.moe.capacity_factor = 1.0;  // the scorer must ignore it (dropless)
  }
  return c;
}

TensorMap RandomWeights(const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  TensorMap m;
  for (const TensorSpec& s : CanonicalTensors(c)) {
    Tensor t = Tensor::Zeros(DType::kF32, s.shape);
    float* p = t.mutable_data<float>();
    const bool is_norm = s.role == TensorRole::kAttnNorm || s.role == TensorRole::kFfnNorm ||
                         s.role == TensorRole::kFinalNorm;
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double u = double(rng()) / 4294967295.0 * 2.0 - 1.0;
      p[i] = static_cast<float>(is_norm ? 1.0 + 0.2 * u
                                        : (s.role == TensorRole::kRouter ? 1.5 : 0.5) * u);
    }
    m[s.name] = std::move(t);
  }
  return m;
}

// log p of each target given its prefix, from the reference forward of `in.tokens`.
LogLikelihood ReferenceLogLikelihood(const ModelConfig& c, const TensorMap& w,
                                     const ModelInput& in) {
  ModelConfig dropless = c;
  dropless.moe.capacity_factor = 0;
  auto f = ReferenceForward(dropless, w, in.tokens);
  EXPECT_TRUE(f.ok()) << f.status().message();
  LogLikelihood ll;
  const int64_t T = static_cast<int64_t>(in.tokens.size()), V = c.vocab_size;
  const int64_t start = T - static_cast<int64_t>(in.targets.size());
  for (int64_t p = start; p < T; ++p) {
    const double* row = f->logits.data() + p * V;
    const double mx = *std::max_element(row, row + V);
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(row[v] - mx);
    const int32_t target = in.targets[static_cast<size_t>(p - start)];
    ll.logprob += row[target] - mx - std::log(s);
    ll.greedy = ll.greedy && std::max_element(row, row + V) - row == target;
    ++ll.tokens;
  }
  return ll;
}

class ScorerTest : public ::testing::TestWithParam<bool> {};

TEST_P(ScorerTest, MatchesReferenceModel) {
  const ModelConfig c = TinyModel(GetParam());
  const TensorMap w = RandomWeights(c, 7);
  std::mt19937 rng(3);
  auto rand_tokens = [&](size_t n) {
    std::vector<int32_t> v(n);
    for (auto& t : v) t = static_cast<int32_t>(rng() % 260);
    return v;
  };
  std::vector<TokenRequest> reqs;
  for (size_t i = 0; i < 11; ++i)
    reqs.push_back({rand_tokens(1 + i % 5 * 3), rand_tokens(1 + i % 3)});
  reqs.push_back({rand_tokens(30), rand_tokens(4)});  // truncated on the left at max_length 20
  reqs.push_back({rand_tokens(2), {}});               // nothing to score
  auto scorer = LmScorer::Create(c, w, 20, 3);
  ASSERT_TRUE(scorer.ok()) << scorer.status().message();
  int64_t last_done = 0;
  auto got = (*scorer)->Score(reqs, [&](int64_t n) { last_done = n; });
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(last_done, static_cast<int64_t>(reqs.size()));
  int greedy_seen = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const LogLikelihood want = ReferenceLogLikelihood(c, w, MakeModelInput(reqs[i], 20));
    EXPECT_NEAR((*got)[i].logprob, want.logprob, 1e-4 * (1 + std::abs(want.logprob)))
        << "request " << i;
    EXPECT_EQ((*got)[i].tokens, want.tokens);
    EXPECT_EQ((*got)[i].greedy, want.greedy) << "request " << i;
    greedy_seen += want.greedy;
  }
  EXPECT_EQ((*got)[12].tokens, 0);
  EXPECT_LT(greedy_seen, static_cast<int>(reqs.size()));  // the flag is not trivially true
}

INSTANTIATE_TEST_SUITE_P(DenseAndMoe, ScorerTest, ::testing::Bool());

TEST(Scorer, RefusesTokensOutsideTheVocabulary) {
  const ModelConfig c = TinyModel(false);
  auto scorer = LmScorer::Create(c, RandomWeights(c, 1), 8, 2);
  ASSERT_TRUE(scorer.ok());
  std::vector<TokenRequest> reqs = {{{1, 2}, {260}}};
  auto r = (*scorer)->Score(reqs);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("outside the model's vocabulary"), std::string::npos);
}

TEST(Perplexity, TextDocumentsAreScoredOnceEachToken) {
  const ModelConfig c = TinyModel(false);
  const TensorMap w = RandomWeights(c, 5);
  auto tok = ByteTokenizer();
  RequestEncoder enc(*tok, false);
  const std::vector<std::string> docs = {"hello world", "a b  c\nd", "x"};
  ASSERT_EQ(enc.prefix_token(), 256);          // <|endoftext|> follows the 256 byte tokens
  auto scorer = LmScorer::Create(c, w, 4, 2);  // windows of 4: "hello world" needs 3
  ASSERT_TRUE(scorer.ok());
  auto r = TextPerplexity(**scorer, enc, docs);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->tokens, 11 + 8 + 1);
  EXPECT_EQ(r->bytes, 11 + 8 + 1);
  EXPECT_EQ(r->words, 2 + 4 + 1);
  double want = 0;
  for (const auto& d : docs)
    for (const TokenRequest& win : RollingWindows(Bytes(d), *tok->TokenToId("<|endoftext|>"), 4))
      want += ReferenceLogLikelihood(c, w, MakeModelInput(win, 4)).logprob;
  EXPECT_NEAR(r->logprob, want, 1e-4 * std::abs(want));
  EXPECT_NEAR(r->bits_per_byte(), -want / 20 / std::log(2.0), 1e-4);
  EXPECT_NEAR(r->word_perplexity(), std::exp(-r->logprob / 7), 1e-9);
}

// A document the pre-tokenizer cannot split within its work bound fails the run, naming the
// document and the pattern, instead of being scored on ids the tokenizer does not mean.
TEST(Perplexity, ADocumentThatExhaustsThePreTokenizerFailsByName) {
  nlohmann::json j = ByteTokenizerJson({}, nlohmann::json::array());
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", nlohmann::json::array({{{"type", "Split"},
                                                {"pattern", {{"Regex", "(a+)+$"}}},
                                                {"behavior", "Isolated"},
                                                {"invert", false}},
                                               {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  auto tok = tok::Tokenizer::FromJson(j.dump());
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  const ModelConfig c = TinyModel(false);
  const TensorMap w = RandomWeights(c, 5);
  RequestEncoder enc(**tok, false);
  auto scorer = LmScorer::Create(c, w, 4, 2);
  ASSERT_TRUE(scorer.ok());
  auto r = TextPerplexity(**scorer, enc, {"fine text", std::string(2000, 'a') + "b"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("document 2: "), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("(a+)+$"), std::string::npos) << r.status().message();
}

// ---------------------------------------------------------------------------------------------
// Multiple choice

TEST(MultipleChoice, RendersLmEvalPrompts) {
  auto arc =
      RenderDoc(TaskFormat::kArc, json::parse(R"({"question": "Which is a gas?", "answerKey": "C",
      "choices": {"text": ["rock", "water", "steam"], "label": ["A", "B", "C"]}})"));
  ASSERT_TRUE(arc.ok()) << arc.status().message();
  EXPECT_EQ(arc->contexts[0], "Question: Which is a gas?\nAnswer:");
  EXPECT_EQ(arc->continuations, (std::vector<std::string>{" rock", " water", " steam"}));
  EXPECT_EQ(arc->gold, 2);
  EXPECT_EQ(arc->fewshot_example, "Question: Which is a gas?\nAnswer: steam");

  auto hs = RenderDoc(TaskFormat::kHellaswag, json::parse(R"({"activity_label": "Baking cookies",
      "ctx_a": "A woman mixes dough.", "ctx_b": "SHE [header] puts it", "endings": [" in the oven [title] Done ", "away"], "label": "0"})"));
  ASSERT_TRUE(hs.ok()) << hs.status().message();
  // preprocess(label + ": " + ctx_a + " " + ctx_b.capitalize()); "[...]" spans removed, "  " -> "
  // ".
  EXPECT_EQ(hs->contexts[0], "Baking cookies: A woman mixes dough. She puts it");
  EXPECT_EQ(hs->choice_texts[0], "in the oven. Done");

  auto wg =
      RenderDoc(TaskFormat::kWinogrande,
                json::parse(R"({"sentence": "The cup fell off the table because _ was wobbly.",
      "option1": "the cup", "option2": "the table", "answer": "2"})"));
  ASSERT_TRUE(wg.ok()) << wg.status().message();
  EXPECT_EQ(wg->contexts,
            (std::vector<std::string>{"The cup fell off the table because the cup",
                                      "The cup fell off the table because the table"}));
  EXPECT_EQ(wg->continuations, (std::vector<std::string>{" was wobbly."}));
  EXPECT_EQ(wg->gold, 1);

  auto mmlu =
      RenderDoc(TaskFormat::kMmlu,
                json::parse(R"({"question": " What is 2+2? ", "subject": "elementary_mathematics",
      "choices": ["3", "4", "5", "6"], "answer": 1})"));
  ASSERT_TRUE(mmlu.ok()) << mmlu.status().message();
  EXPECT_EQ(mmlu->contexts[0], "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:");
  EXPECT_EQ(mmlu->description,
            "The following are multiple choice questions (with answers) about elementary "
            "mathematics.\n\n");
  EXPECT_EQ(mmlu->continuations[1], " B");

  auto boolq = RenderDoc(TaskFormat::kBoolq,
                         json::parse(R"({"passage": "P.", "question": "is it", "label": 1})"));
  ASSERT_TRUE(boolq.ok());
  EXPECT_EQ(boolq->contexts[0], "P.\nQuestion: is it?\nAnswer:");
  EXPECT_EQ(boolq->fewshot_example, "P.\nQuestion: is it?\nAnswer: yes");

  EXPECT_EQ(
      *DetectTaskFormat(json::parse(R"({"goal": "g", "sol1": "a", "sol2": "b", "label": 0})")),
      TaskFormat::kPiqa);
  auto bad = RenderDoc(TaskFormat::kArc, json::parse(R"({"question": "q", "answerKey": "E",
      "choices": {"text": ["a", "b"], "label": ["A", "B"]}})"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("answerKey"), std::string::npos);
}

TEST(MultipleChoice, FewShotExamplesAreTheOnesLmEvalDraws) {
  if (!HavePython()) GTEST_SKIP() << kPython << " not found";
  const int n = 9, k = 2;
  std::vector<McDoc> docs;
  for (int i = 0; i < n; ++i) {
    auto d = RenderDoc(TaskFormat::kGeneric,
                       json{{"query", "q" + std::to_string(i)},
                            {"choices", {"a" + std::to_string(i), "b" + std::to_string(i)}},
                            {"gold", 0}});
    ASSERT_TRUE(d.ok());
    docs.push_back(*d);
  }
  // lm-eval: one Random(1234) for the task; per document sample k+1 from the same split, drop
  // the document itself, keep k.
  const json want = RunPython(
      "import random, json\nr = random.Random(1234)\nout = []\nfor i in range(" +
      std::to_string(n) + "):\n    s = r.sample(range(" + std::to_string(n) + "), " +
      std::to_string(k + 1) + ")\n    out.append([x for x in s if x != i][:" + std::to_string(k) +
      "])\nprint(json.dumps(out))\n");
  const ModelConfig c = TinyModel(false);
  auto scorer = LmScorer::Create(c, RandomWeights(c, 2), 64, 4);
  ASSERT_TRUE(scorer.ok());
  auto tok = ByteTokenizer();
  RequestEncoder enc(*tok, false);
  McOptions opt;
  opt.num_fewshot = k;
  auto r = EvaluateMultipleChoice(**scorer, enc, docs, {}, opt);
  ASSERT_TRUE(r.ok()) << r.status().message();
  for (int i = 0; i < n; ++i) {
    std::string expect;
    for (const auto& x : want[i])
      expect += "q" + std::to_string(x.get<int>()) + " a" + std::to_string(x.get<int>()) + "\n\n";
    EXPECT_EQ(r->docs[i].context, expect + "q" + std::to_string(i)) << "doc " << i;
  }
  opt.sampler = FewshotSampler::kFirstN;
  opt.limit = 2;
  r = EvaluateMultipleChoice(**scorer, enc, docs, {}, opt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->documents, 2);
  EXPECT_EQ(r->docs[0].context, "q1 a1\n\nq2 a2\n\nq0");  // itself excluded, the next ones taken
  EXPECT_EQ(r->docs[1].context, "q0 a0\n\nq2 a2\n\nq1");
}

TEST(MultipleChoice, MetricsFollowTheReferenceLogLikelihoods) {
  const ModelConfig c = TinyModel(true);
  const TensorMap w = RandomWeights(c, 11);
  auto tok = ByteTokenizer();
  RequestEncoder enc(*tok, false);
  std::vector<McDoc> docs;
  std::mt19937 rng(5);
  for (int i = 0; i < 12; ++i) {
    std::vector<std::string> choices;
    for (int ch = 0; ch < 3; ++ch)
      choices.push_back(std::string(1 + rng() % 6, static_cast<char>('a' + rng() % 20)));
    auto d = RenderDoc(
        TaskFormat::kGeneric,
        json{{"query", "question " + std::to_string(i)}, {"choices", choices}, {"gold", i % 3}});
    ASSERT_TRUE(d.ok());
    docs.push_back(*d);
  }
  auto scorer = LmScorer::Create(c, w, 64, 5);
  ASSERT_TRUE(scorer.ok());
  auto r = EvaluateMultipleChoice(**scorer, enc, docs, {}, McOptions{});
  ASSERT_TRUE(r.ok()) << r.status().message();
  int correct = 0, correct_norm = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    std::vector<double> lp, norm;
    for (size_t ch = 0; ch < 3; ++ch) {
      const TokenRequest req = enc.EncodePair(docs[i].contexts[0], docs[i].continuations[ch]);
      lp.push_back(ReferenceLogLikelihood(c, w, MakeModelInput(req, 64)).logprob);
      norm.push_back(lp.back() / static_cast<double>(docs[i].choice_texts[ch].size()));
      EXPECT_NEAR(r->docs[i].logprobs[ch], lp.back(), 1e-4 * (1 + std::abs(lp.back())));
    }
    correct += std::max_element(lp.begin(), lp.end()) - lp.begin() == docs[i].gold;
    correct_norm += std::max_element(norm.begin(), norm.end()) - norm.begin() == docs[i].gold;
  }
  EXPECT_DOUBLE_EQ(r->acc, correct / 12.0);
  EXPECT_DOUBLE_EQ(r->acc_norm, correct_norm / 12.0);
  EXPECT_DOUBLE_EQ(r->acc_bytes, r->acc_norm);  // ASCII choices: characters = bytes
  EXPECT_NEAR(r->acc_stderr, std::sqrt(r->acc * (1 - r->acc) / 11), 1e-12);
}

// ---------------------------------------------------------------------------------------------
// The command

TEST(EvalCli, ReportsBadInputsInOneLine) {
  TempDir tmp;
  ModelConfig c = TinyModel(false);
  c.arch = Architecture::kQwen2;  // q/k/v biases
  WriteOptions wo;
  const Status written = WriteHfModel(tmp / "m", c, RandomWeights(c, 1), wo);
  ASSERT_TRUE(written.ok()) << written.message();
  testing::WriteFile(tmp / "task.jsonl",
                     "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\nnot json\n");
  struct Case {
    std::string args, expect;
  } cases[] = {
      {tmp / "m", "nothing to evaluate"},
      {tmp / "m --task " + (tmp / "task.jsonl"), "tokenizer"},  // the model has no tokenizer.json
      {tmp / "nope --task x", "nope"},
      {tmp / "m --shards " + (tmp / "missing"), "missing"},
  };
  for (const auto& cs : cases) {
    auto r = testing::RunEscale("eval " + cs.args);
    EXPECT_NE(r.exit_code, 0) << cs.args;
    EXPECT_NE(r.err.find(cs.expect), std::string::npos) << cs.args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // With a tokenizer: the malformed line is named; a good task file gives the results JSON.
  testing::WriteFile(tmp / "m/tokenizer.json", ByteTokenizerJson().dump());
  auto r = testing::RunEscale("eval " + (tmp / "m") + " --task " + (tmp / "task.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("task.jsonl:2: not valid JSON"), std::string::npos) << r.err;
  testing::WriteFile(tmp / "good.jsonl",
                     "{\"query\": \"q\", \"choices\": [\"a\", \"bb\"], \"gold\": 1}\n"
                     "{\"query\": \"r\", \"choices\": [\"c\", \"d\"], \"gold\": 0}\n");
  testing::WriteFile(tmp / "doc.txt", "some text to score");
  r = testing::RunEscale("eval " + (tmp / "m") + " --task " + (tmp / "good.jsonl") + " --text " +
                         (tmp / "doc.txt") + " --json --samples " + (tmp / "s.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["tasks"]["good"]["documents"], 2);
  EXPECT_EQ(j["tasks"]["good"]["format"], "generic");
  const double acc = j["tasks"]["good"]["acc"].get<double>();
  EXPECT_TRUE(acc == 0 || acc == 0.5 || acc == 1) << acc;
  EXPECT_EQ(j["text_perplexity"]["tokens"], 18);
  EXPECT_EQ(j["text_perplexity"]["words"], 4);
  const std::string samples = testing::ReadFile(tmp / "s.jsonl");
  EXPECT_EQ(std::count(samples.begin(), samples.end(), '\n'), 2);
  EXPECT_NE(samples.find("\"logprobs\""), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Generation

TEST(Sampling, GreedyTopKTopPAndTheDistribution) {
  std::vector<std::pair<float, int32_t>> scratch;
  uint64_t state = 42;
  const std::vector<float> tie = {1.0f, 3.0f, 3.0f, -2.0f};
  EXPECT_EQ(SampleToken(tie, {}, state, scratch), 1);  // greedy: the first maximum
  SamplingOptions one{1.0, 1, 1.0, 0};
  EXPECT_EQ(SampleToken(tie, one, state, scratch), 1);  // top-1 = greedy, ties by id
  SamplingOptions nucleus{1.0, 0, 0.01, 0};
  EXPECT_EQ(SampleToken(tie, nucleus, state, scratch), 1);
  // p(1) = 3/4 at temperature 1 with logits [0, ln 3]; at T = 2: sqrt(3)/(1+sqrt(3)).
  const std::vector<float> two = {0.0f, static_cast<float>(std::log(3.0))};
  for (double temp : {1.0, 2.0}) {
    SamplingOptions o{temp, 0, 1.0, 0};
    int ones = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) ones += SampleToken(two, o, state, scratch) == 1;
    const double p = temp == 1.0 ? 0.75 : std::sqrt(3.0) / (1 + std::sqrt(3.0));
    EXPECT_NEAR(ones / double(n), p, 4 * std::sqrt(p * (1 - p) / n)) << "T=" << temp;
  }
  // top-k 2 never leaves the two best; top-p 0.8 over probabilities [0.5, 0.3, 0.2] keeps two.
  const std::vector<float> three = {static_cast<float>(std::log(0.5)),
                                    static_cast<float>(std::log(0.3)),
                                    static_cast<float>(std::log(0.2))};
  SamplingOptions k2{1.0, 2, 1.0, 0}, p8{1.0, 0, 0.8, 0};
  std::vector<int> seen_k(3), seen_p(3);
  for (int i = 0; i < 3000; ++i) {
    ++seen_k[static_cast<size_t>(SampleToken(three, k2, state, scratch))];
    ++seen_p[static_cast<size_t>(SampleToken(three, p8, state, scratch))];
  }
  EXPECT_EQ(seen_k[2], 0);
  EXPECT_EQ(seen_p[2], 0);
  EXPECT_GT(seen_k[1], 0);
  EXPECT_GT(seen_p[1], 0);
  // The same seed state gives the same sequence.
  uint64_t s1 = 7, s2 = 7;
  SamplingOptions o{1.0, 0, 1.0, 0};
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(SampleToken(three, o, s1, scratch), SampleToken(three, o, s2, scratch));
}

TEST(Generate, GreedyFollowsTheReferenceArgmaxAndStopsAtStopStrings) {
  const ModelConfig c = TinyModel(true);
  const TensorMap w = RandomWeights(c, 21);
  auto tok = ByteTokenizer();
  auto dec = CreateDecoder(c, w, 32);
  ASSERT_TRUE(dec.ok()) << dec.status().message();
  const std::vector<int32_t> prompt = Bytes("Hi there");
  GenerateOptions opt;
  opt.max_new_tokens = 6;
  std::string streamed;
  auto r = Generate(**dec, *tok, prompt, opt, [&](std::string_view s) { streamed += s; });
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->tokens.size(), 6u);
  EXPECT_EQ(r->finish_reason, "length");
  EXPECT_EQ(streamed, r->text);
  // Independently: the argmax of the fp64 reference over the growing sequence.
  std::vector<int32_t> seq = prompt;
  ModelConfig dropless = c;
  dropless.moe.capacity_factor = 0;
  for (int i = 0; i < 6; ++i) {
    auto f = ReferenceForward(dropless, w, seq);
    ASSERT_TRUE(f.ok());
    const double* row = f->logits.data() + (seq.size() - 1) * 260;
    seq.push_back(static_cast<int32_t>(std::max_element(row, row + 260) - row));
  }
  EXPECT_EQ(r->tokens, std::vector<int32_t>(seq.begin() + 8, seq.end()));
  // A stop string made of generated bytes 2..3 cuts the text before it.
  std::string all;
  for (int32_t t : r->tokens) all += *tok->Decode({t});
  opt.stop = {all.substr(2, 2)};
  streamed.clear();
  auto cut = Generate(**dec, *tok, prompt, opt, [&](std::string_view s) { streamed += s; });
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->finish_reason, "stop");
  EXPECT_EQ(cut->text, all.substr(0, all.find(opt.stop[0])));
  EXPECT_EQ(streamed, cut->text);
  // The generated token is the EOS: stop before it.
  opt.stop.clear();
  opt.stop_ids = {9999, r->tokens[0]};  // any of the stop ids ends it
  auto eos = Generate(**dec, *tok, prompt, opt);
  ASSERT_TRUE(eos.ok());
  EXPECT_EQ(eos->finish_reason, "eos");
  EXPECT_TRUE(eos->tokens.empty());
  opt.max_new_tokens = 30;  // 8 + 30 > 32
  EXPECT_FALSE(Generate(**dec, *tok, prompt, opt).ok());
}

// A head padded past the tokenizer (Qwen2.5-7B: 152064 rows for 151665 tokens): here the padded
// rows 257..259 win every argmax (embedding dimension 0 dominates the residual stream, so the
// normalised state is ~+4 there, and only the padded rows read it). Without the limit greedy
// picks them; with the tokenizer's size as the limit it never does and runs to the end.
TEST(Generate, PaddedHeadRowsAreNeverSampled) {
  const ModelConfig c = TinyModel(false);
  TensorMap w = RandomWeights(c, 31);
  float* embed = w.at("embed").mutable_data<float>();
  for (int64_t v = 0; v < c.vocab_size; ++v) embed[v * c.hidden_size] = 1000.0f;
  float* head = w.at("lm_head").mutable_data<float>();
  for (int64_t v = 0; v < c.vocab_size; ++v) head[v * c.hidden_size] = v >= 257 ? 100.0f : 0.0f;
  auto tok = ByteTokenizer();
  ASSERT_EQ(tok->vocab_size(), 257);
  auto dec = CreateDecoder(c, w, 32);
  ASSERT_TRUE(dec.ok()) << dec.status().message();
  GenerateOptions opt;
  opt.max_new_tokens = 6;
  auto unlimited = Generate(**dec, *tok, Bytes("pad"), opt);
  ASSERT_FALSE(unlimited.ok());  // the padded id cannot be decoded
  EXPECT_NE(unlimited.status().message().find("outside the vocabulary"), std::string::npos)
      << unlimited.status().message();
  opt.vocab_limit = tok->vocab_size();
  for (double temperature : {0.0, 1.0}) {
    opt.sampling.temperature = temperature;
    auto r = Generate(**dec, *tok, Bytes("pad"), opt);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->finish_reason, "length");
    ASSERT_EQ(r->tokens.size(), 6u);
    for (int32_t t : r->tokens) EXPECT_LT(t, 257);
  }
}

TEST(Generate, StopIdsComeFromGenerationConfigOrConfig) {
  TempDir tmp;
  const json extra = {{"eos_token_id", 9}};
  // No generation_config.json: config.json's eos_token_id, plus the tokenizer's.
  auto ids = ModelStopIds(tmp.path(), extra, 256);
  ASSERT_TRUE(ids.ok()) << ids.status().message();
  EXPECT_EQ(*ids, (std::vector<int32_t>{9, 256}));
  // generation_config.json wins, and a list is every stop id (Llama 3.1: 128001, 128008, 128009).
  testing::WriteFile(tmp / "generation_config.json",
                     R"({"eos_token_id": [128001, 128008, 128009]})");
  ids = ModelStopIds(tmp.path(), extra, std::nullopt);
  ASSERT_TRUE(ids.ok()) << ids.status().message();
  EXPECT_EQ(*ids, (std::vector<int32_t>{128001, 128008, 128009}));
  for (const char* bad : {R"({"eos_token_id": "x"})", R"({"eos_token_id": [1, -2]})", "[1]", "{"}) {
    testing::WriteFile(tmp / "generation_config.json", bad);
    ids = ModelStopIds(tmp.path(), extra, 256);
    ASSERT_FALSE(ids.ok()) << bad;
    EXPECT_NE(ids.status().message().find("generation_config.json"), std::string::npos)
        << ids.status().message();
  }
}

TEST(Generate, KvCacheIsSizedToTheCallNotTheModelContext) {
  // Llama 3.1: 131072 positions; a 10-token prompt and 20 new tokens need 30.
  EXPECT_EQ(*KvCacheLength(10, 20, 131072, 0), 30);
  EXPECT_EQ(*KvCacheLength(10, 20, 131072, 4096), 4096);  // --max-length wins
  EXPECT_EQ(*KvCacheLength(10, 20, 30, 0), 30);
  auto over = KvCacheLength(10, 21, 30, 0);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("max_position_embeddings"), std::string::npos);
}

// SentencePiece-style decoding strips one leading space of the whole text, not of every token:
// with a vocabulary where every token is "_" + one letter, the generated text keeps a space before
// every token but the first (per-token decoding would drop them all).
TEST(Generate, SentencePieceTextIsTheWholeContinuationDecoded) {
  const ModelConfig c = TinyModel(false);
  const TensorMap w = RandomWeights(c, 5);
  const std::string meta = "\xe2\x96\x81";
  json vocab = json::object();
  std::vector<std::string> letter(260);
  for (int i = 0; i < 260; ++i) {
    letter[static_cast<size_t>(i)] =
        std::string(1, static_cast<char>(i < 3 ? 'A' : 0x20 + (i % 0x5f)));
    if (i >= 3 && i < 3 + 0x5f)
      vocab[meta + letter[static_cast<size_t>(i)]] = i;
    else
      vocab["<t" + std::to_string(i) + ">"] = i;  // plain tokens, no space
  }
  json j;
  j["added_tokens"] = json::array();
  j["normalizer"] = {{"type", "Prepend"}, {"prepend", meta}};
  j["pre_tokenizer"] = nullptr;
  j["decoder"] = {
      {"type", "Sequence"},
      {"decoders",
       json::array({{{"type", "Replace"}, {"pattern", {{"String", meta}}}, {"content", " "}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  j["model"] = {
      {"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}, {"byte_fallback", true}};
  auto tok = tok::Tokenizer::FromJson(j.dump());
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  auto dec = CreateDecoder(c, w, 32);
  ASSERT_TRUE(dec.ok());
  GenerateOptions opt;
  opt.max_new_tokens = 12;
  std::string streamed;
  auto r = Generate(**dec, **tok, Bytes("Hi"), opt, [&](std::string_view s) { streamed += s; });
  ASSERT_TRUE(r.ok()) << r.status().message();
  std::string expected;
  for (int32_t t : r->tokens) {
    const bool spaced = t >= 3 && t < 3 + 0x5f;
    if (spaced && !expected.empty()) expected += ' ';
    expected += spaced ? letter[static_cast<size_t>(t)] : "<t" + std::to_string(t) + ">";
  }
  EXPECT_EQ(r->text, expected);
  EXPECT_EQ(streamed, expected);
}

TEST(GenerateCli, JsonOutputAndErrors) {
  TempDir tmp;
  ModelConfig c = TinyModel(false);
  c.arch = Architecture::kQwen2;
  WriteOptions wo;
  const Status written = WriteHfModel(tmp / "m", c, RandomWeights(c, 4), wo);
  ASSERT_TRUE(written.ok()) << written.message();
  testing::WriteFile(tmp / "m/tokenizer.json", ByteTokenizerJson().dump());
  auto r = testing::RunEscale("generate " + (tmp / "m") +
                              " --prompt hello --max-new-tokens 5 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["tokens"].size(), 5u);
  EXPECT_EQ(j["prompt_tokens"], 5);
  auto s1 = testing::RunEscale(
      "generate " + (tmp / "m") +
      " --prompt hello --max-new-tokens 8 --temperature 1 --seed 3 --ignore-eos --json");
  auto s2 = testing::RunEscale(
      "generate " + (tmp / "m") +
      " --prompt hello --max-new-tokens 8 --temperature 1 --seed 3 --ignore-eos --json");
  ASSERT_EQ(s1.exit_code, 0) << s1.err;
  EXPECT_EQ(json::parse(s1.out)["tokens"], json::parse(s2.out)["tokens"]);
  // A GSM8K file goes through generation and answer extraction.
  testing::WriteFile(tmp / "gsm8k.jsonl", "{\"question\": \"1+1?\", \"answer\": \"2\\n#### 2\"}\n"
                                          "{\"question\": \"2+2?\", \"answer\": \"4\\n#### 4\"}\n");
  auto g = testing::RunEscale("eval " + (tmp / "m") + " --task " + (tmp / "gsm8k.jsonl") +
                              " --num-fewshot 1 --max-gen-toks 4 --json --samples " + (tmp / "g.jsonl"));
  ASSERT_EQ(g.exit_code, 0) << g.err;
  const json gj = json::parse(g.out)["tasks"]["gsm8k"];
  EXPECT_EQ(gj["format"], "gsm8k");
  EXPECT_EQ(gj["documents"], 2);
  const std::string gs = testing::ReadFile(tmp / "g.jsonl");
  EXPECT_NE(gs.find("Question: 2+2?\\nAnswer: 4\\n#### 4\\n\\nQuestion: 1+1?\\nAnswer:"), std::string::npos) << gs;
  for (const std::string& bad :
       {std::string("--max-new-tokens 2"), std::string("--prompt a --prompt-file f"),
        std::string("--prompt hello --max-new-tokens 5000")}) {
    auto e = testing::RunEscale("generate " + (tmp / "m") + " " + bad);
    EXPECT_NE(e.exit_code, 0) << bad;
    EXPECT_EQ(std::count(e.err.begin(), e.err.end(), '\n'), 1) << bad << ": " << e.err;
  }
}

// ---------------------------------------------------------------------------------------------
// GSM8K

TEST(Gsm8k, ExtractionAndExactMatchAgreeWithPythonRe) {
  if (!HavePython()) GTEST_SKIP() << kPython << " not found";
  const std::vector<std::string> gens = {
      "She has 3 apples.\n#### 42",
      "First 12 + 30 = 42. The answer is $1,234.50.",
      "#### -7.5\nQuestion: next",
      "no numbers here",
      "1. step one\n2. step two\n#### 1,000",
      "The total is 18 dollars. #### 18.",
      "x = 5 and y = -3, so 2",
      "$ 5",
      "#### ",
      "answer: 3.14159 (approximately)\n",
  };
  const std::string reference = "Work: 40 + 2 = 42\n#### 42";
  json arr = json::array();
  for (const auto& g : gens) arr.push_back(g);
  // lm-eval's RegexFilter and exact_match, transcribed.
  const std::string prog = R"PY(import json, re
def extract(pattern, resp, group_select):
    match = re.compile(pattern).findall(resp)
    if match:
        match = match[group_select]
        if isinstance(match, tuple):
            match = [m for m in match if m]
            match = match[0] if match else "[invalid]"
        return match.strip()
    return "[invalid]"
def em(pred, ref):
    for r in [",", "\\$", "(?s).*#### ", "\\.$"]:
        pred = re.sub(r, "", pred)
        ref = re.sub(r, "", ref)
    return pred.lower() == ref.lower()
gens = json.loads(GENS)
ref = REF
out = []
for g in gens:
    s = extract(r"#### (\-?[0-9\.\,]+)", g, 0)
    f = extract(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", g, -1)
    out.append([s, f, em(s, ref), em(f, ref), em(g, g + "!")])
print(json.dumps(out))
)PY";
  std::string filled = prog;
  filled.replace(filled.find("GENS"), 4, json(arr.dump()).dump());
  filled.replace(filled.find("REF"), 3, json(reference).dump());
  const json want = RunPython(filled);
  auto x = Gsm8kExtractors::Create();
  ASSERT_TRUE(x.ok()) << x.status().message();
  int matches = 0;
  for (size_t i = 0; i < gens.size(); ++i) {
    const std::string s = x->Strict(gens[i]), f = x->Flexible(gens[i]);
    EXPECT_EQ(s, want[i][0].get<std::string>()) << gens[i];
    EXPECT_EQ(f, want[i][1].get<std::string>()) << gens[i];
    EXPECT_EQ(x->ExactMatch(s, reference), want[i][2].get<bool>()) << gens[i];
    EXPECT_EQ(x->ExactMatch(f, reference), want[i][3].get<bool>()) << gens[i];
    EXPECT_EQ(x->ExactMatch(gens[i], gens[i] + "!"), want[i][4].get<bool>()) << gens[i];
    matches += want[i][2].get<bool>();
  }
  EXPECT_GT(matches, 0);  // the cases exercise both outcomes
  EXPECT_LT(matches, static_cast<int>(gens.size()));
}

TEST(Gsm8k, PromptsGenerationsAndScores) {
  const ModelConfig c = TinyModel(false);
  const TensorMap w = RandomWeights(c, 8);
  auto tok = ByteTokenizer();
  RequestEncoder enc(*tok, false);
  std::vector<Gsm8kDoc> docs;
  for (int i = 0; i < 4; ++i) {
    const json d = {{"question", "q" + std::to_string(i)},
                    {"answer", "a\n#### " + std::to_string(i)}};
    docs.push_back({d, d["question"], d["answer"]});
  }
  auto dec = CreateDecoder(c, w, 96);
  ASSERT_TRUE(dec.ok());
  GenerationTaskOptions opt;
  opt.num_fewshot = 2;
  opt.max_gen_toks = 8;
  auto r = EvaluateGsm8k(**dec, *tok, enc, docs, {}, opt);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->documents, 4);
  PythonRandom rng(1234);
  auto x = Gsm8kExtractors::Create();
  int strict = 0;
  for (int i = 0; i < 4; ++i) {
    std::string expect;
    int used = 0;
    for (int64_t p : rng.Sample(4, 3)) {
      if (p == i || used == 2) continue;
      expect +=
          "Question: q" + std::to_string(p) + "\nAnswer: a\n#### " + std::to_string(p) + "\n\n";
      ++used;
    }
    expect += "Question: q" + std::to_string(i) + "\nAnswer:";
    EXPECT_EQ(r->docs[i].prompt, expect);
    // The generation is what Generate makes of that prompt, cut at the stop strings.
    GenerateOptions g;
    g.max_new_tokens = 8;
    g.stop = opt.until;
    if (auto eos = tok->eos_id()) g.stop_ids = {*eos};
    g.vocab_limit = tok->vocab_size();
    auto gen = Generate(**dec, *tok, enc.Encode(expect), g);
    ASSERT_TRUE(gen.ok());
    EXPECT_EQ(r->docs[i].generation, gen->text);
    EXPECT_EQ(r->docs[i].strict, x->Strict(gen->text));
    strict += x->ExactMatch(x->Strict(gen->text), docs[static_cast<size_t>(i)].answer);
  }
  EXPECT_DOUBLE_EQ(r->exact_match_strict, strict / 4.0);
}

}  // namespace
}  // namespace escale::eval
