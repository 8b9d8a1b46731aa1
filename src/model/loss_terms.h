// The training objective's terms (docs/method.md §4), shared by the fp64 reference and the fast
// engine.
#pragma once

namespace escale {

// loss = CE + aux·L_aux + router_max_z·L_rmaxz + router_z·L_rz + output_z·L_oz +
// output_max_z·L_omaxz. Router terms are averaged over MoE layers; each per-layer term is a mean
// over all tokens of the batch. Output terms are means over the counted positions (target >= 0),
// like CE.
struct LossCoefficients {
  double aux = 0.0;           // Switch load balancing E·Σ f_e P_e (uniform routing = 1)
  double router_max_z = 0.0;  // mean_t (max_e router_logit)^2
  double router_z = 0.0;      // mean_t logsumexp_e(router_logit)^2
  double output_z = 0.0;      // mean_t logsumexp_v(y)^2
  double output_max_z = 0.0;  // mean_t (max_v y)^2
};

struct LossTerms {
  double total = 0, ce = 0, aux = 0, router_max_z = 0, router_z = 0, output_z = 0, output_max_z = 0;
};

}  // namespace escale
