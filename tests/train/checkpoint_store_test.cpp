// Checkpoints appear whole or not at all; resume picks the newest complete one.
#include <gtest/gtest.h>

#include <filesystem>

#include "support/test_support.h"
#include "train/checkpoint_store.h"

namespace escale {
namespace {
namespace fs = std::filesystem;

Status WriteCkpt(const std::string& run, int64_t step, int64_t keep) {
  ESCALE_ASSIGN_OR_RETURN(CheckpointWriter w, CheckpointWriter::Begin(run, step));
  testing::WriteFile(w.dir() + "/weights.bin", std::string(100 + step, 'x'));
  fs::create_directories(w.dir() + "/model");
  testing::WriteFile(w.dir() + "/model/config.json", "{}");
  return w.Commit({{"loss", 1.5}}, keep);
}

TEST(CheckpointStore, CommitThenFindLatestAndPrune) {
  testing::TempDir run;
  EXPECT_FALSE(FindResumableCheckpoint(run.path()).value().has_value());
  for (int64_t s : {10, 20, 30}) ASSERT_TRUE(WriteCkpt(run.path(), s, 2).ok());
  auto all = ListCheckpoints(run.path());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].step, 20);
  auto found = FindResumableCheckpoint(run.path());
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->step, 30);
  EXPECT_EQ((*found)->manifest["files"]["weights.bin"], 130);
  EXPECT_EQ((*found)->manifest["info"]["loss"], 1.5);
}

TEST(CheckpointStore, UncommittedWriterLeavesNothing) {
  testing::TempDir run;
  ASSERT_TRUE(WriteCkpt(run.path(), 5, 0).ok());
  {
    auto w = CheckpointWriter::Begin(run.path(), 6);
    ASSERT_TRUE(w.ok());
    testing::WriteFile(w->dir() + "/weights.bin", "partial");
  }  // destroyed without Commit: as if the process died (its temp dir is also removed)
  EXPECT_EQ(FindResumableCheckpoint(run.path()).value()->step, 5);
}

TEST(CheckpointStore, DamagedOrStaleCheckpointsAreNotResumed) {
  testing::TempDir run;
  ASSERT_TRUE(WriteCkpt(run.path(), 1, 0).ok());
  ASSERT_TRUE(WriteCkpt(run.path(), 2, 0).ok());
  const std::string cdir = CheckpointsDir(run.path());
  // A kill during writing leaves a temporary directory: ignored and removed.
  fs::create_directories(cdir + "/step-00000003.tmp-1-0");
  // Truncated file in the newest checkpoint: it no longer verifies, resume falls back.
  testing::WriteFile(cdir + "/step-00000002/weights.bin", "short");
  auto found = FindResumableCheckpoint(run.path());
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->step, 1);
  EXPECT_FALSE(fs::exists(cdir + "/step-00000003.tmp-1-0"));
  EXPECT_FALSE(VerifyCheckpoint(cdir + "/step-00000002").ok());
  // A manifest that is not ours.
  testing::WriteFile(cdir + "/step-00000001/manifest.json", "{\"format\": 1}");
  EXPECT_FALSE(FindResumableCheckpoint(run.path()).value().has_value());
}

}  // namespace
}  // namespace escale
