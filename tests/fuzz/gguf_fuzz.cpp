// GGUF files: parsed from memory with the default limits, every tensor's range checked.
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)escale::gguf::Parse(reinterpret_cast<const std::byte*>(data), size);
  return 0;
}
