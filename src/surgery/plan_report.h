// Small formatting helpers shared by the scale-up and scale-out dry-run reports.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace escale::surgery {

std::string HumanCount(int64_t n);    // 6738415616 -> "6.74B (6738415616)"
std::string HumanBytes(uint64_t n);   // "12.6 GiB"
std::string JsonIntList(const std::vector<int64_t>& v);
// "exact" or "not exact: reason; reason".
std::string ExactnessLine(const std::vector<std::string>& inexact);
// One line per model: layers, hidden, heads/kv, head_dim, FFN, experts.
std::string ShapeLine(const ModelConfig& c);

}  // namespace escale::surgery
