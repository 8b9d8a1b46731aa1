#include "model/rope.h"

#include <cmath>
#include <numbers>
#include <string>

namespace escale {
namespace {

Result<double> NumberField(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number())
    return InvalidArgument(std::string("rope_scaling needs a numeric '") + key + "'");
  return it->get<double>();
}

}  // namespace

Result<RopeFrequencies> ComputeRopeFrequencies(const ModelConfig& c) {
  if (c.head_dim <= 0 || c.head_dim % 2 != 0)
    return InvalidArgument("head_dim must be positive and even for RoPE, got " + std::to_string(c.head_dim));
  if (auto it = c.extra.find("partial_rotary_factor");
      it != c.extra.end() && it->is_number() && it->get<double>() != 1.0)
    return Unsupported("partial_rotary_factor other than 1 is not supported");
  const int64_t dim = c.head_dim, half = dim / 2;
  const double base = c.rope_theta;
  std::string type = "default";
  const nlohmann::json& rs = c.rope_scaling;
  if (!rs.is_null()) {
    if (!rs.is_object()) return InvalidArgument("rope_scaling must be an object or null");
    auto t = rs.find("rope_type");
    if (t == rs.end()) t = rs.find("type");
    if (t != rs.end()) {
      if (!t->is_string()) return InvalidArgument("rope_scaling.rope_type must be a string");
      type = t->get<std::string>();
    }
  }
  RopeFrequencies f;
  f.inv_freq.resize(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j)
    f.inv_freq[static_cast<size_t>(j)] = 1.0 / std::pow(base, double(2 * j) / double(dim));
  if (type == "default") return f;
  if (type == "linear") {
    ESCALE_ASSIGN_OR_RETURN(const double factor, NumberField(rs, "factor"));
    if (!(factor > 0)) return InvalidArgument("rope_scaling.factor must be positive");
    for (double& v : f.inv_freq) v /= factor;
    return f;
  }
  if (type == "llama3") {
    ESCALE_ASSIGN_OR_RETURN(const double factor, NumberField(rs, "factor"));
    ESCALE_ASSIGN_OR_RETURN(const double low, NumberField(rs, "low_freq_factor"));
    ESCALE_ASSIGN_OR_RETURN(const double high, NumberField(rs, "high_freq_factor"));
    ESCALE_ASSIGN_OR_RETURN(const double old_ctx, NumberField(rs, "original_max_position_embeddings"));
    if (!(factor > 0) || !(high > low) || !(old_ctx > 0))
      return InvalidArgument("rope_scaling llama3 needs factor > 0, high_freq_factor > low_freq_factor and a positive original_max_position_embeddings");
    const double low_wl = old_ctx / low, high_wl = old_ctx / high;
    for (double& v : f.inv_freq) {
      const double wavelen = 2 * std::numbers::pi / v;
      if (wavelen > low_wl) {
        v = v / factor;
      } else if (wavelen >= high_wl) {
        const double smooth = (old_ctx / wavelen - low) / (high - low);
        v = (1 - smooth) * v / factor + smooth * v;
      }
    }
    return f;
  }
  return Unsupported("rope_scaling type '" + type +
                     "' is not supported (supported: default, linear, llama3)");
}

Result<RopeTables> ComputeRopeTables(const ModelConfig& c, int64_t positions) {
  ESCALE_ASSIGN_OR_RETURN(const RopeFrequencies rope, ComputeRopeFrequencies(c));
  const int64_t half = c.head_dim / 2;
  RopeTables t;
  t.cos.assign(static_cast<size_t>(positions * half), 0);
  t.sin.assign(t.cos.size(), 0);
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t j = 0; j < half; ++j) {
      const double a = double(p) * rope.inv_freq[static_cast<size_t>(j)];
      t.cos[static_cast<size_t>(p * half + j)] =
          static_cast<float>(std::cos(a) * rope.attention_factor);
      t.sin[static_cast<size_t>(p * half + j)] =
          static_cast<float>(std::sin(a) * rope.attention_factor);
    }
  return t;
}

}  // namespace escale
