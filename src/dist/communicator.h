// The processes of a data-parallel run and the collectives the trainer needs between them.
//
// A run is either one process (SingleProcessCommunicator: every collective is the identity) or N
// processes started by a launcher such as `mpirun -np N` (the MPI implementation, built when
// ESCALE_MPI is on; MPI never appears outside src/dist). MPI is initialised only when the
// environment shows a launcher started this process, so a plain `escale train` neither pays for
// nor depends on MPI start-up.
//
// Every collective must be called by all ranks in the same order. A failure on one rank must not
// leave the others waiting in a collective: AgreeOnStatus and BroadcastStatus turn a local error
// into the same error on every rank.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "core/status.h"

namespace escale::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // among the ranks on this node
  virtual int local_size() const = 0;
  // In place: every rank ends with the element-wise sum (identical bits on every rank).
  virtual Status AllReduceSum(std::span<float> data) = 0;
  virtual Status AllReduceSum(std::span<double> data) = 0;
  virtual Status AllReduceMax(std::span<double> data) = 0;
  // Root's bytes overwrite everyone else's; all ranks pass buffers of the same size.
  virtual Status Broadcast(std::span<std::byte> data, int root) = 0;
  virtual Status Barrier() = 0;
  // The sharded collectives of ZeRO-1. Rank r's segment is [displs[r], displs[r] + counts[r]) of a
  // buffer of sum(counts) elements (displs: the prefix sums of counts).
  // In place: data[0, counts[rank]) becomes rank's segment of the element-wise sum of every rank's
  // `data` (MPI_IN_PLACE semantics; the rest of `data` is left undefined). No receive buffer.
  virtual Status ReduceScatterSum(std::span<float> data, std::span<const int> counts) = 0;
  // In place: every rank's segment of `data` is copied into everyone's `data`.
  virtual Status AllGather(std::span<float> data, std::span<const int> counts,
                           std::span<const int> displs) = 0;
  // Root's `full` receives every rank's `mine` at its segment (`full` is ignored on other ranks).
  virtual Status Gather(std::span<const float> mine, std::span<float> full,
                        std::span<const int> counts, std::span<const int> displs, int root) = 0;
  virtual std::string name() const = 0;  // "single process" or "MPI (Open MPI ...)"
};

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  Status AllReduceSum(std::span<float>) override { return Status::Ok(); }
  Status AllReduceSum(std::span<double>) override { return Status::Ok(); }
  Status AllReduceMax(std::span<double>) override { return Status::Ok(); }
  Status Broadcast(std::span<std::byte>, int) override { return Status::Ok(); }
  Status Barrier() override { return Status::Ok(); }
  Status ReduceScatterSum(std::span<float>, std::span<const int>) override { return Status::Ok(); }
  Status AllGather(std::span<float>, std::span<const int>, std::span<const int>) override {
    return Status::Ok();
  }
  Status Gather(std::span<const float> mine, std::span<float> full, std::span<const int>,
                std::span<const int> displs, int) override {
    std::copy(mine.begin(), mine.end(), full.begin() + displs[0]);
    return Status::Ok();
  }
  std::string name() const override { return "single process"; }
};

// What the environment says about a launcher (Open MPI's mpirun, PMIx, Slurm/MPICH PMI).
struct LaunchInfo {
  bool launched = false;  // a launcher started this process
  int size = 1;           // world size it announced (1 when it named none)
  int rank = 0;
};
// `getenv` is injectable for tests; by default the process environment.
LaunchInfo DetectLauncher(const std::function<const char*(const char*)>& getenv = nullptr);

// True when this build has the MPI implementation.
bool BuiltWithMpi();

// The world of this process, created on the first call: MPI when launched with a size other than
// 1, else a single process. A build without MPI that sees a launcher with size > 1 returns an
// error (N independent runs would clobber one output directory).
Result<Communicator*> World();
// Finalises MPI (if World started it). The CLI calls it after rank 0 has printed any error: a rank
// that left earlier would make the launcher kill rank 0 before it could say what went wrong, and
// MPI_Finalize waits for every rank.
void FinalizeWorld();

// Every rank passes its local status; every rank gets back the first failing rank's status
// (its message prefixed with "rank R: " when R is not 0), or Ok when all succeeded.
Status AgreeOnStatus(Communicator& comm, const Status& local);
// Root's status, on every rank (for work only root did, such as writing a checkpoint).
Status BroadcastStatus(Communicator& comm, const Status& local, int root);
// Root's string, on every rank.
Status BroadcastString(Communicator& comm, std::string& s, int root);

}  // namespace escale::dist
