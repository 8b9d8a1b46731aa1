#include "model/reference_forward.h"

#include "model/reference_model_forward.h"
#include "model/rope.h"

namespace escale {

Result<ReferenceForwardResult> ReferenceForward(const ModelConfig& c, const TensorMap& tensors,
                                                std::span<const int32_t> tokens,
                                                const ReferenceForwardOptions& opt) {
  ESCALE_RETURN_IF_ERROR(c.Validate());
  ESCALE_RETURN_IF_ERROR(refmodel::CheckTokens(c, tokens, "token", /*allow_negative=*/false));
  const int64_t T = static_cast<int64_t>(tokens.size());
  ESCALE_ASSIGN_OR_RETURN(const RopeFrequencies rope, ComputeRopeFrequencies(c));
  ESCALE_ASSIGN_OR_RETURN(const refmodel::WeightsT<double> w, refmodel::LoadWeightsF64(c, tensors));
  const ops::ref::RopeTables rt = ops::ref::MakeRopeTables(rope.inv_freq, T, rope.attention_factor);
  refmodel::ForwardState<double> st;
  refmodel::ModelForwardT(c, w, tokens, T, rt, /*keep_tape=*/false, opt.collect_residuals, st);
  ReferenceForwardResult res;
  res.tokens = T;
  res.vocab = c.vocab_size;
  res.logits = std::move(st.logits);
  res.residuals = std::move(st.residuals);
  return res;
}

}  // namespace escale
