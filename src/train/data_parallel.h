// How a step's global batch is shared among the ranks of a data-parallel run.
//
// The unit of work is the micro-batch: rank r computes a contiguous run of the step's
// micro-batches while every rank's data loader still walks the whole global batch, so N ranks see
// exactly the windows one rank would and the loss curve matches -np 1 up to the order of fp32
// sums. Micro-batches are never split across ranks: a micro-batch's MoE routing (capacity,
// load-balancing statistics) depends on all of its tokens, so splitting one would change the maths.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"
#include "dist/communicator.h"
#include "model/train_model.h"

namespace escale {

struct RankShare {
  int64_t first = 0;  // index of the first micro-batch of the step this rank computes
  int64_t count = 0;  // how many
  bool contains(int64_t micro_batch) const {
    return micro_batch >= first && micro_batch < first + count;
  }
};

// The micro-batches of a step of `micro_batches` that `rank` of `world` computes. An error (one
// line, naming the fix) when the step's micro-batches do not divide evenly among the ranks.
Result<RankShare> ShareOfStep(int64_t micro_batches, int64_t seq_len, int64_t micro_batch,
                              int world, int rank);

// Validation batch b is evaluated by rank b % world (every rank still reads all of them).
inline bool EvaluatesBatch(int64_t batch, int world, int rank) {
  return batch % world == rank;
}

// Maximal runs of adjacent spans (the engine keeps values and gradients in flat buffers, so this is
// usually one run): collectives then move a few large buckets, never one message per tensor.
std::vector<std::span<float>> ContiguousRuns(std::span<TrainModel::Param> params, bool grads);

// The replicas must hold identical weights (same summed gradients, same update). Checked at each
// checkpoint with a hash of every weight's bits, so a divergence (a non-deterministic reduction,
// a faulty node) stops the run instead of saving rank 0's replica as if it spoke for all.
Status CheckReplicasAgree(dist::Communicator& comm, std::span<TrainModel::Param> params,
                          int64_t step);

// Rank 0's values to every rank.
Status BroadcastFloats(dist::Communicator& comm, std::span<float> data);
Status BroadcastInts(dist::Communicator& comm, std::span<int64_t> data);

}  // namespace escale
