#include "train/data_parallel.h"

#include <array>
#include <cstring>
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

std::vector<std::span<float>> ContiguousRuns(std::span<TrainModel::Param> params, bool grads) {
  std::vector<std::span<float>> runs;
  for (const auto& p : params) {
    const std::span<float> s = grads ? p.grad : p.value;
    if (!runs.empty() && runs.back().data() + runs.back().size() == s.data())
      runs.back() = std::span<float>(runs.back().data(), runs.back().size() + s.size());
    else
      runs.push_back(s);
  }
  return runs;
}

Status CheckReplicasAgree(dist::Communicator& comm, std::span<TrainModel::Param> params,
                          int64_t step) {
  if (comm.size() == 1) return Status::Ok();
  uint64_t h = 1469598103934665603ull;
  for (const auto& p : params)
    for (float v : p.value) {
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      h = (h ^ bits) * 1099511628211ull;
    }
  const double mine = static_cast<double>(h >> 12);  // exact in a double
  std::array<double, 2> range = {mine, -mine};
  ESCALE_RETURN_IF_ERROR(comm.AllReduceMax(std::span<double>(range)));
  if (range[0] == -range[1]) return Status::Ok();
  return InternalError("the ranks' weights differ after step " + std::to_string(step) +
                       " (replicas diverged); resume from the last checkpoint and report this");
}

Status BroadcastFloats(dist::Communicator& comm, std::span<float> data) {
  return comm.Broadcast(std::as_writable_bytes(data), 0);
}

Status BroadcastInts(dist::Communicator& comm, std::span<int64_t> data) {
  return comm.Broadcast(std::as_writable_bytes(data), 0);
}

}  // namespace escale
