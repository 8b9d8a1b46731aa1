// Text documents for tokenizer training and token shards. Inputs are files or directories
// (walked recursively, in sorted order so every run sees the same sequence). A file ending in
// .jsonl holds one JSON object per line whose "text" field is a document; any other file is one
// plain-text document.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale::tok {

struct SourceFile {
  std::string path;
  bool jsonl = false;
  uint64_t size = 0;
};

Result<std::vector<SourceFile>> ListSources(const std::vector<std::string>& inputs);

// Keeps only the JSONL documents whose field `key` equals `value` (a string field, or the JSON text
// of another scalar); documents without the field are dropped. Empty key: keep everything.
struct FieldFilter {
  std::string key, value;
  bool active() const { return !key.empty(); }
};
// Parses "KEY=VALUE" (e.g. lang=en); the error names `flag`.
Result<FieldFilter> ParseFieldFilter(const std::string& text, const std::string& flag);

// Streams one source's documents.
class DocumentReader {
 public:
  // A filter needs a JSONL source: plain-text files have no fields to test.
  static Result<DocumentReader> Open(const SourceFile& src, const FieldFilter& filter = {});
  DocumentReader(DocumentReader&& o) noexcept;
  DocumentReader& operator=(DocumentReader&&) = delete;
  DocumentReader(const DocumentReader&) = delete;
  ~DocumentReader();
  // Fills `doc`; false at the end of the source.
  Result<bool> Next(std::string& doc);
  // Bytes of the source consumed so far (for progress).
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  DocumentReader() = default;
  SourceFile src_;
  FieldFilter filter_;
  std::FILE* f_ = nullptr;
  bool done_ = false;
  uint64_t line_ = 0;
  uint64_t bytes_read_ = 0;
  std::string line_buf_;
};

}  // namespace escale::tok
