// The safetensors reader and a model directory's index. The first byte picks what the rest is:
// even, a .safetensors file (opened, every tensor read); odd, model.safetensors.index.json beside a
// valid config.json and shard (the whole model read).
#include <cstring>

#include "fuzz_input.h"
#include "io/hf_model.h"
#include "io/safetensors.h"

namespace {

// A two-tensor fp32 shard for the index mode: a.weight [2] and b.weight [1].
std::string SmallShard() {
  const std::string header =
      R"({"a.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b.weight":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out += header;
  out += std::string(12, '\0');
  return out;
}

constexpr const char* kConfig =
    R"({"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":8,"hidden_size":4,)"
    R"("intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,)"
    R"("head_dim":2,"rms_norm_eps":1e-6,"max_position_embeddings":16})";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string dir = escale::fuzz::FreshDir("st");
  if ((data[0] & 1) == 0) {
    const std::string path = dir + "/model.safetensors";
    escale::fuzz::WriteBytes(path, data + 1, size - 1);
    auto f = escale::SafetensorsFile::Open(path);
    if (f.ok())
      for (const auto& e : f->entries()) (void)f->Get(e.name);
    return 0;
  }
  escale::fuzz::WriteText(dir + "/config.json", kConfig);
  escale::fuzz::WriteText(dir + "/model-00001-of-00001.safetensors", SmallShard());
  escale::fuzz::WriteBytes(dir + "/model.safetensors.index.json", data + 1, size - 1);
  (void)escale::ReadHfModel(dir);
  return 0;
}
