// fp32 fast kernels against the fp64 reference ops (or plain fp64 loops), outputs poisoned with
// NaN before each call so an element a kernel forgets to write fails the comparison.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/cpu/fast_kernels.h"
#include "ops/cpu/reference_backward.h"
#include "ops/cpu/reference_ops.h"

namespace escale::ops {
namespace {

using VF = std::vector<float>;
using VD = std::vector<double>;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
size_t Z(int64_t i) { return static_cast<size_t>(i); }

VF RandomF(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  VF v(n);
  for (float& x : v) x = u(g);
  return v;
}
VD D(const VF& v) { return VD(v.begin(), v.end()); }

// max |a - b| <= rel * max(1, max |b|)
void ExpectClose(const VF& a, const VD& b, double rel, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double scale = 1, err = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    scale = std::max(scale, std::fabs(b[i]));
    ASSERT_TRUE(std::isfinite(a[i])) << what << "[" << i << "]";
    err = std::max(err, std::fabs(double(a[i]) - b[i]));
  }
  EXPECT_LE(err, rel * scale) << what;
}

TEST(FastKernels, LinearForwardAndBackwardMatchFp64) {
  fast::UseSingleThreadedBlas();
  const int64_t M = 67, K = 40, N = 129;  // odd sizes: thread slices of 16 rows leave remainders
  const VF x = RandomF(Z(M * K), 1), W = RandomF(Z(N * K), 2), dy = RandomF(Z(M * N), 3);
  VF y(Z(M * N), kNaN), dx(Z(M * K), kNaN), dW = RandomF(Z(N * K), 4);  // dW accumulates
  const VF dW0 = dW;
  fast::LinearForward(x.data(), M, K, W.data(), N, y.data());
  fast::LinearBackwardInput(dy.data(), M, N, W.data(), K, dx.data());
  fast::LinearBackwardWeight(dy.data(), M, N, x.data(), K, dW.data());
  VD ry(Z(M * N)), rdx(Z(M * K), 0.0), rdW = D(dW0);
  const VD xd = D(x), Wd = D(W), dyd = D(dy);
  ref::Linear(xd.data(), M, K, Wd.data(), static_cast<const double*>(nullptr), N, ry.data());
  ref::LinearBackward(xd.data(), M, K, Wd.data(), N, dyd.data(), rdx.data(), rdW.data(), nullptr);
  ExpectClose(y, ry, 1e-5, "y");
  ExpectClose(dx, rdx, 1e-5, "dx");
  ExpectClose(dW, rdW, 1e-5, "dW");
  // Few output rows: dW is split by columns instead.
  VF dW1(Z(3 * K), 0.0f);
  const VF dy1 = RandomF(Z(M * 3), 5);
  fast::LinearBackwardWeight(dy1.data(), M, 3, x.data(), K, dW1.data());
  VD r1(Z(3 * K), 0.0);
  const VD dy1d = D(dy1);
  ref::LinearBackward(xd.data(), M, K, Wd.data(), 3, dy1d.data(), nullptr, r1.data(), nullptr);
  ExpectClose(dW1, r1, 1e-5, "dW narrow");
}

TEST(FastKernels, GroupedLinearMatchesPerGroupLinear) {
  fast::UseSingleThreadedBlas();
  const int64_t K = 24, N = 20;
  const std::vector<int32_t> start = {0, 5, 5, 41, 42};  // an empty group and a single row
  const int64_t G = 4, M = start.back();
  const VF x = RandomF(Z(M * K), 6), dy = RandomF(Z(M * N), 7);
  std::vector<VF> W, dW;
  std::vector<const float*> wp;
  std::vector<float*> dwp;
  for (int64_t g = 0; g < G; ++g) {
    W.push_back(RandomF(Z(N * K), 10 + uint32_t(g)));
    dW.push_back(VF(Z(N * K), 0.5f));
  }
  for (int64_t g = 0; g < G; ++g) {
    wp.push_back(W[Z(g)].data());
    dwp.push_back(dW[Z(g)].data());
  }
  VF y(Z(M * N), kNaN), dx(Z(M * K), kNaN);
  fast::GroupedLinearForward(x.data(), start.data(), G, K, wp.data(), N, y.data());
  fast::GroupedLinearBackwardInput(dy.data(), start.data(), G, N, wp.data(), K, dx.data());
  fast::GroupedLinearBackwardWeight(dy.data(), start.data(), G, N, x.data(), K, dwp.data());
  VD ry(Z(M * N)), rdx(Z(M * K), 0.0);
  const VD xd = D(x), dyd = D(dy);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t r0 = start[Z(g)], n = start[Z(g + 1)] - r0;
    const VD Wd = D(W[Z(g)]);
    VD rdW(Z(N * K), 0.5);
    ref::Linear(xd.data() + r0 * K, n, K, Wd.data(), static_cast<const double*>(nullptr), N, ry.data() + r0 * N);
    ref::LinearBackward(xd.data() + r0 * K, n, K, Wd.data(), N, dyd.data() + r0 * N, rdx.data() + r0 * K, rdW.data(),
                        nullptr);
    ExpectClose(dW[Z(g)], rdW, 1e-5, "dW");
  }
  ExpectClose(y, ry, 1e-5, "y");
  ExpectClose(dx, rdx, 1e-5, "dx");
}

