// Named model shapes: the benchmark presets of docs/benchmarks.md and the demo's models.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "model/config.h"

namespace escale {

struct ModelPreset {
  std::string name;
  std::string description;
  ModelConfig config;
};

const std::vector<ModelPreset>& ModelPresets();
Result<ModelConfig> FindModelPreset(const std::string& name);

}  // namespace escale
