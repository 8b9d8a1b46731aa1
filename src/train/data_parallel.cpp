#include "train/data_parallel.h"

#include <string>

namespace escale {

Result<RankShare> ShareOfStep(int64_t micro_batches, int64_t seq_len, int64_t micro_batch,
                              int world, int rank) {
  if (world < 1 || rank < 0 || rank >= world || micro_batches < 1)
    return InternalError("ShareOfStep: rank " + std::to_string(rank) + " of " +
                         std::to_string(world) + " with " + std::to_string(micro_batches) +
                         " micro-batches");
  if (micro_batches % world != 0) {
    const int64_t tokens = seq_len * micro_batch;
    return InvalidArgument(
        "a step of " + std::to_string(micro_batches) + " micro-batch" +
        (micro_batches == 1 ? "" : "es") + " cannot be shared by " + std::to_string(world) +
        " ranks; set --global-batch-tokens to a multiple of ranks x seq-len x micro-batch (" +
        std::to_string(world * tokens) + ") or run " +
        (world > micro_batches ? "fewer ranks"
                               : "a rank count that divides " + std::to_string(micro_batches)));
  }
  const int64_t per = micro_batches / world;
  return RankShare{per * rank, per};
}

}  // namespace escale
