// The architecture table: every enumerator has exactly one row, names are unique and found by
// each spelling, the dense/MoE pairings point at rows of the right kind, and every row has a
// tiny config in the io fixtures (so every round-trip test covers it).
#include "model/architecture.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

#include "io/model_fixtures.h"

namespace escale {
namespace {

TEST(Architecture, OneRowPerEnumeratorWithUniqueNames) {
  std::set<int> archs;
  std::set<std::string_view> names;
  for (const ArchitectureInfo& r : Architectures()) {
    EXPECT_TRUE(archs.insert(static_cast<int>(r.arch)).second) << r.class_name;
    for (std::string_view n : {r.class_name, r.model_type, r.cli_name}) {
      EXPECT_FALSE(n.empty());
      // A model_type may equal the CLI name of the same row ("llama"), never another row's name.
      const ArchitectureInfo* found = FindArchitecture(n);
      ASSERT_NE(found, nullptr) << n;
      EXPECT_EQ(found->arch, r.arch) << n;
    }
    EXPECT_TRUE(names.insert(r.class_name).second) << r.class_name;
    EXPECT_EQ(&ArchInfo(r.arch), &r);
  }
  EXPECT_EQ(archs.size(), static_cast<size_t>(Architecture::kQwen3Moe) + 1);
  EXPECT_EQ(FindArchitecture("GPT2LMHeadModel"), nullptr);
}

TEST(Architecture, PairingsPointAtRowsOfTheRightKind) {
  for (const ArchitectureInfo& r : Architectures()) {
    const ArchitectureInfo& m = ArchInfo(r.moe_form);
    const ArchitectureInfo& d = ArchInfo(r.dense_form);
    EXPECT_TRUE(m.moe) << r.class_name;
    EXPECT_FALSE(d.moe) << r.class_name;
    // An upcycled model keeps its attention: same q/k norm.
    EXPECT_EQ(m.qk_norm, r.qk_norm) << r.class_name;
    EXPECT_EQ(d.qk_norm, r.qk_norm) << r.class_name;
    if (r.moe) {
      EXPECT_FALSE(r.moe_module.empty()) << r.class_name;
      EXPECT_FALSE(r.experts_key.empty()) << r.class_name;
      EXPECT_GE(r.default_top_k, 1) << r.class_name;
    }
  }
}

TEST(Architecture, EveryRowHasATinyFixture) {
  std::set<int> covered;
  for (const ModelConfig& c : testing::AllTiny()) {
    covered.insert(static_cast<int>(c.arch));
    EXPECT_EQ(c.qk_norm, ArchInfo(c.arch).qk_norm) << ArchitectureClassName(c.arch);
    EXPECT_EQ(c.is_moe(), ArchInfo(c.arch).moe) << ArchitectureClassName(c.arch);
  }
  EXPECT_EQ(covered.size(), Architectures().size());
}

std::set<std::string> Split(std::string_view list) {
  std::set<std::string> out;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t end = std::min(list.find(", ", at), list.size());
    out.insert(std::string(list.substr(at, end - at)));
    at = end + 2;
  }
  return out;
}

TEST(Architecture, ListsNameEveryRow) {
  const auto classes = Split(ArchitectureClassList()), all = Split(ArchitectureCliList(false)),
             moe = Split(ArchitectureCliList(true));
  EXPECT_EQ(classes.size(), Architectures().size());
  for (const ArchitectureInfo& r : Architectures()) {
    EXPECT_EQ(classes.count(std::string(r.class_name)), 1u);
    EXPECT_EQ(all.count(std::string(r.cli_name)), 1u);
    EXPECT_EQ(moe.count(std::string(r.cli_name)), r.moe ? 1u : 0u) << r.cli_name;
  }
}

TEST(Architecture, RefusedNamesAreNotRowsAndSayWhy) {
  const RefusedArchitecture* olmoe = FindRefusedArchitecture("OlmoeForCausalLM");
  ASSERT_NE(olmoe, nullptr);
  EXPECT_EQ(FindRefusedArchitecture("olmoe"), olmoe);
  EXPECT_FALSE(olmoe->reason.empty());
  EXPECT_EQ(FindArchitecture("OlmoeForCausalLM"), nullptr);
  for (const ArchitectureInfo& r : Architectures()) {
    EXPECT_EQ(FindRefusedArchitecture(r.class_name), nullptr) << r.class_name;
    EXPECT_EQ(FindRefusedArchitecture(r.model_type), nullptr) << r.model_type;
  }
}

TEST(Architecture, ClassesWhereJoinsTheRowsAPredicateAccepts) {
  EXPECT_EQ(ArchitectureClassesWhere([](const ArchitectureInfo& r) { return r.shared_expert; }),
            "Qwen2MoeForCausalLM");
  EXPECT_EQ(ArchitectureClassesWhere(
                [](const ArchitectureInfo& r) { return r.qk_norm != QkNorm::kNone; }),
            "Qwen3ForCausalLM or Qwen3MoeForCausalLM");
  EXPECT_EQ(ArchitectureClassesWhere([](const ArchitectureInfo&) { return false; }), "");
}

}  // namespace
}  // namespace escale
