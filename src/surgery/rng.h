// A seeded random number generator whose output is the same on every machine and standard library.
//
// std::mt19937 is portable but std::normal_distribution / uniform_*_distribution are not (each
// library maps bits to values its own way), and std::log may differ in the last bit between
// libms. So everything here is spelled out:
//   * bits: SplitMix64 (Steele, Lea, Flood 2014): state += 0x9e3779b97f4a7c15, then the
//     variant-13 finaliser; state 0 gives 0xe220a8397b1dcdaf first (the published test value).
//   * streams: one independent stream per purpose, keyed by (seed, name): the initial state is
//     Mix64(seed ^ Mix64(Fnv1a64(name))), so the router of layer 3 never shares bits with layer 4.
//   * uniform doubles: the top 53 bits times 2^-53, in [0, 1).
//   * normal: Marsaglia's polar method with PortableLog (below) and IEEE sqrt; both outputs of
//     each accepted pair are used, first u·f then v·f.
//   * integers in [0, n): rejection of the biased tail, then modulo.
// All arithmetic is +, -, *, / and sqrt on IEEE doubles, which are correctly rounded, so the values
// are bit-identical wherever floating-point contraction (FMA fusion) is off; rng.cpp turns it off.
#pragma once

#include <cstdint>
#include <string_view>

namespace escale::surgery {

uint64_t Mix64(uint64_t z);        // the SplitMix64 finaliser
uint64_t Fnv1a64(std::string_view s);
// Natural logarithm of a positive finite double from + - * / only (within a few ulp of std::log).
double PortableLog(double x);

class Rng {
 public:
  explicit Rng(uint64_t state) : state_(state) {}
  // The stream named `name` under `seed`.
  static Rng Stream(uint64_t seed, std::string_view name);

  uint64_t NextU64();
  double NextUniform();              // [0, 1)
  double NextNormal();               // N(0, 1)
  uint64_t NextBelow(uint64_t n);    // uniform in [0, n), n > 0

 private:
  uint64_t state_;
  bool have_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace escale::surgery
