#include "model/init.h"

#include <cmath>

#include "core/rng.h"
#include "model/layout.h"

namespace escale {

TensorMap RandomInit(const ModelConfig& config, const InitOptions& opt) {
  TensorMap out;
  const double residual_std = opt.scale_residual_outputs
                                  ? opt.std / std::sqrt(2.0 * static_cast<double>(config.num_layers))
                                  : opt.std;
  for (const TensorSpec& spec : CanonicalTensors(config)) {
    Tensor t = Tensor::Zeros(DType::kF32, spec.shape);
    float* p = t.mutable_data<float>();
    const int64_t n = t.numel();
    switch (spec.role) {
      case TensorRole::kAttnNorm:
      case TensorRole::kFfnNorm:
      case TensorRole::kFinalNorm:
      case TensorRole::kQNorm:
      case TensorRole::kKNorm:
        for (int64_t i = 0; i < n; ++i) p[i] = 1.0f;
        break;
      case TensorRole::kBq:
      case TensorRole::kBk:
      case TensorRole::kBv:
        break;  // zeros
      default: {
        const bool residual_out = spec.role == TensorRole::kWo || spec.role == TensorRole::kFfnDown ||
                                  spec.role == TensorRole::kExpertDown || spec.role == TensorRole::kSharedDown;
        const double s = residual_out ? residual_std : opt.std;
        Rng rng = Rng::Stream(opt.seed, "init/" + spec.name);
        for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(s * rng.NextNormal());
      }
    }
    out.emplace(spec.name, std::move(t));
  }
  return out;
}

}  // namespace escale
