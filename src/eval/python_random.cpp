#include "eval/python_random.h"

#include <bit>
#include <cmath>
#include <unordered_set>

#include "core/check.h"

namespace escale::eval {

namespace {
constexpr int kN = 624, kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfu, kUpper = 0x80000000u, kLower = 0x7fffffffu;
}  // namespace

void PythonRandom::InitGenrand(uint32_t s) {
  mt_[0] = s;
  for (int i = 1; i < kN; ++i)
    mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  index_ = kN;
}

PythonRandom::PythonRandom(uint64_t seed) {
  // CPython splits abs(seed) into 32-bit words, least significant first; 0 is the key [0].
  std::vector<uint32_t> key;
  for (uint64_t v = seed; v != 0; v >>= 32) key.push_back(static_cast<uint32_t>(v));
  if (key.empty()) key.push_back(0);
  InitGenrand(19650218u);
  int i = 1, j = 0;
  const int key_len = static_cast<int>(key.size());
  for (int k = std::max(kN, key_len); k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] +
             static_cast<uint32_t>(j);
    ++i, ++j;
    if (i >= kN) mt_[0] = mt_[kN - 1], i = 1;
    if (j >= key_len) j = 0;
  }
  for (int k = kN - 1; k > 0; --k) {
    mt_[i] =
        (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= kN) mt_[0] = mt_[kN - 1], i = 1;
  }
  mt_[0] = 0x80000000u;
  index_ = kN;
}

uint32_t PythonRandom::Next() {
  if (index_ >= kN) {
    for (int k = 0; k < kN; ++k) {
      const uint32_t y = (mt_[k] & kUpper) | (mt_[(k + 1) % kN] & kLower);
      mt_[k] = mt_[(k + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? kMatrixA : 0u);
    }
    index_ = 0;
  }
  uint32_t y = mt_[index_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

uint32_t PythonRandom::GetRandBits(int k) {
  ESCALE_CHECK(k >= 1 && k <= 32);
  return Next() >> (32 - k);
}

uint64_t PythonRandom::RandBelow(uint64_t n) {
  ESCALE_CHECK(n > 0 && n < (uint64_t{1} << 32));
  const int k = std::bit_width(n);  // n.bit_length(): not n-1, so n = 1 still draws one bit
  uint64_t r = GetRandBits(k);
  while (r >= n) r = GetRandBits(k);
  return r;
}

std::vector<int64_t> PythonRandom::Sample(int64_t n, int64_t k) {
  ESCALE_CHECK(k >= 0 && k <= n);
  std::vector<int64_t> result(static_cast<size_t>(k));
  int64_t setsize = 21;  // the size of a small set in CPython; decides which of two algorithms runs
  if (k > 5)
    setsize += static_cast<int64_t>(
        std::pow(4.0, std::ceil(std::log(static_cast<double>(k * 3)) / std::log(4.0))));
  if (n <= setsize) {
    std::vector<int64_t> pool(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pool[i] = i;
    for (int64_t i = 0; i < k; ++i) {
      const auto j = static_cast<int64_t>(RandBelow(static_cast<uint64_t>(n - i)));
      result[i] = pool[j];
      pool[j] = pool[n - i - 1];
    }
  } else {
    std::unordered_set<int64_t> selected;
    for (int64_t i = 0; i < k; ++i) {
      auto j = static_cast<int64_t>(RandBelow(static_cast<uint64_t>(n)));
      while (selected.count(j)) j = static_cast<int64_t>(RandBelow(static_cast<uint64_t>(n)));
      selected.insert(j);
      result[i] = j;
    }
  }
  return result;
}

}  // namespace escale::eval
