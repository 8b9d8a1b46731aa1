#include "dist/communicator.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace escale::dist {
namespace {

std::function<const char*(const char*)> EnvOf(const std::map<std::string, std::string>& env) {
  return [env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
}

TEST(SingleProcessCommunicator, CollectivesLeaveTheDataAsItWas) {
  SingleProcessCommunicator c;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.local_rank(), 0);
  EXPECT_EQ(c.local_size(), 1);
  std::vector<float> f = {1.5f, -2.0f, 3.25f};
  std::vector<double> d = {0.1, 7.0};
  std::vector<std::byte> b = {std::byte{1}, std::byte{2}};
  ASSERT_TRUE(c.AllReduceSum(std::span<float>(f)).ok());
  ASSERT_TRUE(c.AllReduceSum(std::span<double>(d)).ok());
  ASSERT_TRUE(c.AllReduceMax(std::span<double>(d)).ok());
  ASSERT_TRUE(c.Broadcast(std::span<std::byte>(b), 0).ok());
  ASSERT_TRUE(c.Barrier().ok());
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f, 3.25f}));
  EXPECT_EQ(d, (std::vector<double>{0.1, 7.0}));
  EXPECT_EQ(b, (std::vector<std::byte>{std::byte{1}, std::byte{2}}));
}

TEST(SingleProcessCommunicator, AgreementReturnsTheLocalStatus) {
  SingleProcessCommunicator c;
  EXPECT_TRUE(AgreeOnStatus(c, Status::Ok()).ok());
  const Status bad = AgreeOnStatus(c, NotFound("no shards in /x"));
  EXPECT_EQ(bad.code(), ErrorCode::kNotFound);
  EXPECT_EQ(bad.message(), "no shards in /x");
  EXPECT_EQ(BroadcastStatus(c, IoError("disk full"), 0).message(), "disk full");
  std::string s = "unchanged";
  ASSERT_TRUE(BroadcastString(c, s, 0).ok());
  EXPECT_EQ(s, "unchanged");
}

TEST(SingleProcessCommunicator, ShardedCollectivesSeeOneShardOfEverything) {
  SingleProcessCommunicator c;
  std::vector<float> grad = {1, 2, 3, 4};
  const std::vector<int> counts = {4}, displs = {0};
  ASSERT_TRUE(c.ReduceScatterSum(grad, counts).ok());
  EXPECT_EQ(grad, (std::vector<float>{1, 2, 3, 4}));  // one rank's sum is its own gradient
  std::vector<float> weights = {5, 6, 7, 8};
  ASSERT_TRUE(c.AllGather(weights, counts, displs).ok());
  EXPECT_EQ(weights, (std::vector<float>{5, 6, 7, 8}));
  std::vector<float> full(4, 0.0f);
  ASSERT_TRUE(c.Gather(weights, full, counts, displs, 0).ok());
  EXPECT_EQ(full, weights);
}

TEST(DetectLauncher, ReadsOpenMpiPmiAndPmix) {
  const LaunchInfo none = DetectLauncher(EnvOf({}));
  EXPECT_FALSE(none.launched);
  EXPECT_EQ(none.size, 1);

  const LaunchInfo ompi =
      DetectLauncher(EnvOf({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "3"}}));
  EXPECT_TRUE(ompi.launched);
  EXPECT_EQ(ompi.size, 4);
  EXPECT_EQ(ompi.rank, 3);

  const LaunchInfo pmi = DetectLauncher(EnvOf({{"PMI_SIZE", "2"}, {"PMI_RANK", "1"}}));
  EXPECT_TRUE(pmi.launched);
  EXPECT_EQ(pmi.size, 2);
  EXPECT_EQ(pmi.rank, 1);

  const LaunchInfo pmix = DetectLauncher(EnvOf({{"PMIX_RANK", "5"}}));
  EXPECT_TRUE(pmix.launched);
  EXPECT_EQ(pmix.size, 0);  // unknown until MPI says
  EXPECT_EQ(pmix.rank, 5);

  EXPECT_FALSE(DetectLauncher(EnvOf({{"OMPI_COMM_WORLD_SIZE", "two"}})).launched);
}

TEST(World, WithoutALauncherIsOneProcess) {
  // The test runs without mpirun (ctest starts it directly).
  if (DetectLauncher().launched) GTEST_SKIP() << "started by an MPI launcher";
  Result<Communicator*> w = World();
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ((*w)->size(), 1);
  EXPECT_EQ((*w)->name(), "single process");
  Result<Communicator*> again = World();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *w);  // one world per process
  FinalizeWorld();
}

}  // namespace
}  // namespace escale::dist
