#include "surgery/verify.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/rng.h"

namespace escale::surgery {

namespace {

// log-softmax of one row, in place.
std::vector<double> LogSoftmax(const double* x, int64_t n) {
  double mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - mx);
  const double lse = mx + std::log(s);
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = x[i] - lse;
  return out;
}

int64_t ArgMax(const double* x, int64_t n) {
  return std::max_element(x, x + n) - x;
}

// std::max(x, NaN) is x: a NaN difference would vanish from every maximum. These keep it.
double MaxKeepNan(double acc, double v) {
  return std::isnan(acc) || std::isnan(v) ? std::nan("") : std::max(acc, v);
}

}  // namespace

std::string NonFiniteProblem(const VerifyReport& r) {
  std::string s;
  auto add = [&](const char* who, int64_t n) {
    if (n == 0) return;
    if (!s.empty()) s += "; ";
    s += std::string("model ") + who + " computes " + std::to_string(n) + " NaN or infinite logit" +
         (n == 1 ? "" : "s");
  };
  add("A", r.nonfinite_a);
  add("B", r.nonfinite_b);
  if (s.empty()) {
    bool bad = !std::isfinite(r.max_abs) || !std::isfinite(r.kl_mean) || !std::isfinite(r.kl_max);
    for (const LayerDrift& d : r.layers)
      bad = bad || !std::isfinite(d.max_abs) || !std::isfinite(d.rel_rms);
    if (bad) s = "a comparison is NaN or infinite (a residual stream overflowed)";
  }
  if (!s.empty()) s += ": the models cannot be called equal; check the weights for NaN or inf";
  return s;
}

Result<VerifyReport> CompareModels(const ModelConfig& a, const TensorMap& ta, const ModelConfig& b,
                                   const TensorMap& tb, const std::vector<int32_t>& tokens,
                                   const std::optional<std::vector<int64_t>>& depth_map) {
  if (a.vocab_size != b.vocab_size)
    return InvalidArgument("the models have different vocabularies (" + std::to_string(a.vocab_size) + " and " +
                           std::to_string(b.vocab_size) + " tokens); their logits cannot be compared");
  if (tokens.empty()) return InvalidArgument("no tokens to run");
  ReferenceForwardOptions fo;
  fo.collect_residuals = true;
  auto ra_or = ReferenceForward(a, ta, tokens, fo);
  if (!ra_or.ok()) return ra_or.status().WithContext("model A");
  auto rb_or = ReferenceForward(b, tb, tokens, fo);
  if (!rb_or.ok()) return rb_or.status().WithContext("model B");
  const ReferenceForwardResult& ra = ra_or.value();
  const ReferenceForwardResult& rb = rb_or.value();
  VerifyReport r;
  const int64_t T = static_cast<int64_t>(tokens.size()), V = a.vocab_size;
  r.tokens = T;
  r.vocab = V;
  double sum_abs = 0;
  int64_t agree = 0;
  for (int64_t t = 0; t < T; ++t) {
    const double* la = ra.logits.data() + t * V;
    const double* lb = rb.logits.data() + t * V;
    for (int64_t v = 0; v < V; ++v) {
      r.nonfinite_a += std::isfinite(la[v]) ? 0 : 1;
      r.nonfinite_b += std::isfinite(lb[v]) ? 0 : 1;
      const double d = std::abs(la[v] - lb[v]);
      r.max_abs = MaxKeepNan(r.max_abs, d);
      sum_abs += d;
    }
    const std::vector<double> pa = LogSoftmax(la, V), pb = LogSoftmax(lb, V);
    double kl = 0;
    for (int64_t v = 0; v < V; ++v) kl += std::exp(pa[static_cast<size_t>(v)]) * (pa[static_cast<size_t>(v)] - pb[static_cast<size_t>(v)]);
    kl = std::isnan(kl) ? kl : std::max(kl, 0.0);  // rounding can leave a tiny negative
    r.kl_mean += kl / static_cast<double>(T);
    r.kl_max = MaxKeepNan(r.kl_max, kl);
    agree += ArgMax(la, V) == ArgMax(lb, V) ? 1 : 0;
  }
  r.mean_abs = sum_abs / static_cast<double>(T * V);
  r.top1_agreement = static_cast<double>(agree) / static_cast<double>(T);

  // Pair layers.
  std::vector<std::pair<int64_t, int64_t>> pairs;
  const int64_t la_n = a.num_layers, lb_n = b.num_layers;
  if (depth_map && static_cast<int64_t>(depth_map->size()) == lb_n &&
      std::all_of(depth_map->begin(), depth_map->end(), [&](int64_t s) { return s >= 0 && s < la_n; }) &&
      la_n != lb_n) {
    for (int64_t s = 0; s < la_n; ++s) {
      int64_t last = -1;
      for (int64_t t = 0; t < lb_n; ++t)
        if ((*depth_map)[static_cast<size_t>(t)] == s) last = t;
      if (last >= 0) pairs.emplace_back(s, last);
    }
    r.layer_note = "layers paired through B's recorded depth map (source layer s <-> last target layer copied from s)";
  } else if (la_n == lb_n) {
    for (int64_t l = 0; l < la_n; ++l) pairs.emplace_back(l, l);
    r.layer_note = "layers paired one to one";
  } else {
    r.layer_note = "layer counts differ and B records no depth map: residuals not compared";
  }
  const int64_t w = std::min(a.hidden_size, b.hidden_size);
  r.compared_width = w;
  if (a.hidden_size != b.hidden_size)
    r.layer_note += "; residuals compared on the first " + std::to_string(w) + " coordinates";
  for (auto [pa_l, pb_l] : pairs) {
    LayerDrift d;
    d.layer_a = pa_l;
    d.layer_b = pb_l;
    const std::vector<double>& xa = ra.residuals[static_cast<size_t>(pa_l)];
    const std::vector<double>& xb = rb.residuals[static_cast<size_t>(pb_l)];
    double sd = 0, sa = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < w; ++h) {
        const double va = xa[static_cast<size_t>(t * a.hidden_size + h)];
        const double diff = va - xb[static_cast<size_t>(t * b.hidden_size + h)];
        d.max_abs = MaxKeepNan(d.max_abs, std::abs(diff));
        sd += diff * diff;
        sa += va * va;
      }
    d.rel_rms = sa > 0 ? std::sqrt(sd / sa) : std::sqrt(sd);
    r.layers.push_back(d);
  }
  return r;
}

