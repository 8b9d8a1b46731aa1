// MoE routing for the fp32 training path, with the decisions of the fp64 reference
// (ops/cpu/reference_routing.h): top-k on the logits (ties: lower expert index), mixtral weights
// (softmax over the k selected) or st weights (softmax over all E, no renormalisation), and a
// capacity ceil(CF·T·k/E) per expert and per SEQUENCE of T tokens, dropping the lowest weights
// (ties: lower assignment index) or the latest positions. No allocation: callers pass buffers.
#pragma once

#include <cstdint>

namespace escale::ops::fast {

struct RouterSpec {
  int64_t experts = 0, top_k = 0;
  bool mixtral = true;           // false: st
  double capacity_factor = 0.0;  // 0: dropless
  bool drop_by_position = false;
};

// Per assignment a = row*k + i (i-th largest logit of the row).
struct RoutingBuffers {
  int32_t* expert = nullptr;  // [N*k]
  float* prob = nullptr;      // [N*k] routing weight before capacity dropping
  uint8_t* kept = nullptr;    // [N*k]
  float* softmax = nullptr;   // [N*E] softmax over all experts (aux loss, st weights, stats)
  int64_t* load = nullptr;    // [E] assignments per expert before dropping, whole batch
};

// Capacity of one expert for a sequence of seq_len tokens; -1 when dropless.
int64_t ExpertCapacityPerSequence(const RouterSpec& r, int64_t seq_len);

// Routes rows = batch*seq_len tokens from logits [rows, E]. scratch: rows*k + E + 1 int32.
// Returns the number of dropped assignments.
int64_t RouteTokens(const float* logits, int64_t rows, int64_t seq_len, const RouterSpec& r, const RoutingBuffers& out,
                    int32_t* scratch);

struct RouterLossValues {
  double aux = 0, router_max_z = 0, router_z = 0, entropy = 0;  // entropy: mean over rows (nats)
};
// docs/method.md §4 router terms of one layer: aux E·Σ f_e·P_e (f_e from load, before dropping),
// mean_t (max_e l)^2, mean_t logsumexp_e(l)^2, all rows counted.
RouterLossValues ComputeRouterLosses(const float* logits, int64_t rows, const RouterSpec& r, const RoutingBuffers& rb);

// Scales of the router-loss gradients: coefficient · (1/MoE layers) · grad_scale.
struct RouterGradScales {
  double aux = 0, router_max_z = 0, router_z = 0;
};
// dlogits [rows, E] (overwritten) from dweight [rows*k] (gradient of the loss w.r.t. each kept
// routing weight; dropped assignments are ignored) plus the router losses' gradients.
void RouterBackward(const float* logits, int64_t rows, const RouterSpec& r, const RoutingBuffers& rb,
                    const float* dweight, const RouterGradScales& g, float* dlogits);

}  // namespace escale::ops::fast
