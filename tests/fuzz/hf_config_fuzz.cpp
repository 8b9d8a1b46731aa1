// config.json: parsed, validated, and when accepted written back and parsed again (what convert and
// scale-out do), which must accept its own output.
#include <cstdlib>
#include <string>

#include "core/json_text.h"
#include "io/hf_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto j = escale::ParseJsonText(text, "config.json");
  if (!j.ok()) return 0;
  auto c = escale::ParseHfConfig(*j);
  if (!c.ok()) return 0;
  auto back = escale::HfConfigToJson(*c);
  if (!back.ok()) return 0;
  if (!escale::ParseHfConfig(*back).ok()) std::abort();  // our own output must read back
  return 0;
}