Result<std::vector<int32_t>> ParseTokenList(const std::string& text, int64_t vocab) {
  std::vector<int32_t> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    const auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) return InvalidArgument("--tokens has an empty entry; give comma-separated token ids");
    const std::string s = item.substr(b, e - b + 1);
    if (s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos)
      return InvalidArgument("--tokens entry '" + s + "' is not a token id (a non-negative integer)");
    const long long v = std::stoll(s);
    if (v >= vocab) return InvalidArgument("token id " + s + " is outside the vocabulary (" + std::to_string(vocab) + ")");
    out.push_back(static_cast<int32_t>(v));
  }
  if (out.empty()) return InvalidArgument("--tokens is empty; give comma-separated token ids");
  return out;
}

std::vector<int32_t> DefaultProbeTokens(int64_t n, int64_t vocab) {
  Rng rng = Rng::Stream(0, "verify/tokens");
  std::vector<int32_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(static_cast<int32_t>(rng.NextBelow(static_cast<uint64_t>(vocab))));
  return t;
}

std::optional<std::vector<int64_t>> ParseIntListJson(const std::string& text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_array()) return std::nullopt;
  std::vector<int64_t> v;
  for (const auto& x : j) {
    if (!x.is_number_integer()) return std::nullopt;
    v.push_back(x.get<int64_t>());
  }
  return v;
}

std::string FormatVerifyReport(const VerifyReport& r) {
  std::ostringstream o;
  char buf[256];
  std::snprintf(buf, sizeof buf, "tokens %lld, vocab %lld\n", static_cast<long long>(r.tokens),
                static_cast<long long>(r.vocab));
  o << buf;
  std::snprintf(buf, sizeof buf, "logits: max |diff| %.3e, mean |diff| %.3e\n", r.max_abs, r.mean_abs);
  o << buf;
  std::snprintf(buf, sizeof buf, "KL(A||B): mean %.3e, max %.3e\ntop-1 agreement: %.4f\n", r.kl_mean, r.kl_max,
                r.top1_agreement);
  o << buf;
  if (r.nonfinite_a > 0 || r.nonfinite_b > 0) {
    std::snprintf(buf, sizeof buf, "NaN or infinite logits: %lld in A, %lld in B\n",
                  static_cast<long long>(r.nonfinite_a), static_cast<long long>(r.nonfinite_b));
    o << buf;
  }
  o << "residual drift (" << r.layer_note << "):\n";
  for (const LayerDrift& d : r.layers) {
    std::snprintf(buf, sizeof buf, "  A layer %lld vs B layer %lld: max |diff| %.3e, relative rms %.3e\n",
                  static_cast<long long>(d.layer_a), static_cast<long long>(d.layer_b), d.max_abs, d.rel_rms);
    o << buf;
  }
  return o.str();
}

nlohmann::json VerifyReportJson(const VerifyReport& r) {
  nlohmann::json j;
  j["tokens"] = r.tokens;
  j["vocab"] = r.vocab;
  j["max_abs_logit_diff"] = r.max_abs;  // JSON has no NaN: a non-finite value is written as null
  j["nonfinite_logits_a"] = r.nonfinite_a;
  j["nonfinite_logits_b"] = r.nonfinite_b;
  j["finite"] = NonFiniteProblem(r).empty();
  j["mean_abs_logit_diff"] = r.mean_abs;
  j["kl_mean"] = r.kl_mean;
  j["kl_max"] = r.kl_max;
  j["top1_agreement"] = r.top1_agreement;
  j["residual_width_compared"] = r.compared_width;
  j["layer_note"] = r.layer_note;
  j["layers"] = nlohmann::json::array();
  for (const LayerDrift& d : r.layers)
    j["layers"].push_back({{"a", d.layer_a}, {"b", d.layer_b}, {"max_abs", d.max_abs}, {"rel_rms", d.rel_rms}});
  return j;
}

}  // namespace escale::surgery
