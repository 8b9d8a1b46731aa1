// bf16/f16 conversions, exhaustively: every 16-bit pattern round-trips, and f32 -> 16-bit rounds
// to nearest-even at every midpoint between neighbouring 16-bit values.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>

#include "core/half.h"

namespace escale {
namespace {

bool IsNanBits16(uint16_t h, bool bf16) {
  return bf16 ? ((h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0)
              : ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0);
}

TEST(Half, F16EveryPatternRoundTrips) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = F16ToF32(h);
    if (IsNanBits16(h, false)) {
      EXPECT_TRUE(std::isnan(f));
      EXPECT_TRUE(IsNanBits16(F32ToF16(f), false));
      continue;
    }
    ASSERT_EQ(F32ToF16(f), h) << "pattern " << i;
  }
}

#if defined(__FLT16_MANT_DIG__)
TEST(Half, F16MatchesCompilerConversionOnEveryMidpoint) {
  // _Float16 conversions in GCC are correctly rounded (RNE): an independent oracle.
  for (uint32_t i = 0; i < 0x7c00; ++i) {  // finite positive values
    const float lo = F16ToF32(static_cast<uint16_t>(i));
    const float hi = F16ToF32(static_cast<uint16_t>(i + 1));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);
    for (float x : {lo, mid, std::nextafter(mid, 0.f), std::nextafter(mid, 1e9f), -mid}) {
      const _Float16 ref = static_cast<_Float16>(x);
      ASSERT_EQ(F32ToF16(x), std::bit_cast<uint16_t>(ref)) << "x=" << x;
    }
  }
  EXPECT_EQ(F32ToF16(65520.f), 0x7c00);  // the midpoint above the largest finite rounds to Inf
  EXPECT_EQ(F32ToF16(65519.f), 0x7bff);
  EXPECT_EQ(F32ToF16(0x1p-25f), 0x0000);  // ties to even: half the smallest subnormal -> 0
  EXPECT_EQ(F32ToF16(0x1.8p-24f), 0x0002);
}
#else
TEST(Half, F16MatchesCompilerConversionOnEveryMidpoint) {
  GTEST_SKIP() << "this compiler has no _Float16 (clang before 15 on x86); the GCC builds run it";
}
#endif

TEST(Half, Bf16EveryPatternRoundTripsAndMidpointsRoundToEven) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = Bf16ToF32(h);
    if (IsNanBits16(h, true)) {
      EXPECT_TRUE(IsNanBits16(F32ToBf16(f), true));
      continue;
    }
    ASSERT_EQ(F32ToBf16(f), h);
    if ((h & 0x7f80u) == 0x7f80u) continue;  // Inf has no upper neighbour
    // The f32 exactly halfway to the next pattern (same sign) goes to the even one of the two.
    const uint32_t mid_bits = (static_cast<uint32_t>(h) << 16) | 0x8000u;
    const uint16_t even = (h & 1u) ? static_cast<uint16_t>(h + 1) : h;
    ASSERT_EQ(F32ToBf16(std::bit_cast<float>(mid_bits)), even) << "pattern " << i;
    ASSERT_EQ(F32ToBf16(std::bit_cast<float>(mid_bits + 1)), static_cast<uint16_t>(h + 1));
    ASSERT_EQ(F32ToBf16(std::bit_cast<float>(mid_bits - 1)), h);
  }
}

}  // namespace
}  // namespace escale
