// Weighted blends of token-shard sources (e.g. English 0.7, Chinese 0.3).
//
// Each source is a DataLoader with its own shuffled windows and its own (epoch, position) cursor.
// Which source serves the next window is decided without randomness, by the greedy rule Megatron
// uses for its blended datasets: after n windows, serve the source with the largest deficit
// weight * (n + 1) - served, ties to the first listed. Every source then stays within one window
// of its exact share at every point of the run, and the choice depends only on the counts served,
// which the per-source cursors already determine: resume needs nothing beyond those cursors.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "data/loader.h"

namespace escale {

struct BlendEntry {
  std::string name;
  double weight = 0;  // normalised: the weights of a spec sum to 1
  std::string dir;
};

// Parses "NAME=WEIGHT:DIR NAME=WEIGHT:DIR ..." (entries separated by white space). Weights must be
// positive and finite; they are normalised to sum to 1, so "en=7:A zh=3:B" means 0.7 / 0.3. Names
// are letters, digits, '_', '-' or '.', and unique. Errors name the bad entry and the form.
Result<std::vector<BlendEntry>> ParseDataBlend(const std::string& spec);

struct BlendSource {
  std::string name;
  double weight = 1;  // normalised
  DataLoader loader;
};

class DataBlend {
 public:
  // At least one source; weights must be positive (they are renormalised here too).
  static Result<DataBlend> Create(std::vector<BlendSource> sources);
  // Fills micro_batch windows (each from the source the rule picks) and advances the cursors.
  Status Next(std::span<int32_t> tokens, std::span<int32_t> targets);
  // The source that serves the next window.
  size_t Pick() const;

  size_t size() const { return sources_.size(); }
  const std::string& name(size_t i) const { return sources_[i].name; }
  double weight(size_t i) const { return sources_[i].weight; }
  const DataLoader& loader(size_t i) const { return sources_[i].loader; }
  int64_t served(size_t i) const { return sources_[i].loader.served(); }  // windows
  int64_t served_total() const;
  // Epochs of source i served so far (windows served / windows in the source).
  double epochs(size_t i) const;
  std::vector<DataCursor> cursors() const;
  Status Restore(const std::vector<DataCursor>& cursors);

 private:
  std::vector<BlendSource> sources_;
  int64_t seq_len_ = 0, micro_batch_ = 0;
};

}  // namespace escale
