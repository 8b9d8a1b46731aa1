// Token shards and their manifest. The first byte picks what the rest is: even, a shard file beside
// a valid manifest (listed, opened with a vocabulary bound, every token read); odd, manifest.json
// beside a valid shard.
#include <string>

#include "data/token_shards.h"
#include "fuzz_input.h"

namespace {

constexpr const char* kManifest = R"({"format":"llm.c token shards","tokenizer":{"sha256":"00"}})";

// A valid shard of 8 uint16 tokens, written by the real writer.
void WriteSmallShard(const std::string& path) {
  auto w = escale::tok::ShardWriter::Create(path, 2);
  if (!w.ok()) return;
  const int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 0};
  if (w->Append(ids, 8).ok()) (void)w->Commit();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string dir = escale::fuzz::FreshDir("shards");
  if ((data[0] & 1) == 0) {
    escale::fuzz::WriteText(dir + "/manifest.json", kManifest);
    escale::fuzz::WriteBytes(dir + "/train_000000.bin", data + 1, size - 1);
  } else {
    escale::fuzz::WriteBytes(dir + "/manifest.json", data + 1, size - 1);
    WriteSmallShard(dir + "/train_000000.bin");
  }
  (void)escale::tok::CheckShardManifest(dir, "");
  auto files = escale::tok::ListShardFiles(dir, "train");
  if (!files.ok()) return 0;
  for (const std::string& f : *files) {
    auto s = escale::tok::TokenShard::Open(f, 512);
    if (!s.ok()) continue;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < s->size(); ++i) sum += (*s)[i];
    (void)sum;
  }
  return 0;
}
