// The MPI implementation of Communicator (built when ESCALE_MPI is on). Only the main thread calls
// MPI (the engine's OpenMP team never does), so MPI_THREAD_FUNNELED suffices.
// The C API only: Open MPI's and MPICH's deprecated C++ bindings would need their own library.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <climits>

#include "dist/communicator.h"

namespace escale::dist {
namespace {

Status MpiError(const char* what, int err) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(err, text, &len) != MPI_SUCCESS) len = 0;
  return InternalError(std::string(what) +
                       " failed: " + std::string(text, static_cast<size_t>(len)) +
                       " (check the launcher and the network between the ranks)");
}

// MPI counts are ints: larger spans go in pieces.
template <typename T, typename Fn>
Status InPieces(std::span<T> data, Fn&& fn) {
  constexpr size_t kMaxCount = INT_MAX / 2;
  for (size_t off = 0; off < data.size(); off += kMaxCount) {
    const size_t n = std::min(kMaxCount, data.size() - off);
    if (const int err = fn(data.data() + off, static_cast<int>(n)); err != MPI_SUCCESS)
      return MpiError("MPI", err);
  }
  return Status::Ok();
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_);
    MPI_Comm_rank(node_, &local_rank_);
    MPI_Comm_size(node_, &local_size_);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<size_t>(len));
    name_ = "MPI (" + v.substr(0, v.find_first_of(",\n")) + ")";
  }
  ~MpiCommunicator() override {
    MPI_Comm_free(&node_);
    MPI_Finalize();
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  Status AllReduceSum(std::span<float> data) override {
    return InPieces(data, [](float* p, int n) {
      return MPI_Allreduce(MPI_IN_PLACE, p, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    });
  }
  Status AllReduceSum(std::span<double> data) override {
    return InPieces(data, [](double* p, int n) {
      return MPI_Allreduce(MPI_IN_PLACE, p, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    });
  }
  Status AllReduceMax(std::span<double> data) override {
    return InPieces(data, [](double* p, int n) {
      return MPI_Allreduce(MPI_IN_PLACE, p, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    });
  }
  Status Broadcast(std::span<std::byte> data, int root) override {
    return InPieces(data, [root](std::byte* p, int n) {
      return MPI_Bcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD);
    });
  }
  Status Barrier() override {
    const int err = MPI_Barrier(MPI_COMM_WORLD);
    return err == MPI_SUCCESS ? Status::Ok() : MpiError("MPI_Barrier", err);
  }
  Status ReduceScatterSum(std::span<float> data, std::span<const int> counts) override {
    const int err = MPI_Reduce_scatter(MPI_IN_PLACE, data.data(), counts.data(), MPI_FLOAT, MPI_SUM,
                                       MPI_COMM_WORLD);
    return err == MPI_SUCCESS ? Status::Ok() : MpiError("MPI_Reduce_scatter", err);
  }
  Status AllGather(std::span<float> data, std::span<const int> counts,
                   std::span<const int> displs) override {
    const int err = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data.data(), counts.data(),
                                   displs.data(), MPI_FLOAT, MPI_COMM_WORLD);
    return err == MPI_SUCCESS ? Status::Ok() : MpiError("MPI_Allgatherv", err);
  }
  Status Gather(std::span<const float> mine, std::span<float> full, std::span<const int> counts,
                std::span<const int> displs, int root) override {
    const int err = MPI_Gatherv(mine.data(), static_cast<int>(mine.size()), MPI_FLOAT, full.data(),
                                counts.data(), displs.data(), MPI_FLOAT, root, MPI_COMM_WORLD);
    return err == MPI_SUCCESS ? Status::Ok() : MpiError("MPI_Gatherv", err);
  }
  std::string name() const override { return name_; }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  MPI_Comm node_ = MPI_COMM_NULL;
  std::string name_;
};

}  // namespace

Result<std::unique_ptr<Communicator>> CreateMpiWorld() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized)
    return InternalError("MPI is already initialised: create the world once per process");
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return InternalError(
        "MPI_Init_thread failed; check that mpirun and this escale use the same MPI");
  // Errors come back as codes (turned into Status) instead of aborting the job.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return std::unique_ptr<Communicator>(new MpiCommunicator());
}

}  // namespace escale::dist
