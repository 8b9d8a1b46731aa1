// Scale-up (docs/method.md §2): a plan built from the source config and the options alone
// (validated before any weight is read), then a producer that computes one target tensor at a
// time.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/layout.h"
#include "surgery/depth_map.h"
#include "surgery/source.h"
#include "surgery/width_map.h"

namespace escale::surgery {

enum class ScaleUpMethod { kFpi, kAki, kAkiPro };
std::string_view ScaleUpMethodName(ScaleUpMethod m);

struct ScaleUpOptions {
  ScaleUpMethod method = ScaleUpMethod::kFpi;
  int64_t hidden = 0;        // 0: keep
  int64_t intermediate = 0;  // 0: f1*d2/d1 when that is an integer
  int64_t heads = 0;         // 0: d2/head_dim (head_dim is fixed)
  int64_t kv_heads = 0;      // 0: keep (the paper's constraint g2 = g1)
  int64_t layers = 0;        // 0: keep
  std::optional<DepthMethod> depth;  // default: stack for fpi/aki, interpolate for aki-pro
  MapKind map = MapKind::kCircular;
  uint64_t seed = 0;
  bool keep_tied = false;
  // FPI only: each copy's share of an input-expanded (split) weight is scaled by
  // 1 + symmetry_noise * (z - mean z), z ~ N(0, 1) seeded per tensor, so that the copies of a unit
  // get different gradients and diverge (otherwise they stay identical forever in a deterministic
  // engine). The shares still sum to the source weight and the copies' inputs are identical, so the
  // grown model's function is unchanged: exact in exact arithmetic, to rounding in floating point.
  double symmetry_noise = 0;
};

// How one target tensor is made: W'[i,j] = mean_{r in rows(i)} S[r, cols.src[j]] / C(cols.src[j])
// (division only for input expansion), with S the source tensor, or for AKI the next layer's when
// row i or column j is a new unit. 1-D tensors use `rows` only.
struct UpRecipe {
  TensorSpec target;
  std::string source;   // canonical source name
  std::string next;     // AKI donor: the same tensor of the next source layer ("" = none)
  Shape source_shape;
  DimMapPtr rows;
  DimMapPtr cols;       // null for 1-D tensors
  bool divide_cols = false;
  bool zero = false;    // depth "zero": this copy's o_proj / down_proj start at 0
};

struct ScaleUpPlan {
  ModelConfig source;
  ModelConfig target;
  ScaleUpOptions options;
  DepthMethod depth = DepthMethod::kStack;
  DimMapPtr hidden, ffn, q_heads, kv_heads, vocab;
  DimMapPtr q_rows, kv_rows;  // the head maps expanded to rows (head_dim each)
  DepthMap depth_map;
  std::vector<UpRecipe> recipes;      // in CanonicalTensors(target) order
  std::vector<std::string> inexact;   // why the result is not the source's function; empty: exact

  bool exact() const { return inexact.empty(); }
  const UpRecipe* Find(const std::string& target_name) const;
};

Result<ScaleUpPlan> PlanScaleUp(const ModelConfig& source, const ScaleUpOptions& opt);

// The target tensor of `r`, computed in T (float for files, double for tests), into out[0..numel).
template <class T>
Status ProduceScaleUpInto(const ScaleUpPlan& plan, const UpRecipe& r, const SourceFn& source, T* out,
                          Scratch<T>& scratch);
// True when the target of `r` is its source element for element (no width change, no donor
// layer, not zeroed), so an executor may write the source's stored bytes instead of computing it.
bool ScaleUpIsCopy(const UpRecipe& r);
template <class T>
Result<std::vector<T>> ProduceScaleUp(const ScaleUpPlan& plan, const UpRecipe& r, const SourceFn& source);

// Every target tensor in memory (tests and small models), stored as `dtype`.
Result<std::map<std::string, Tensor>> ScaleUpInMemory(const ScaleUpPlan& plan, const SourceFn& source,
                                                      DType dtype);

// Recorded in the output's safetensors metadata.
std::map<std::string, std::string> ScaleUpMetadata(const ScaleUpPlan& plan);
// The --dry-run report: shapes, layer sources, counts, bytes, peak memory, exactness.
std::string DescribeScaleUp(const ScaleUpPlan& plan, DType out_dtype);

}  // namespace escale::surgery
