// tokenizer.json: loaded, and when accepted used to encode and decode a fixed mixed-script text
// (and the input itself), as tokenize and generate do.
#include <string>

#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto t = escale::tok::Tokenizer::FromJson(text);
  if (!t.ok()) return 0;
  for (const std::string& s :
       {std::string("Hello, world! 12345 <|endoftext|>\n\t  你好，世界。 é\xff"),
        text.substr(0, 256)}) {
    auto ids = (*t)->TryEncode(s);
    if (ids.ok()) (void)(*t)->Decode(*ids);
  }
  return 0;
}
