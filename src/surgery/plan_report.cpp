#include "surgery/plan_report.h"

#include <cstdio>
#include <sstream>

namespace escale::surgery {

std::string HumanCount(int64_t n) {
  char buf[64];
  const double d = static_cast<double>(n);
  if (d >= 1e9) std::snprintf(buf, sizeof buf, "%.2fB", d / 1e9);
  else if (d >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", d / 1e6);
  else if (d >= 1e3) std::snprintf(buf, sizeof buf, "%.2fK", d / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return std::string(buf) + " (" + std::to_string(n) + ")";
}

std::string HumanBytes(uint64_t n) {
  char buf[64];
  const double d = static_cast<double>(n);
  if (d >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.2f GiB", d / (1024.0 * 1024 * 1024));
  else if (d >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.2f MiB", d / (1024.0 * 1024));
  else if (d >= 1024.0) std::snprintf(buf, sizeof buf, "%.2f KiB", d / 1024.0);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
}

std::string JsonIntList(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s + "]";
}

std::string ExactnessLine(const std::vector<std::string>& inexact) {
  if (inexact.empty()) return "exact";
  std::string s = "not exact: ";
  for (size_t i = 0; i < inexact.size(); ++i) {
    if (i) s += "; ";
    s += inexact[i];
  }
  return s;
}

std::string ShapeLine(const ModelConfig& c) {
  // ostringstream rather than chained std::string + (GCC 12 reports a false -Wrestrict there).
  std::ostringstream o;
  o << ArchitectureClassName(c.arch) << " M(" << c.num_layers << ", " << c.hidden_size << "): heads "
    << c.num_heads << ", kv heads " << c.num_kv_heads << ", head_dim " << c.head_dim << ", FFN "
    << c.intermediate_size << ", vocab " << c.vocab_size;
  if (c.qkv_bias) o << ", qkv bias";
  if (c.tie_word_embeddings) o << ", tied embeddings";
  if (c.is_moe()) {
    o << ", experts " << c.moe.num_experts << " top-" << c.moe.top_k << " of FFN " << c.moe.expert_intermediate;
    if (c.moe.shared_intermediate) o << ", shared expert FFN " << c.moe.shared_intermediate;
    o << ", router " << RouterTypeName(c.moe.router);
    if (c.moe.every > 1) o << ", MoE every " << c.moe.every << " layers";
    if (c.moe.capacity_factor > 0) o << ", capacity factor " << c.moe.capacity_factor;
  }
  return o.str();
}

}  // namespace escale::surgery
