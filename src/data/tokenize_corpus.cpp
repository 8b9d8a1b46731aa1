// `escale tokenize`: a reader thread streams documents in batches, worker threads encode them
// (one Encoder each), and the calling thread writes the results in input order, so the shards
// are byte-identical for any --workers. Everything is built in a staging directory whose
// manifest.json is written last; the directory is renamed into place only when complete.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/atomic_output.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/token_shards.h"
#include "tokenizer/documents.h"
#include "tokenizer/tokenizer.h"

namespace escale::tok {

namespace {

constexpr size_t kBatchBytes = 1 << 20;

struct Batch {
  uint64_t seq = 0;
  uint64_t first_doc = 0;
  std::vector<std::string> docs;
  uint64_t text_bytes = 0;  // document text
  uint64_t file_bytes = 0;  // input consumed (progress)
};

struct Encoded {
  std::vector<int32_t> train, val;
  uint64_t train_docs = 0, val_docs = 0, text_bytes = 0, file_bytes = 0;
  std::string error;  // the encoder's, with the document number: the run fails on it
};

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// One SplitMix64 step from state x: the increment, then core/rng.h's finaliser.
uint64_t SplitMix64(uint64_t x) {
  return Mix64(x + 0x9e3779b97f4a7c15ull);
}

// One split's shard sequence: rolls to a new file every `shard_tokens`.
class SplitWriter {
 public:
  SplitWriter(std::string dir, std::string split, int width, uint64_t shard_tokens)
      : dir_(std::move(dir)),
        split_(std::move(split)),
        width_(width),
        shard_tokens_(shard_tokens) {}

  Status Add(const std::vector<int32_t>& ids) {
    size_t off = 0;
    while (off < ids.size()) {
      if (!cur_) {
        char name[64];
        std::snprintf(name, sizeof name, "%s_%06zu.bin", split_.c_str(), shards_.size());
        ESCALE_ASSIGN_OR_RETURN(ShardWriter w, ShardWriter::Create(dir_ + "/" + name, width_));
        cur_ = std::make_unique<ShardWriter>(std::move(w));
        shards_.push_back({name, 0});
      }
      const uint64_t room = shard_tokens_ - cur_->tokens();
      const size_t n = static_cast<size_t>(std::min<uint64_t>(room, ids.size() - off));
      ESCALE_RETURN_IF_ERROR(cur_->Append(ids.data() + off, n));
      off += n;
      tokens_ += n;
      if (cur_->tokens() >= shard_tokens_) ESCALE_RETURN_IF_ERROR(Close());
    }
    return Status::Ok();
  }

  Status Close() {
    if (!cur_) return Status::Ok();
    shards_.back().second = cur_->tokens();
    ESCALE_RETURN_IF_ERROR(cur_->Commit());
    cur_.reset();
    return Status::Ok();
  }

  nlohmann::ordered_json Json(uint64_t documents) const {
    nlohmann::ordered_json shards = nlohmann::ordered_json::array();
    for (const auto& [name, n] : shards_) shards.push_back({{"file", name}, {"tokens", n}});
    return {{"documents", documents}, {"tokens", tokens_}, {"shards", shards}};
  }
  uint64_t tokens() const { return tokens_; }

