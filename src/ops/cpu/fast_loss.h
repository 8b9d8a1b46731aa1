// Cross-entropy fused with the LM head's softmax, plus the output z-losses (docs/method.md §4), on
// one logits buffer that is overwritten in place with d(loss)/d(logits): no [T, V] probability
// copy.
#pragma once

#include <cstdint>

namespace escale::ops::fast {

struct OutputLossValues {
  double ce = 0, output_z = 0, output_max_z = 0;  // means over counted rows (target >= 0)
  int64_t counted = 0;
};

struct OutputLossGrad {
  bool write = false;       // false: leave the logits untouched (evaluation)
  double scale = 1.0;       // multiplies every gradient (gradient accumulation)
  double output_z = 0.0;    // coefficients of the z-losses
  double output_max_z = 0.0;
};

// logits [rows, V]; targets [rows] (< 0: not counted, row gradient 0). row_scratch: 3*rows
// doubles. With g.write, logits become scale·d(CE + cz·Lz + cmz·Lmaxz)/d(logits).
OutputLossValues OutputLossForwardBackward(float* logits, int64_t rows, int64_t V, const int32_t* targets,
                                           const OutputLossGrad& g, double* row_scratch);

}  // namespace escale::ops::fast
