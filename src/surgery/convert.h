// The file-level scale-up and scale-out: plan from config.json alone (so --dry-run reads no
// weights), then stream the target checkpoint tensor by tensor through io/hf_model.h.
#pragma once

#include <optional>
#include <string>

#include "core/dtype.h"
#include "core/status.h"
#include "io/optimizer_moments.h"
#include "surgery/scale_out.h"
#include "surgery/scale_up.h"

namespace escale::surgery {

struct ConvertOptions {
  std::optional<DType> dtype;  // default: the source checkpoint's dtype
  bool dry_run = false;
  bool overwrite = false;
  bool progress = true;
  // The source checkpoint's AdamW moments: mapped through the plan and written into the output
  // as kMomentsFile (scale-up / scale-out --carry-moments).
  const MomentMap* moments = nullptr;
};

// Returns the plan description (printed by the CLI); writes `dst` unless dry_run.
Result<std::string> ScaleUpModel(const std::string& src, const std::string& dst, const ScaleUpOptions& opt,
                                 const ConvertOptions& conv);
Result<std::string> ScaleOutModel(const std::string& src, const std::string& dst, const ScaleOutOptions& opt,
                                  const ConvertOptions& conv);

// "f32", "bf16", "f16", "f64" (also "float32", "bfloat16", "float16").
Result<DType> ParseOutputDType(const std::string& s);

}  // namespace escale::surgery
