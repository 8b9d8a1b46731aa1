// Hugging Face model directory -> one GGUF file that llama.cpp loads as is: llama.cpp's tensor
// names and metadata keys, the Q/K row permutation its `llama` architecture needs, and the
// byte-level BPE vocabulary from tokenizer.json.
#pragma once

#include <string>

#include "core/status.h"
#include "io/gguf.h"

namespace escale::gguf {

struct ExportOptions {
  TensorType type = TensorType::kF32;  // matrices; norms, biases and routers stay f32
  bool overwrite = false;
  bool progress = true;
};

// "f32", "f16", "bf16", "q8_0".
Result<TensorType> ParseExportType(const std::string& s);

// Streams the model in `src_dir` into `out_path` one tensor at a time (memory: one tensor, or one
// layer's experts of one projection); the file appears only when complete. Returns a one-line
// summary (architecture, tensors, bytes, tokenizer pre-type).
Result<std::string> ExportGguf(const std::string& src_dir, const std::string& out_path,
                               const ExportOptions& opt);

}  // namespace escale::gguf
