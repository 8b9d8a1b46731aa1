// Log-likelihood of many requests on the fast CPU engine: the one primitive that perplexity and
// multiple-choice evaluation are built on (lm-eval `_loglikelihood_tokens`).
//
// Requests are packed one per row of a fixed [batch, seq_len] micro-batch and run with
// TrainModel::Evaluate; rows never see each other (causal attention within a row; MoE layers are
// run dropless, so a row's routing cannot depend on its neighbours). Log-softmax is taken in fp64
// from the fp32 logits.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/status.h"
#include "eval/requests.h"
#include "model/config.h"
#include "model/tensor_map.h"

namespace escale {
class TrainModel;
}

namespace escale::eval {

struct LogLikelihood {
  double logprob = 0;  // sum of log p over the scored continuation tokens (nats)
  bool greedy = true;  // every scored token was the argmax
  int64_t tokens = 0;  // scored tokens
};

class LmScorer {
 public:
  // `max_length`: the longest model input (lm-eval's max_length); `batch`: rows per forward.
  // `release`, when given, is called with each tensor of `weights` once the engine holds its
  // values (TrainModel::Create's `copied`).
  static Result<std::unique_ptr<LmScorer>> Create(const ModelConfig& config,
                                                  const TensorMap& weights, int64_t max_length,
                                                  int64_t batch,
                                                  std::function<void(const Tensor&)> release = {});
  ~LmScorer();
  // `done(n)` is called after each forward with the number of requests finished so far.
  Result<std::vector<LogLikelihood>> Score(std::span<const TokenRequest> requests,
                                           const std::function<void(int64_t)>& done = {});
  int64_t max_length() const { return max_length_; }

 private:
  LmScorer() = default;
  Status EnsureModel(int64_t seq_len);
  ModelConfig config_;
  TensorMap weights_;
  std::function<void(const Tensor&)> release_;
  int64_t max_length_ = 0, batch_ = 0, seq_len_ = 0;
  std::unique_ptr<TrainModel> model_;
};

}  // namespace escale::eval
