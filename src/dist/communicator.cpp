#include "dist/communicator.h"

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace escale::dist {

#if defined(ESCALE_HAVE_MPI)
// mpi_communicator.cpp: initialises MPI and wraps MPI_COMM_WORLD.
Result<std::unique_ptr<Communicator>> CreateMpiWorld();
bool BuiltWithMpi() {
  return true;
}
#else
bool BuiltWithMpi() {
  return false;
}
#endif

namespace {

// A non-negative integer, or -1.
int ParseCount(const char* s) {
  if (s == nullptr || *s == '\0') return -1;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  return (*end == '\0' && v >= 0 && v < (1L << 30)) ? static_cast<int>(v) : -1;
}

}  // namespace

LaunchInfo DetectLauncher(const std::function<const char*(const char*)>& getenv_fn) {
  auto get = [&](const char* name) { return getenv_fn ? getenv_fn(name) : std::getenv(name); };
  LaunchInfo info;
  // Open MPI's mpirun names size and rank; Slurm/MPICH PMI too; PMIx alone names only the rank.
  const std::array<std::pair<const char*, const char*>, 3> pairs = {
      {{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
       {"PMI_SIZE", "PMI_RANK"},
       {"PMIX_SIZE", "PMIX_RANK"}}};
  for (const auto& [size_var, rank_var] : pairs) {
    const int size = ParseCount(get(size_var));
    if (size < 1) continue;
    info.launched = true;
    info.size = size;
    info.rank = std::max(0, ParseCount(get(rank_var)));
    return info;
  }
  if (const int rank = ParseCount(get("PMIX_RANK")); rank >= 0) {
    info.launched = true;
    info.size = 0;  // unknown until MPI says
    info.rank = rank;
  }
  return info;
}

namespace {
std::unique_ptr<Communicator>& WorldHolder() {
  static std::unique_ptr<Communicator> world;
  return world;
}
}  // namespace

void FinalizeWorld() {
  WorldHolder().reset();
}

Result<Communicator*> World() {
  std::unique_ptr<Communicator>& world = WorldHolder();
  if (world) return world.get();
  const LaunchInfo launch = DetectLauncher();
  if (!launch.launched || launch.size == 1) {
    world = std::make_unique<SingleProcessCommunicator>();
    return world.get();
  }
#if defined(ESCALE_HAVE_MPI)
  ESCALE_ASSIGN_OR_RETURN(world, CreateMpiWorld());
  return world.get();
#else
  // Without MPI nothing can hold the other ranks until rank 0 has printed this; give it a moment
  // before the launcher, seeing a rank fail, kills the job.
  if (launch.rank != 0) std::this_thread::sleep_for(std::chrono::seconds(1));
  return Unsupported(
      "this escale was built without MPI but was started by an MPI launcher" +
      (launch.size > 1 ? " with " + std::to_string(launch.size) + " processes" : std::string()) +
      "; rebuild with -DESCALE_MPI=ON (needs libopenmpi-dev) or run one process without mpirun");
#endif
}

Status BroadcastString(Communicator& comm, std::string& s, int root) {
  if (comm.size() == 1) return Status::Ok();
  int64_t len = static_cast<int64_t>(s.size());
  ESCALE_RETURN_IF_ERROR(comm.Broadcast(std::as_writable_bytes(std::span<int64_t>(&len, 1)), root));
  s.resize(static_cast<size_t>(len));
  return comm.Broadcast(std::as_writable_bytes(std::span<char>(s.data(), s.size())), root);
}

Status BroadcastStatus(Communicator& comm, const Status& local, int root) {
  if (comm.size() == 1) return local;
  int64_t code = static_cast<int64_t>(local.code());
  ESCALE_RETURN_IF_ERROR(
      comm.Broadcast(std::as_writable_bytes(std::span<int64_t>(&code, 1)), root));
  if (code == 0) return Status::Ok();
  std::string message = comm.rank() == root ? local.message() : std::string();
  ESCALE_RETURN_IF_ERROR(BroadcastString(comm, message, root));
  if (root != 0) message = "rank " + std::to_string(root) + ": " + message;
  return Status(static_cast<ErrorCode>(code), message);
}

Status AgreeOnStatus(Communicator& comm, const Status& local) {
  if (comm.size() == 1) return local;
  // The maximum of -rank over the failing ranks (or -size) is minus the first failing rank.
  double v = local.ok() ? -static_cast<double>(comm.size()) : -static_cast<double>(comm.rank());
  ESCALE_RETURN_IF_ERROR(comm.AllReduceMax(std::span<double>(&v, 1)));
  const int first_failed = static_cast<int>(-v);
  if (first_failed >= comm.size()) return Status::Ok();
  return BroadcastStatus(comm, local, first_failed);
}

}  // namespace escale::dist
