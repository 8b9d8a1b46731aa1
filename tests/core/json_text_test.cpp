// ParseJsonText: every way a document can be unusable is one FormatError, never an exception.
#include "core/json_text.h"

#include <gtest/gtest.h>

namespace escale {
namespace {

TEST(JsonText, SyntaxErrorsSayWhere) {
  auto r = ParseJsonText("{\n  \"a\": tru\n}", "config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kFormat);
  EXPECT_NE(r.status().message().find("config.json is not valid JSON: line 2"), std::string::npos)
      << r.status().message();
}

TEST(JsonText, NumbersBeyondDoubleAreAFormatErrorNotAnException) {
  // Found by the hf_config fuzz target: nlohmann throws out_of_range (not parse_error) here.
  for (const char* text :
       {"{\"rope_theta\": 1e999}", "[6666666666666666666e6666666666]", "-1e400"}) {
    auto r = ParseJsonText(text, "config.json");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), ErrorCode::kFormat) << text;
    EXPECT_NE(r.status().message().find("config.json is not valid JSON"), std::string::npos)
        << r.status().message();
    EXPECT_EQ(r.status().message().find("[json.exception"), std::string::npos)
        << r.status().message();
  }
  EXPECT_TRUE(ParseJsonText("{\"rope_theta\": 1e300}", "config.json").ok());
}

TEST(JsonText, NulBytesAndTrailingGarbageAreRefused) {
  EXPECT_FALSE(ParseJsonText(std::string("{}\0x", 4), "t.json").ok());
  EXPECT_FALSE(ParseJsonText("{} x", "t.json").ok());
}

}  // namespace
}  // namespace escale
