// Checkpoint directories of a training run that never expose a partial checkpoint:
//
//   RUN_DIR/checkpoints/step-00000100/...      complete checkpoints only (renamed into place)
//   RUN_DIR/checkpoints/step-00000100.tmp-*/    a checkpoint being written (removed on restart)
//   RUN_DIR/checkpoints/latest                  "step-00000100", replaced atomically after the rename
//
// Inside a checkpoint, manifest.json is written last and lists every file with its size; a
// directory without a valid manifest is never resumed from.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/atomic_output.h"
#include "core/status.h"
#include "io/optimizer_moments.h"

namespace escale {

std::string CheckpointName(int64_t step);  // "step-00000100"
std::string CheckpointsDir(const std::string& run_dir);

class CheckpointWriter {
 public:
  // Starts the checkpoint for `step` (an existing complete one for that step is replaced).
  static Result<CheckpointWriter> Begin(const std::string& run_dir, int64_t step);
  // Where the caller writes this checkpoint's files (they are fsynced by Commit).
  const std::string& dir() const { return staging_.path(); }
  // Writes manifest.json (files, sizes, `info`), renames the directory into place, points
  // `latest` at it and removes complete checkpoints beyond the newest `keep_last` (0 keeps all);
  // checkpoints of the steps in `keep_steps` are never removed and do not count against it.
  Status Commit(const nlohmann::json& info, int64_t keep_last,
                const std::set<int64_t>& keep_steps = {});

 private:
  CheckpointWriter(std::string run_dir, int64_t step, StagingDir staging)
      : run_dir_(std::move(run_dir)), step_(step), staging_(std::move(staging)) {}
  std::string run_dir_;
  int64_t step_;
  StagingDir staging_;
};

struct CheckpointInfo {
  std::string path;
  int64_t step = 0;
  nlohmann::json manifest;
};

// Checks that `dir` holds a manifest whose files all exist with the listed sizes.
Result<CheckpointInfo> VerifyCheckpoint(const std::string& dir);
// The checkpoint to resume from: the one `latest` names if it verifies, else the newest complete
// checkpoint; nullopt when there is none. Stale temporaries are removed on the way.
Result<std::optional<CheckpointInfo>> FindResumableCheckpoint(const std::string& run_dir);
// Complete checkpoints, oldest first.
std::vector<CheckpointInfo> ListCheckpoints(const std::string& run_dir);

// The AdamW moments a checkpoint holds (optimizer.safetensors), each with the updates behind it
// (trainer_state.json), for scale-up and scale-out --carry-moments. `model_dir` is the checkpoint's
// model (RUN/checkpoints/step-N/model); anything else is refused with what to pass instead.
Result<MomentMap> ReadCheckpointMoments(const std::string& model_dir);

}  // namespace escale
