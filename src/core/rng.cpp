#include "core/rng.h"

#include <cmath>

#include "core/check.h"

// No a*b+c may become an FMA here, or the streams would depend on the compiler and the CPU:
// CMakeLists.txt compiles this file with -ffp-contract=off (GCC contracts by default, even with
// -std=c++20, when -march=native has FMA); the pragma says the same to clang without CMake.
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace escale {

uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

double PortableLog(double x) {
  ESCALE_CHECK(x > 0 && std::isfinite(x));
  int e = 0;
  double m = std::frexp(x, &e);  // exact: x = m * 2^e, m in [0.5, 1)
  if (m < 0.70710678118654752440) {
    m *= 2.0;  // exact
    e -= 1;
  }
  // ln m = 2 atanh(t), t = (m-1)/(m+1), |t| <= 0.1716: the odd series converges by t^2 <= 0.0295
  // per term; 13 terms take the remainder below 1e-19.
  const double t = (m - 1.0) / (m + 1.0);
  const double t2 = t * t;
  double sum = 0.0;
  for (int k = 25; k >= 3; k -= 2) sum = (sum + 1.0 / k) * t2;
  const double ln_m = 2.0 * t * (1.0 + sum);
  // ln 2 split into a part exact in 32 bits and a remainder, so e*ln2 keeps full precision.
  const double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  const double de = static_cast<double>(e);
  return de * kLn2Hi + (ln_m + de * kLn2Lo);
}

Rng Rng::Stream(uint64_t seed, std::string_view name) { return Rng(Mix64(seed ^ Mix64(Fnv1a64(name)))); }

uint64_t Rng::NextU64() {
  state_ += 0x9e3779b97f4a7c15ULL;
  return Mix64(state_);
}

double Rng::NextUniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }

double Rng::NextNormal() {
  if (have_spare_) {
    have_spare_ = false;
    return spare_;
  }
  for (;;) {
    const double u = 2.0 * NextUniform() - 1.0;
    const double v = 2.0 * NextUniform() - 1.0;
    const double s = u * u + v * v;
    if (s >= 1.0 || s == 0.0) continue;
    const double f = std::sqrt(-2.0 * PortableLog(s) / s);
    spare_ = v * f;
    have_spare_ = true;
    return u * f;
  }
}

uint64_t Rng::NextBelow(uint64_t n) {
  ESCALE_CHECK(n > 0);
  // Values below `limit` are rejected so that every residue is equally likely.
  const uint64_t limit = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    const uint64_t x = NextU64();
    if (x >= limit) return x % n;
  }
}

}  // namespace escale