 private:
  std::string dir_, split_;
  int width_;
  uint64_t shard_tokens_;
  std::unique_ptr<ShardWriter> cur_;
  std::vector<std::pair<std::string, uint64_t>> shards_;
  uint64_t tokens_ = 0;
};

struct Pipeline {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Batch> todo;
  std::map<uint64_t, Encoded> done;
  bool reader_finished = false;
  bool stop = false;
  uint64_t batches_total = 0;  // valid once reader_finished
  Status reader_status;
  size_t max_in_flight = 4;
};

}  // namespace

bool IsValidationDocument(uint64_t seed, uint64_t index, double val_fraction) {
  if (val_fraction <= 0) return false;
  if (val_fraction >= 1) return true;
  const uint64_t h = SplitMix64(SplitMix64(seed) ^ index);
  return static_cast<double>(h >> 11) * 0x1.0p-53 < val_fraction;
}

namespace {

// The token prefixed to every document (llm.c: BOS for Llama 3, <|endoftext|> for GPT-2), and
// its name.
Result<std::pair<int32_t, std::string>> ChooseDelimiter(const TokenizeOptions& opts,
                                                        const Tokenizer& tokenizer) {
  const Tokenizer* tok = &tokenizer;
  std::optional<int32_t> delim;
  std::string delim_name = opts.delimiter;
  if (!delim_name.empty()) {
    delim = tok->TokenToId(delim_name);
    if (!delim)
      return InvalidArgument("--delimiter " + delim_name + " is not a token of " +
                             opts.tokenizer_path);
  } else if (tok->bos_id()) {
    delim = tok->bos_id();
  } else if (auto e = tok->TokenToId("<|endoftext|>")) {
    delim = e;
  } else {
    delim = tok->eos_id();
  }
  if (!delim) {
    return InvalidArgument(opts.tokenizer_path +
                           " names no BOS, <|endoftext|> or EOS token to separate documents; "
                           "pass --delimiter TOKEN");
  }
  delim_name = tok->IdToToken(*delim);

  return std::make_pair(*delim, delim_name);
}

// The reader thread: documents of every source, in order, in batches of about kBatchBytes.
// source_docs counts the documents of each source.
void ReadBatches(Pipeline& pl, const std::vector<SourceFile>& sources, const FieldFilter& filter,
                 std::vector<uint64_t>& source_docs) {
  Batch batch;
  uint64_t seq = 0, doc_index = 0, consumed = 0;
  auto flush = [&]() -> bool {
    std::unique_lock<std::mutex> lk(pl.mu);
    pl.cv.wait(lk, [&] { return pl.stop || pl.todo.size() + pl.done.size() < pl.max_in_flight; });
    if (pl.stop) return false;
    batch.seq = seq++;
    pl.todo.push_back(std::move(batch));
    batch = Batch();
    batch.first_doc = doc_index;
    pl.cv.notify_all();
    return true;
  };
  Status st;
  std::string doc;
  for (size_t si = 0; si < sources.size() && st.ok(); ++si) {
    auto r = DocumentReader::Open(sources[si], filter);
    if (!r.ok()) {
      st = r.status();
      break;
    }
    while (true) {
      auto more = r->Next(doc);
      if (!more.ok()) {
        st = more.status();
        break;
      }
      if (!*more) break;
      batch.text_bytes += doc.size();
      batch.file_bytes = consumed + r->bytes_read();
      batch.docs.push_back(std::move(doc));
      doc = std::string();
      ++doc_index;
      ++source_docs[si];
      if (batch.text_bytes >= kBatchBytes && !flush()) return;
    }
    consumed += sources[si].size;
    batch.file_bytes = consumed;
  }
  if (st.ok() && !batch.docs.empty() && !flush()) return;
  std::lock_guard<std::mutex> lk(pl.mu);
  pl.reader_status = st;
  pl.reader_finished = true;
  pl.batches_total = seq;
  pl.cv.notify_all();
}

// A worker thread: encodes batches into each document's split until the reader is done.
void EncodeBatches(Pipeline& pl, const Tokenizer& tokenizer, const TokenizeOptions& opts,
                   int32_t delim, const EncodeOptions& enc_opts) {
  Encoder enc(tokenizer);
  while (true) {
    Batch b;
    {
      std::unique_lock<std::mutex> lk(pl.mu);
      pl.cv.wait(lk, [&] { return pl.stop || !pl.todo.empty() || pl.reader_finished; });
      if (pl.stop || (pl.todo.empty() && pl.reader_finished)) return;
      b = std::move(pl.todo.front());
      pl.todo.pop_front();
    }
    Encoded e;
    e.text_bytes = b.text_bytes;
    e.file_bytes = b.file_bytes;
    for (size_t i = 0; i < b.docs.size(); ++i) {
      const bool is_val = IsValidationDocument(opts.seed, b.first_doc + i, opts.val_fraction);
      auto& out = is_val ? e.val : e.train;
      out.push_back(delim);
      enc.Encode(b.docs[i], enc_opts, out);
      ++(is_val ? e.val_docs : e.train_docs);
      if (!enc.error().empty() && e.error.empty())
        e.error = "document " + std::to_string(b.first_doc + i + 1) + ": " + enc.error();
    }
    std::lock_guard<std::mutex> lk(pl.mu);
    pl.done.emplace(b.seq, std::move(e));
    pl.cv.notify_all();
  }
}

struct WrittenCounts {
  uint64_t train_docs = 0, val_docs = 0, text_bytes = 0;
};

// On the calling thread: the encoded batches appended to the splits in document order.
Status WriteInOrder(Pipeline& pl, SplitWriter& train, SplitWriter& val, Progress& progress,
                    WrittenCounts& counts) {
  Status write_status;
  for (uint64_t next = 0;; ++next) {
    Encoded e;
    {
      std::unique_lock<std::mutex> lk(pl.mu);
      pl.cv.wait(lk, [&] {
        return pl.done.count(next) != 0 || (pl.reader_finished && next >= pl.batches_total);
      });
      if (pl.done.count(next) == 0) break;
      e = std::move(pl.done[next]);
      pl.done.erase(next);
      pl.cv.notify_all();
    }
    if (!e.error.empty()) {
      write_status = FormatError(e.error);
      break;
    }
    write_status = train.Add(e.train);
    if (write_status.ok()) write_status = val.Add(e.val);
    if (!write_status.ok()) break;
    counts.train_docs += e.train_docs;
    counts.val_docs += e.val_docs;
    counts.text_bytes += e.text_bytes;
    progress.Update(e.file_bytes);
  }
  return write_status;
}

}  // namespace

Result<TokenizeSummary> TokenizeToShards(const TokenizeOptions& opts) {
  if (opts.val_fraction < 0 || opts.val_fraction > 1)
    return InvalidArgument("--val-fraction must be in [0, 1]");
  if (opts.workers < 1) return InvalidArgument("--workers must be at least 1");
  if (opts.shard_tokens < 1 || opts.shard_tokens > 2147483647ull) {
    return InvalidArgument("--shard-tokens must be in [1, 2^31-1] (llm.c's int32 header)");
  }
  ESCALE_ASSIGN_OR_RETURN(auto tok, Tokenizer::FromFile(opts.tokenizer_path));
  ESCALE_ASSIGN_OR_RETURN(auto sources, ListSources(opts.inputs));
  FieldFilter filter;
  if (!opts.jsonl_filter.empty()) {
    ESCALE_ASSIGN_OR_RETURN(filter, ParseFieldFilter(opts.jsonl_filter, "--jsonl-filter"));
    for (const auto& s : sources)
      if (!s.jsonl)
        return InvalidArgument("--jsonl-filter selects JSONL documents by a field, but " + s.path +
                               " is plain text; give only .jsonl inputs");
  }

  ESCALE_ASSIGN_OR_RETURN(const auto chosen, ChooseDelimiter(opts, *tok));
  const int32_t delim = chosen.first;
  const std::string& delim_name = chosen.second;
  std::vector<std::string> inputs = opts.inputs;
  inputs.push_back(opts.tokenizer_path);
  ESCALE_ASSIGN_OR_RETURN(StagingDir staging,
                          StagingDir::Create(opts.output_dir, opts.overwrite, inputs));
  const int width = ShardTokenBytes(tok->vocab_size());
  SplitWriter train(staging.path(), "train", width, opts.shard_tokens);
  SplitWriter val(staging.path(), "val", width, opts.shard_tokens);

  uint64_t total_bytes = 0;
  for (const auto& s : sources) total_bytes += s.size;
  std::vector<uint64_t> source_docs(sources.size(), 0);

  Pipeline pl;
  pl.max_in_flight = static_cast<size_t>(opts.workers) * 2 + 2;
  EncodeOptions enc_opts;
  enc_opts.parse_special =
      false;  // text is text: "<|eot_id|>" in a document is not a control token
  enc_opts.add_special_tokens = false;

  const double cpu_start = ProcessCpuSeconds();
  std::thread reader([&] { ReadBatches(pl, sources, filter, source_docs); });
  std::vector<std::thread> workers;
  for (int w = 0; w < opts.workers; ++w)
    workers.emplace_back([&] { EncodeBatches(pl, *tok, opts, delim, enc_opts); });

  // Write results in order on this thread.
  Progress progress("tokenizing", total_bytes, "B", opts.progress);
  WrittenCounts counts;
  const Status write_status = WriteInOrder(pl, train, val, progress, counts);
  {
    std::lock_guard<std::mutex> lk(pl.mu);
    pl.stop = true;
    pl.cv.notify_all();
  }
  reader.join();
  for (auto& t : workers) t.join();
  ESCALE_RETURN_IF_ERROR(write_status);
  ESCALE_RETURN_IF_ERROR(pl.reader_status);
  ESCALE_RETURN_IF_ERROR(train.Close());
  ESCALE_RETURN_IF_ERROR(val.Close());
  progress.Update(total_bytes);
  progress.Finish();

  TokenizeSummary sum;
  sum.bytes = counts.text_bytes;
  sum.documents = counts.train_docs + counts.val_docs;
  sum.tokens = train.tokens() + val.tokens();
  sum.seconds = progress.elapsed_seconds();
  sum.cpu_seconds = ProcessCpuSeconds() - cpu_start;

  nlohmann::ordered_json m;
  m["format"] = "llm.c token shards";
  m["magic"] = width == 2 ? kShardMagicU16 : kShardMagicU32;
  m["version"] = width == 2 ? kShardVersionU16 : kShardVersionU32;
  m["token_bytes"] = width;
  m["tokenizer"] = {{"path", std::filesystem::absolute(opts.tokenizer_path).string()},
                    {"sha256", tok->sha256()},
                    {"vocab_size", tok->vocab_size()}};
  m["delimiter"] = {{"token", delim_name}, {"id", delim}, {"position", "before each document"}};
  m["special_tokens_in_text"] = "not parsed (encoded as plain text)";
  m["seed"] = opts.seed;
  m["val_fraction"] = opts.val_fraction;
  if (filter.active()) m["jsonl_filter"] = {{"key", filter.key}, {"value", filter.value}};
  nlohmann::ordered_json src = nlohmann::ordered_json::array();
  for (size_t i = 0; i < sources.size(); ++i) {
    src.push_back({{"path", sources[i].path},
                   {"format", sources[i].jsonl ? "jsonl" : "text"},
                   {"bytes", sources[i].size},
                   {"documents", source_docs[i]}});
  }
  m["sources"] = src;
  m["documents"] = sum.documents;
  m["tokens"] = sum.tokens;
  m["splits"] = {{"train", train.Json(counts.train_docs)}, {"val", val.Json(counts.val_docs)}};
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(staging.path() + "/manifest.json", m.dump(1) + "\n"));
  ESCALE_RETURN_IF_ERROR(staging.Commit());
  return sum;
}

}  // namespace escale::tok
