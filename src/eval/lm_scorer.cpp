#include "eval/lm_scorer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/train_model.h"

namespace escale::eval {

LmScorer::~LmScorer() = default;

Result<std::unique_ptr<LmScorer>> LmScorer::Create(const ModelConfig& config,
                                                   const TensorMap& weights, int64_t max_length,
                                                   int64_t batch,
                                                   std::function<void(const Tensor&)> release) {
  if (max_length < 1) return InvalidArgument("--max-length must be at least 1");
  if (batch < 1) return InvalidArgument("--batch must be at least 1");
  ESCALE_RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<LmScorer> s(new LmScorer());
  s->config_ = config;
  s->config_.moe.capacity_factor = 0;  // dropless: a row's result must not depend on the batch
  s->weights_ = weights;
  s->max_length_ = max_length;
  s->batch_ = batch;
  s->release_ = std::move(release);
  return s;
}

// The engine is built for the longest input actually seen (rounded up), so short multiple-choice
// prompts do not pay for max_length positions.
Status LmScorer::EnsureModel(int64_t seq_len) {
  seq_len = std::min(max_length_, (seq_len + 15) / 16 * 16);
  if (model_ && seq_len <= seq_len_) return Status::Ok();
  model_.reset();
  ESCALE_ASSIGN_OR_RETURN(
      model_, TrainModel::Create(config_, weights_, {batch_, seq_len, /*training=*/false},
                                 LossCoefficients{}, release_));
  seq_len_ = seq_len;
  return Status::Ok();
}

Result<std::vector<LogLikelihood>> LmScorer::Score(std::span<const TokenRequest> requests,
                                                   const std::function<void(int64_t)>& done) {
  std::vector<ModelInput> inputs;
  inputs.reserve(requests.size());
  int64_t longest = 1;
  for (const TokenRequest& r : requests) {
    for (const auto* part : {&r.context, &r.continuation})
      for (int32_t t : *part)
        if (t < 0 || t >= config_.vocab_size)
          return InvalidArgument(
              "token " + std::to_string(t) + " is outside the model's vocabulary of " +
              std::to_string(config_.vocab_size) + " (tokenizer and model do not match)");
    inputs.push_back(MakeModelInput(r, max_length_));
    if (inputs.back().tokens.empty() && !inputs.back().targets.empty())
      return InvalidArgument("a request has a continuation but no context token");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(inputs.back().tokens.size()));
  }
  ESCALE_RETURN_IF_ERROR(EnsureModel(longest));
  // Longest first, like lm-eval, so a batch holds inputs of similar length.
  std::vector<size_t> order(inputs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return inputs[a].tokens.size() > inputs[b].tokens.size();
  });

  const int64_t T = seq_len_, V = config_.vocab_size;
  std::vector<int32_t> tokens(static_cast<size_t>(batch_ * T)), targets(tokens.size());
  std::vector<LogLikelihood> out(inputs.size());
  for (size_t first = 0; first < order.size(); first += static_cast<size_t>(batch_)) {
    const size_t rows = std::min(order.size() - first, static_cast<size_t>(batch_));
    std::fill(tokens.begin(), tokens.end(), 0);
    std::fill(targets.begin(), targets.end(), -1);
    for (size_t r = 0; r < rows; ++r) {
      const ModelInput& in = inputs[order[first + r]];
      std::copy(in.tokens.begin(), in.tokens.end(),
                tokens.begin() + static_cast<std::ptrdiff_t>(r * T));
      const size_t start = in.tokens.size() - in.targets.size();
      std::copy(in.targets.begin(), in.targets.end(),
                targets.begin() + static_cast<std::ptrdiff_t>(r * T + start));
    }
    ESCALE_RETURN_IF_ERROR(model_->Evaluate(tokens, targets).status());
    const std::span<const float> logits = model_->logits();
    for (size_t r = 0; r < rows; ++r) {
      LogLikelihood& ll = out[order[first + r]];
      for (int64_t p = 0; p < T; ++p) {
        const int32_t target = targets[r * T + p];
        if (target < 0) continue;
        const float* row = logits.data() + (static_cast<int64_t>(r) * T + p) * V;
        const float* best = std::max_element(row, row + V);  // first maximum, like torch.argmax
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - *best);
        ll.logprob += static_cast<double>(row[target]) - *best - std::log(sum);
        ll.greedy = ll.greedy && (best - row) == target;
        ++ll.tokens;
      }
    }
    if (done) done(static_cast<int64_t>(first + rows));
  }
  return out;
}

}  // namespace escale::eval
