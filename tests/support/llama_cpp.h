// The real llama.cpp as a test oracle (node-llama-cpp 3.22.1's prebuilt CPU binary, fetched by
// scripts/gguf/fetch_llama_cpp.sh): availability, one call of scripts/gguf/llama_cpp_eval.mjs,
// and the comparison of its logits with escale's fp64 reference forward. Shared by the GGUF
// export tests and the per-family acceptance tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "io/hf_model.h"
#include "io/safetensors.h"
#include "model/reference_forward.h"
#include "support/test_support.h"

namespace escale::testing {

namespace fs = std::filesystem;
using json = nlohmann::json;

inline std::string NpmDir() {
  return SourceDir() + "/build/gguf-npm";
}

inline bool LlamaCppAvailable(std::string& why) {
  if (RunShell("command -v node >/dev/null").exit_code != 0) {
    why = "node not found";
    return false;
  }
  if (!fs::exists(NpmDir() + "/node_modules/node-llama-cpp")) {
    why = "node-llama-cpp missing: run scripts/gguf/fetch_llama_cpp.sh";
    return false;
  }
  return true;
}

// Runs llama.cpp on `gguf` and returns its JSON answer.
inline json LlamaCpp(const TempDir& t, const std::string& gguf, const json& request) {
  const std::string req = t / "request.json", out = t / "answer.json";
  WriteFile(req, request.dump());
  fs::remove(out);
  auto r = RunShell("node " + SourceDir() + "/scripts/gguf/llama_cpp_eval.mjs '" + gguf + "' '" +
                    req + "' '" + out + "' 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  if (r.exit_code != 0) return json();
  return json::parse(ReadFile(out));
}

inline const char* kCorpus =
    "The quick brown fox jumps over the lazy dog. It's 12345 times better, isn't it?\n"
    "Über café naïve résumé — tabs\there and  double  spaces.\n\nNew paragraph: a = b + c;\n"
    "the theory of the thing is that there are three threes. 42 + 58 = 100.\n";

inline const std::vector<std::string> kTexts = {"Hello world",
                                                "a\nb",
                                                "  leading spaces",
                                                "trailing  ",
                                                "x\n\n\ny",
                                                "tab\there",
                                                "numbers 1234567 and 89",
                                                "it's THE'S don't",
                                                "über café",
                                                "<|endoftext|>after special",
                                                "The quick brown fox.\n"};

// A trained escale tokenizer (GPT-2 regex) with 320 ids, in `dir`.
inline void TrainTokenizer(const TempDir& t, const std::string& dir) {
  WriteFile(t / "corpus.txt", std::string(kCorpus) + kCorpus);
  fs::create_directories(dir);
  auto r = RunEscale("tokenizer train --vocab-size 320 --special '<|endoftext|>' -o " + dir +
                     "/tokenizer.json " + t / "corpus.txt");
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

inline const std::vector<std::vector<int32_t>> kSequences = {{1, 50, 260, 3, 99, 310, 7, 7},
                                                             {300, 2, 150, 45, 45, 12}};

struct Measured {
  double max_rel = 0;  // max |llama.cpp - reference| / max |reference| over sequences
  int64_t greedy_agree = 0, greedy_total = 0;
  // Disagreements where the reference's best logit leads the runner-up by more than twice the
  // dtype's error bound: those cannot be rounding (near-ties can, in f16).
  int64_t clear_disagree = 0;
};

inline Measured Compare(const TempDir& t, const std::string& model_dir, const std::string& gguf,
                        double tol, const std::vector<std::vector<int32_t>>& sequences) {
  Measured m;
  auto model = ReadHfModel(model_dir);
  EXPECT_TRUE(model.ok()) << model.status().message();
  if (!model.ok()) return m;
  json ans = LlamaCpp(t, gguf, {{"sequences", sequences}});
  if (!ans.contains("logits")) {
    ADD_FAILURE() << "llama.cpp gave no logits";
    m.max_rel = INFINITY;
    return m;
  }
  for (size_t s = 0; s < sequences.size(); ++s) {
    auto ref = ReferenceForward(model->config, model->tensors, sequences[s]);
    EXPECT_TRUE(ref.ok()) << ref.status().message();
    if (!ref.ok()) continue;
    const auto& rows = ans["logits"][s];
    const int64_t V = ref->vocab;
    EXPECT_EQ(static_cast<int64_t>(rows.size()), ref->tokens);
    double scale = 0, err = 0;
    for (int64_t p = 0; p < ref->tokens; ++p) {
      EXPECT_EQ(static_cast<int64_t>(rows[p].size()), V);
      int64_t am_ref = 0, am_cpp = 0;
      double row_scale = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double r = ref->logits[static_cast<size_t>(p * V + v)];
        const double c = rows[p][v].is_number() ? rows[p][v].get<double>() : NAN;
        scale = std::max(scale, std::fabs(r));
        row_scale = std::max(row_scale, std::fabs(r));
        err = std::isnan(c) ? INFINITY : std::max(err, std::fabs(c - r));
        if (r > ref->logits[static_cast<size_t>(p * V + am_ref)]) am_ref = v;
        if (c > rows[p][am_cpp].get<double>()) am_cpp = v;
      }
      double second = -INFINITY;
      for (int64_t v = 0; v < V; ++v)
        if (v != am_ref) second = std::max(second, ref->logits[static_cast<size_t>(p * V + v)]);
      const double margin = ref->logits[static_cast<size_t>(p * V + am_ref)] - second;
      m.greedy_agree += am_ref == am_cpp;
      m.clear_disagree += am_ref != am_cpp && margin > 2 * tol * row_scale;
      ++m.greedy_total;
    }
    m.max_rel = std::max(m.max_rel, err / scale);
  }
  return m;
}

// Sets every tensor of the model in `dir` (one f32 safetensors file) whose name contains `part`
// to base + N(0, std^2) in place. A fresh scale-out leaves shared-expert gates 0, which llama.cpp
// cannot evaluate (see CheckSharedGatesNonZero), and init leaves q/k norms 1, which would not
// tell q_norm from k_norm: both paths stay untested unless the weights differ.
inline void RandomiseTensors(const std::string& dir, const std::string& part, double base,
                             double std_dev) {
  const std::string path = dir + "/model.safetensors";
  uint64_t data_offset = 0;
  std::vector<SafetensorsEntry> entries;
  {
    auto f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().message();
    data_offset = f->data_offset();
    entries = f->entries();
  }
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  Rng rng(11);
  int patched = 0;
  for (const SafetensorsEntry& e : entries) {
    if (e.name.find(part) == std::string::npos) continue;
    ASSERT_EQ(e.dtype, DType::kF32);
    std::vector<float> v((e.end - e.begin) / 4);
    for (float& x : v) x = static_cast<float>(base + std_dev * rng.NextNormal());
    io.seekp(static_cast<std::streamoff>(data_offset + e.begin));
    io.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    ++patched;
  }
  ASSERT_TRUE(io.good());
  ASSERT_GT(patched, 0);
}

}  // namespace escale::testing
