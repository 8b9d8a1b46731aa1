// Function-preservation report (`escale verify A B`): both models run the fp64 reference forward on
// the same tokens; logits and residual streams are compared.
//
// Residuals are compared on the first min(dA, dB) coordinates: every escale width map has
// g(i) = i for i < d1, so the first d1 coordinates of a grown residual stream are the source's own
// coordinates (exactly equal under FPI), and the rest are copies. Layers are paired one to one when
// the depths match; otherwise through the depth map B records in its metadata
// ("escale.depth_map"): source layer s is paired with the last target layer copied from s (with
// --depth zero that layer's residual equals the source's). Without either, no layer is compared.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "model/config.h"
#include "model/reference_forward.h"

namespace escale::surgery {

struct LayerDrift {
  int64_t layer_a = 0;
  int64_t layer_b = 0;
  double max_abs = 0;   // max |rA - rB| over tokens and the compared coordinates
  double rel_rms = 0;   // rms(rA - rB) / rms(rA)
};

struct VerifyReport {
  int64_t tokens = 0;
  int64_t vocab = 0;
  double max_abs = 0;         // max |logit_A - logit_B|
  double mean_abs = 0;        // mean |logit_A - logit_B|
  double kl_mean = 0;         // mean over positions of KL(softmax(A) || softmax(B))
  double kl_max = 0;
  double top1_agreement = 0;  // fraction of positions with the same argmax
  int64_t nonfinite_a = 0;    // NaN or infinite logits of A
  int64_t nonfinite_b = 0;    // ... of B
  int64_t compared_width = 0; // residual coordinates compared
  std::vector<LayerDrift> layers;
  std::string layer_note;     // why layers were or were not paired
};

// `depth_map`: B's recorded source layer for each of its layers, if any.
Result<VerifyReport> CompareModels(const ModelConfig& a, const TensorMap& ta, const ModelConfig& b,
                                   const TensorMap& tb, const std::vector<int32_t>& tokens,
                                   const std::optional<std::vector<int64_t>>& depth_map);

// "1,2,3" -> tokens, each checked against `vocab`.
Result<std::vector<int32_t>> ParseTokenList(const std::string& text, int64_t vocab);
// The default probe: `n` tokens from the seeded stream "verify/tokens" (seed 0), below `vocab`.
std::vector<int32_t> DefaultProbeTokens(int64_t n, int64_t vocab);
// "[0,0,1,1]" (a metadata value) -> list; nullopt when absent or malformed.
std::optional<std::vector<int64_t>> ParseIntListJson(const std::string& text);

// One line saying which model computes NaN or infinity, or empty when every logit and residual
// compared is finite. A non-finite value is never "close": the caller treats it as a failure.
std::string NonFiniteProblem(const VerifyReport& r);

std::string FormatVerifyReport(const VerifyReport& r);
nlohmann::json VerifyReportJson(const VerifyReport& r);

}  // namespace escale::surgery
