// Blocked causal GQA attention (fp32, per-row log-sum-exp only) against the fp64 reference forward
// and backward, on strided q/k/v inside one qkv buffer like the model uses, with a sequence longer
// than one 64-row score block and NaN-poisoned outputs.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/cpu/fast_attention.h"
#include "ops/cpu/fast_kernels.h"
#include "ops/cpu/reference_backward.h"
#include "ops/cpu/reference_ops.h"

namespace escale::ops {
namespace {

size_t Z(int64_t i) { return static_cast<size_t>(i); }

void CheckAttention(int64_t B, int64_t T, int64_t nh, int64_t nkv, int64_t hd) {
  SCOPED_TRACE(testing::Message() << "B=" << B << " T=" << T << " nh=" << nh << " nkv=" << nkv);
  fast::UseSingleThreadedBlas();
  const int64_t qd = nh * hd, kvd = nkv * hd, ld = qd + 2 * kvd;
  std::mt19937 g(42);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  std::vector<float> qkv(Z(B * T * ld)), dout(Z(B * T * qd));
  for (float& x : qkv) x = u(g);
  for (float& x : dout) x = u(g);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> out(Z(B * T * qd), nan), lse(Z(B * nh * T), nan), dqkv(Z(B * T * ld), nan);
  const int threads = omp_get_max_threads();
  std::vector<float> scratch(Z(fast::AttentionScratchPerThread(T) * threads), nan);
  fast::AttentionShape s{B, T, nh, nkv, hd, ld, ld, qd, threads};
  fast::CausalAttentionForward(s, qkv.data(), qkv.data() + qd, qkv.data() + qd + kvd, out.data(), lse.data(),
                               scratch.data());
  fast::CausalAttentionBackward(s, qkv.data(), qkv.data() + qd, qkv.data() + qd + kvd, out.data(), lse.data(),
                                dout.data(), dqkv.data(), dqkv.data() + qd, dqkv.data() + qd + kvd, scratch.data());
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> q(Z(T * qd)), k(Z(T * kvd)), v(Z(T * kvd)), d(Z(T * qd));
    for (int64_t t = 0; t < T; ++t) {
      const float* row = qkv.data() + (b * T + t) * ld;
      for (int64_t i = 0; i < qd; ++i) q[Z(t * qd + i)] = row[i];
      for (int64_t i = 0; i < kvd; ++i) {
        k[Z(t * kvd + i)] = row[qd + i];
        v[Z(t * kvd + i)] = row[qd + kvd + i];
      }
      for (int64_t i = 0; i < qd; ++i) d[Z(t * qd + i)] = dout[Z((b * T + t) * qd + i)];
    }
    std::vector<double> o(Z(T * qd)), probs(Z(nh * T * T)), dq(Z(T * qd), 0.0), dk(Z(T * kvd), 0.0),
        dv(Z(T * kvd), 0.0);
    ref::CausalAttention(q.data(), k.data(), v.data(), T, nh, nkv, hd, o.data(), probs.data());
    ref::CausalAttentionBackward(q.data(), k.data(), v.data(), probs.data(), T, nh, nkv, hd, d.data(), dq.data(),
                                 dk.data(), dv.data());
    double eo = 0, edq = 0, edk = 0, edv = 0, else_lse = 0, scale = 1;
    for (double x : dq) scale = std::max(scale, std::fabs(x));
    for (double x : dk) scale = std::max(scale, std::fabs(x));
    for (double x : dv) scale = std::max(scale, std::fabs(x));
    for (int64_t t = 0; t < T; ++t) {
      const float* drow = dqkv.data() + (b * T + t) * ld;
      for (int64_t i = 0; i < qd; ++i) {
        eo = std::max(eo, std::fabs(out[Z((b * T + t) * qd + i)] - o[Z(t * qd + i)]));
        edq = std::max(edq, std::fabs(drow[i] - dq[Z(t * qd + i)]));
      }
      for (int64_t i = 0; i < kvd; ++i) {
        edk = std::max(edk, std::fabs(drow[qd + i] - dk[Z(t * kvd + i)]));
        edv = std::max(edv, std::fabs(drow[qd + kvd + i] - dv[Z(t * kvd + i)]));
      }
      // lse of head h, row t: recover it from the reference probabilities of the row's first key.
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t j = h / (nh / nkv);
        double s0 = 0;
        for (int64_t i = 0; i < hd; ++i) s0 += q[Z(t * qd + h * hd + i)] * k[Z(j * hd + i)];
        s0 /= std::sqrt(double(hd));
        const double want = s0 - std::log(probs[Z((h * T + t) * T)]);
        else_lse = std::max(else_lse, std::fabs(lse[Z((b * nh + h) * T + t)] - want) / std::max(1.0, std::fabs(want)));
      }
    }
    EXPECT_LE(eo, 2e-6) << "out";
    EXPECT_LE(else_lse, 2e-6) << "lse";
    EXPECT_LE(edq, 2e-5 * scale) << "dq";
    EXPECT_LE(edk, 2e-5 * scale) << "dk";
    EXPECT_LE(edv, 2e-5 * scale) << "dv";
  }
}

