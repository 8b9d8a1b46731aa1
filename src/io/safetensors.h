// safetensors: a validating zero-copy reader and a streaming, sharding writer.
// Format rules: docs/formats.md (the file layout, and every rule the reader enforces).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "core/tensor.h"

namespace escale {

inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0;  // relative to the data section
  uint64_t end = 0;
};

// One .safetensors file, mmapped and validated on open. Tensors are views into the mapping.
class SafetensorsFile {
 public:
  static Result<SafetensorsFile> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // in offset order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* Find(const std::string& name) const;
  // A view of the tensor's bytes (copied into aligned storage only if the file leaves it unaligned).
  Result<Tensor> Get(const std::string& name) const;
  uint64_t data_offset() const { return data_offset_; }
  const std::shared_ptr<const MappedFile>& file() const { return file_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// Parse and validate a header alone (exposed for tests and the fuzz target).
Result<std::vector<SafetensorsEntry>> ParseSafetensorsHeader(
    const std::byte* data, size_t file_size, uint64_t* data_offset,
    std::map<std::string, std::string>* metadata);

// Writes a (possibly sharded) checkpoint tensor by tensor. The full list of names, dtypes and
// shapes is declared up front (the header precedes the data); the bytes then arrive one tensor
// at a time in declaration order, so memory holds one tensor, never the model. Files are written
// under temporary names and renamed by Finish(); without Finish() nothing appears.
class SafetensorsWriter {
 public:
  struct Options {
    uint64_t max_shard_bytes = 5'000'000'000;  // past this, model-0000i-of-0000n.safetensors + index
    std::string basename = "model";            // model.safetensors / model-...-of-...
    std::map<std::string, std::string> metadata;  // "format":"pt" is always added
  };
  static Result<SafetensorsWriter> Create(const std::string& dir,
                                          std::vector<SafetensorsEntry> declared, Options opt);
  SafetensorsWriter(SafetensorsWriter&&) noexcept;
  ~SafetensorsWriter();

  // Next tensor's bytes; must match the next declared entry's name and byte size.
  Status Write(const std::string& name, const void* bytes, size_t n);
  Status Finish();
  uint64_t total_bytes() const;

 private:
  SafetensorsWriter();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace escale
