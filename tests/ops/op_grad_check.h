// Gradient checks in the style of llama.cpp's test-backend-ops: each op case names its inputs,
// gives a forward templated on the number type and a hand-written backward; the checker compares
// the backward with complex-step derivatives (f(x + ih e_j) has imaginary part h·∂f/∂x_j to machine
// precision, no cancellation) of the scalar Σ_i y_i r_i for a fixed random projection r.
#pragma once

#include <gtest/gtest.h>

#include <complex>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace escale::testing {

using C = std::complex<double>;
using Buffers = std::vector<std::vector<double>>;

struct OpCase {
  std::string name;
  Buffers inputs;
  // y = op(inputs) flattened; evaluated on complex inputs.
  std::function<std::vector<C>(const std::vector<std::vector<C>>&)> forward;
  // Given inputs and dy (same length as y), the gradient of Σ y·dy for each input.
  std::function<Buffers(const Buffers&, const std::vector<double>&)> backward;
  std::vector<bool> differentiable;  // empty: all inputs
};

class Rng {
 public:
  explicit Rng(uint32_t seed) : g_(seed) {}
  double Uniform(double lo, double hi) { return lo + (hi - lo) * (double(g_()) / 4294967295.0); }
  std::vector<double> Vector(size_t n, double lo = -1.0, double hi = 1.0) {
    std::vector<double> v(n);
    for (double& x : v) x = Uniform(lo, hi);
    return v;
  }
  uint32_t Next() { return g_(); }

 private:
  std::mt19937 g_;
};

inline std::vector<std::vector<C>> ToComplex(const Buffers& b) {
  std::vector<std::vector<C>> out;
  for (const auto& v : b) out.emplace_back(v.begin(), v.end());
  return out;
}

// Returns the largest relative error seen (also reported through gtest expectations).
inline double CheckOpGradients(const OpCase& op, uint32_t seed, double tol = 1e-9) {
  const std::vector<C> y0 = op.forward(ToComplex(op.inputs));
  Rng rng(seed);
  const std::vector<double> r = rng.Vector(y0.size());
  const Buffers analytic = op.backward(op.inputs, r);
  EXPECT_EQ(analytic.size(), op.inputs.size()) << op.name;
  const double h = 1e-30;
  double worst = 0;
  size_t checked = 0;
  for (size_t i = 0; i < op.inputs.size() && i < analytic.size(); ++i) {
    if (!op.differentiable.empty() && !op.differentiable[i]) continue;
    EXPECT_EQ(analytic[i].size(), op.inputs[i].size()) << op.name << " input " << i;
    for (size_t j = 0; j < op.inputs[i].size(); ++j) {
      auto in = ToComplex(op.inputs);
      in[i][j] += C(0, h);
      const std::vector<C> y = op.forward(in);
      double d = 0;
      for (size_t n = 0; n < y.size(); ++n) d += y[n].imag() / h * r[n];
      const double a = analytic[i][j];
      const double err = std::abs(a - d) / (1e-3 + std::abs(d));
      worst = std::max(worst, err);
      EXPECT_LE(err, tol) << op.name << ": input " << i << " element " << j << " analytic " << a
                          << " complex-step " << d;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0u) << op.name;
  return worst;
}

}  // namespace escale::testing
