// Scale-out (docs/method.md §3): sparse upcycling of a dense model into an MoE, or growing an MoE
// into one with m times as many experts (each expert and its router row copied m times). A plan
// from the source config and the options (validated before any weight is read), then one target
// tensor at a time.
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
#include "surgery/source.h"

namespace escale::surgery {

struct ScaleOutOptions {
  // Dense source: E copies of the FFN (routed experts = E * granularity). MoE source with E0
  // experts: the target's expert count, a multiple m * E0 (m >= 2).
  int64_t experts = 0;
  // k (routed top-k = k * granularity). 0 with an MoE source: m * k0, the exact choice.
  int64_t top_k = 0;
  RouterType router = RouterType::kMixtral;
  double router_std = 0.02; // router weights ~ N(0, router_std^2)
  uint64_t seed = 0;
  double capacity_factor = 0.0;  // 0: dropless
  DropPolicy drop_policy = DropPolicy::kProbability;
  int64_t every = 1;        // layer i is MoE iff (i+1) % every == 0
  // The MoE class to write (a MoE row of model/architecture.h); unset: the source's own MoE form
  // when it can hold the options, else the first MoE row that can.
  std::optional<Architecture> format;
  int64_t granularity = 1;  // G: each FFN split into G slices of f/G (Megatron granular upcycling)
  bool shared_expert = false;  // Qwen2-MoE shared expert (a copy of the dense FFN)
  double expert_noise = 0.0;   // std of Gaussian noise added to every expert weight
  double reinit_ratio = 0.0;   // Drop-Upcycling: fraction of each expert's neurons re-initialised
  double router_noise = 0.0;   // MoE source: std of noise added to the copied router rows (copies 1..m-1)
};

// The options' text forms, shared by `escale scale-out` and `escale train --init-from` (online
// upcycling): router mixtral | st, format auto or an MoE class's CLI name (mixtral, qwen2-moe,
// qwen3-moe), drop_by probability |
// position. Anything else is an error naming the value and the choices.
struct ScaleOutChoices {
  std::string router = "mixtral", format = "auto", drop_by = "probability";
};
Status ApplyScaleOutChoices(const ScaleOutChoices& c, ScaleOutOptions& opt);

// How one target tensor is made.
enum class OutKind {
  kCopy,          // the same tensor of the dense model
  kZero,          // zeros (q/k/v biases a Qwen2-MoE target needs; the shared expert's gate)
  kRouter,        // N(0, std^2) rows from the seeded stream of this layer, repeated per group
  kExpertRows,    // gate / up: rows [s*fe, (s+1)*fe) of the dense tensor
  kExpertCols,    // down: columns [s*fe, (s+1)*fe) of the dense tensor, times down_scale
  kRouterCopies,  // MoE source: row e <- source router row e / m (+ router noise on copies 1..m-1)
  kExpertCopy,    // MoE source: expert e <- source expert e / m (the same projection)
};

struct OutRecipe {
  TensorSpec target;
  OutKind kind = OutKind::kCopy;
  std::string source;  // canonical source name
  Shape source_shape;
  int64_t slice = 0;   // granularity slice s of the dense FFN
  double scale = 1.0;  // multiplies the whole tensor (down_proj of experts / shared expert)
};

struct ScaleOutPlan {
  ModelConfig source;
  ModelConfig target;
  ScaleOutOptions options;
  Architecture format = Architecture::kMixtral;
  double expert_down_scale = 1.0;
  // MoE source: copies per source expert m (target expert e is a copy of source expert e / m, so
  // the copies of expert i sit at i*m .. i*m+m-1). 0 for a dense source.
  int64_t copies = 0;
  std::vector<OutRecipe> recipes;
  std::vector<std::string> inexact;     // why the MoE does not compute the dense function
  std::vector<std::string> conditions;  // when an otherwise exact plan stops being exact

  bool exact() const { return inexact.empty(); }
  bool grows_moe() const { return copies > 0; }
  const OutRecipe* Find(const std::string& target_name) const;
};

// A dense source is upcycled; an MoE source has its experts duplicated (PlanExpertGrowth).
// The MoE class an upcycled `source` is written as (ScaleOutOptions::format).
Result<Architecture> PickMoeArchitecture(const ModelConfig& source, const ScaleOutOptions& opt);
Result<ScaleOutPlan> PlanScaleOut(const ModelConfig& source, const ScaleOutOptions& opt);
Result<ScaleOutPlan> PlanExpertGrowth(const ModelConfig& moe, const ScaleOutOptions& opt);

// The target tensor of `r` in T (float for files, double for tests), into out[0..numel).
template <class T>
Status ProduceScaleOutInto(const ScaleOutPlan& plan, const OutRecipe& r, const SourceFn& source, T* out,
                           Scratch<T>& scratch);
// Where the target of `r` is a verbatim run of its source's elements: the element offset of that
// run in the source (copies, gate/up experts' row slices, an ungrouped unscaled down_proj);
// nullopt when the target is computed. An executor may then write the stored bytes instead.
std::optional<int64_t> ScaleOutCopyOffset(const ScaleOutPlan& plan, const OutRecipe& r);
// Recipes with the same non-empty key produce identical tensors (the E copies of one slice of a
// dense FFN), so an executor may compute one and write it for all of them.
std::string ScaleOutShareKey(const ScaleOutPlan& plan, const OutRecipe& r);
template <class T>
Result<std::vector<T>> ProduceScaleOut(const ScaleOutPlan& plan, const OutRecipe& r, const SourceFn& source);

Result<std::map<std::string, Tensor>> ScaleOutInMemory(const ScaleOutPlan& plan, const SourceFn& source,
                                                       DType dtype);

// n draws of N(0, std_dev^2) from the named stream of `seed` (the router weights and noise).
std::vector<double> GaussianDraws(uint64_t seed, const std::string& stream, int64_t n,
                                  double std_dev);

// The rows x cols router matrix of `layer` before per-group repetition: N(0, std^2), row-major,
// from Rng::Stream(seed, "router/layer/<layer>").
std::vector<double> RouterBaseWeights(uint64_t seed, int64_t layer, int64_t rows, int64_t cols, double std_dev);
// The rows x cols noise added to the copied router rows of `layer` (rows of copy 0 are not used):
// N(0, std^2) from Rng::Stream(seed, "router-noise/layer/<layer>").
std::vector<double> RouterNoise(uint64_t seed, int64_t layer, int64_t rows, int64_t cols, double std_dev);

std::map<std::string, std::string> ScaleOutMetadata(const ScaleOutPlan& plan);
std::string DescribeScaleOut(const ScaleOutPlan& plan, DType out_dtype);
// The parts of the metadata and the dry-run report that differ for an MoE source.
void AddExpertGrowthMetadata(const ScaleOutPlan& plan, std::map<std::string, std::string>& m);
std::string DescribeExpertGrowth(const ScaleOutPlan& plan);

}  // namespace escale::surgery