TEST(FastKernels, RmsNormMatchesReference) {
  const int64_t T = 9, H = 70;
  const VF x = RandomF(Z(T * H), 1, -2, 2), w = RandomF(Z(H), 2, 0.5, 1.5), dy = RandomF(Z(T * H), 3);
  VF y(Z(T * H), kNaN), rstd(Z(T), kNaN), dx(Z(T * H), 0.25f), dw(Z(H), 0.125f);
  fast::RmsNormForward(x.data(), T, H, w.data(), 1e-5f, y.data(), rstd.data());
  fast::RmsNormBackward(x.data(), rstd.data(), T, H, w.data(), dy.data(), dx.data(), dw.data());
  const VD xd = D(x), wd = D(w), dyd = D(dy);
  VD ry(Z(T * H)), rdx(Z(T * H), 0.25), rdw(Z(H), 0.125);
  ref::RmsNorm(xd.data(), T, H, wd.data(), 1e-5, ry.data());
  ref::RmsNormBackward(xd.data(), T, H, wd.data(), 1e-5, dyd.data(), rdx.data(), rdw.data());
  ExpectClose(y, ry, 1e-5, "y");
  ExpectClose(dx, rdx, 1e-5, "dx (accumulated)");
  ExpectClose(dw, rdw, 1e-5, "dw (accumulated)");
}

// Qwen3's q/k norm on strided rows (the q or k heads inside a qkv row): each head of every row
// against the reference RMSNorm of that head alone; values past the heads stay untouched.
TEST(FastKernels, HeadRmsNormMatchesReferenceOnStridedRows) {
  const int64_t rows = 7, heads = 3, hd = 20, ld = heads * hd + 5;
  const VF x0 = RandomF(Z(rows * ld), 5, -2, 2), w = RandomF(Z(hd), 6, 0.5, 1.5),
           dy0 = RandomF(Z(rows * ld), 7);
  VF x = x0, raw(Z(rows * heads * hd), kNaN), rstd(Z(rows * heads), kNaN), dw(Z(hd), 0.125f),
     d = dy0;
  fast::HeadRmsNormForward(x.data(), rows, ld, heads, hd, w.data(), 1e-6f, raw.data(), rstd.data());
  fast::HeadRmsNormBackward(raw.data(), rstd.data(), rows, ld, heads, hd, w.data(), d.data(),
                            dw.data());
  // The reference sees the heads as rows*heads contiguous RMSNorm rows of hd.
  VD xr(Z(rows * heads * hd)), dyr(xr.size()), ry(xr.size()), rdx(xr.size(), 0.0),
      rdw(Z(hd), 0.125);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < heads * hd; ++i) {
      xr[Z(r * heads * hd + i)] = x0[Z(r * ld + i)];
      dyr[Z(r * heads * hd + i)] = dy0[Z(r * ld + i)];
    }
  const VD wd = D(w);
  ref::RmsNorm(xr.data(), rows * heads, hd, wd.data(), 1e-6, ry.data());
  ref::RmsNormBackward(xr.data(), rows * heads, hd, wd.data(), 1e-6, dyr.data(), rdx.data(),
                       rdw.data());
  VF y(xr.size()), dx(xr.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < heads * hd; ++i) {
      y[Z(r * heads * hd + i)] = x[Z(r * ld + i)];
      dx[Z(r * heads * hd + i)] = d[Z(r * ld + i)];
      EXPECT_EQ(raw[Z(r * heads * hd + i)], x0[Z(r * ld + i)]) << "raw keeps the input";
    }
    for (int64_t i = heads * hd; i < ld; ++i) {
      EXPECT_EQ(x[Z(r * ld + i)], x0[Z(r * ld + i)]) << "forward touched past the heads";
      EXPECT_EQ(d[Z(r * ld + i)], dy0[Z(r * ld + i)]) << "backward touched past the heads";
    }
  }
  ExpectClose(y, ry, 1e-5, "y");
  ExpectClose(dx, rdx, 1e-5, "dx");
  ExpectClose(dw, rdw, 1e-5, "dw (accumulated)");
}