TEST(FastAttention, MatchesReferenceSmall) { CheckAttention(2, 5, 4, 2, 8); }
TEST(FastAttention, MatchesReferenceAcrossScoreBlocks) { CheckAttention(2, 70, 4, 1, 16); }
TEST(FastAttention, MatchesReferenceMultiHeadNoGqa) { CheckAttention(1, 130, 2, 2, 4); }

// Decoding attention over a key/value cache, fed in chunks of 3, 1 and the rest, against the fp64
// reference on the whole sequence: every row of every chunk must match (causal within a chunk,
// everything cached before it), with a poisoned output and scratch.
TEST(CachedAttention, ChunksMatchTheReferenceOnTheWholeSequence) {
  const int64_t T = 23, nh = 4, nkv = 2, hd = 8, qd = nh * hd, kvd = nkv * hd;
  std::mt19937 g(7);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  std::vector<float> q(Z(T * qd)), k(Z(T * kvd)), v(Z(T * kvd));
  for (float& x : q) x = u(g);
  for (float& x : k) x = u(g);
  for (float& x : v) x = u(g);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int threads = omp_get_max_threads();
  std::vector<float> out(Z(T * qd), nan), scratch(Z(fast::CachedAttentionScratch(T, threads)), nan);
  const fast::AttentionShape s{1, 0, nh, nkv, hd, qd, kvd, qd, threads};
  int64_t pos = 0;
  for (int64_t rows : {3, 1, int(T - 4)}) {
    fast::CachedAttentionForward(s, pos, rows, q.data() + pos * qd, k.data(), v.data(),
                                 out.data() + pos * qd, scratch.data());
    pos += rows;
  }
  std::vector<double> qr(q.begin(), q.end()), kr(k.begin(), k.end()), vr(v.begin(), v.end());
  std::vector<double> o(Z(T * qd)), probs(Z(nh * T * T));
  ref::CausalAttention(qr.data(), kr.data(), vr.data(), T, nh, nkv, hd, o.data(), probs.data());
  double err = 0;
  for (size_t i = 0; i < o.size(); ++i) err = std::max(err, std::fabs(out[i] - o[i]));
  EXPECT_LT(err, 2e-6);
  // Teeth: the last row attends to every key; forgetting the newest one must show.
  std::vector<float> last(Z(qd), nan);
  fast::CachedAttentionForward(s, T - 2, 1, q.data() + (T - 1) * qd, k.data(), v.data(),
                               last.data(), scratch.data());
  double moved = 0;
  for (int64_t i = 0; i < qd; ++i)
    moved = std::max(moved, std::fabs(last[Z(i)] - o[Z((T - 1) * qd + i)]));
  EXPECT_GT(moved, 1e-3);
}

}  // namespace
}  // namespace escale::ops