TEST(FastKernels, RopeMatchesReferenceAcrossSequences) {
  const int64_t B = 2, T = 5, heads = 3, hd = 8, ld = heads * hd + 4;  // padded rows
  std::vector<double> inv(Z(hd / 2));
  for (int64_t j = 0; j < hd / 2; ++j) inv[Z(j)] = std::pow(10000.0, -2.0 * double(j) / double(hd));
  const ref::RopeTables rt = ref::MakeRopeTables(inv, T);
  VF cs(rt.cos.begin(), rt.cos.end()), sn(rt.sin.begin(), rt.sin.end());
  const VF x0 = RandomF(Z(B * T * ld), 4);
  VF x = x0;
  fast::RopeForward(x.data(), B * T, ld, heads, hd, T, cs.data(), sn.data());
  for (int64_t b = 0; b < B; ++b) {
    VD xr(Z(T * heads * hd));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < heads * hd; ++i) xr[Z(t * heads * hd + i)] = x0[Z((b * T + t) * ld + i)];
    ref::ApplyRope(xr.data(), T, heads, hd, rt);
    VF got(Z(T * heads * hd));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < heads * hd; ++i) got[Z(t * heads * hd + i)] = x[Z((b * T + t) * ld + i)];
    ExpectClose(got, xr, 1e-6, "rope");
  }
  for (int64_t t = 0; t < B * T; ++t)
    for (int64_t i = heads * hd; i < ld; ++i) EXPECT_EQ(x[Z(t * ld + i)], x0[Z(t * ld + i)]) << "padding touched";
  // The backward is the inverse rotation.
  fast::RopeBackward(x.data(), B * T, ld, heads, hd, T, cs.data(), sn.data());
  ExpectClose(x, D(x0), 1e-6, "inverse");
}

TEST(FastKernels, SwiGluActivationAndBackward) {
  const int64_t M = 7, F = 33;
  const VF gu = RandomF(Z(M * 2 * F), 5, -6, 6), dh = RandomF(Z(M * F), 6);
  VF h(Z(M * F), kNaN), dgu(Z(M * 2 * F), kNaN);
  fast::SwiGluForward(gu.data(), M, F, h.data());
  fast::SwiGluBackward(gu.data(), dh.data(), M, F, dgu.data());
  VD rh(Z(M * F)), rdgu(Z(M * 2 * F));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = 0; i < F; ++i) {
      const double g = gu[Z(m * 2 * F + i)], u = gu[Z(m * 2 * F + F + i)], s = 1 / (1 + std::exp(-g));
      rh[Z(m * F + i)] = g * s * u;
      rdgu[Z(m * 2 * F + i)] = dh[Z(m * F + i)] * u * (s + g * s * (1 - s));
      rdgu[Z(m * 2 * F + F + i)] = dh[Z(m * F + i)] * g * s;
    }
  ExpectClose(h, rh, 1e-6, "h");
  ExpectClose(dgu, rdgu, 1e-6, "dgu");
}

TEST(FastKernels, FastExpIsAccurate) {
  double worst = 0;
  for (float x = -87.0f; x < 88.0f; x += 0.01953125f) {
    const double want = std::exp(double(x));
    worst = std::max(worst, std::fabs(double(fast::FastExp(x)) - want) / want);
  }
  EXPECT_LT(worst, 5e-7);
  EXPECT_LT(fast::FastExp(-std::numeric_limits<float>::infinity()), 1e-37f);
  EXPECT_EQ(fast::FastExp(0.0f), 1.0f);
}

TEST(FastKernels, ColumnSumAccumulatesInOrder) {
  const int64_t M = 13, C = 70, ld = 75;
  const VF x = RandomF(Z(M * ld), 8);
  VF out(Z(C), 1.0f);
  fast::ColumnSumAccumulate(x.data(), M, C, ld, out.data());
  VD want(Z(C), 1.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c) want[Z(c)] += x[Z(m * ld + c)];
  ExpectClose(out, want, 1e-6, "colsum");
}

}  // namespace
}  // namespace escale::ops
