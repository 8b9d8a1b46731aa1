// GGUF v3 (the llama.cpp / ggml model file): a strict reader that checks every count, length,
// offset and size before use, and a writer that streams tensor data after a header computed up
// front. Layout: magic "GGUF", u32 version, u64 tensor count, u64 key/value count, the key/values,
// the tensor infos, padding to general.alignment, then the tensor data (each tensor at an aligned
// offset from the start of the data section). Dimensions are in ggml order: ne[0] is the
// innermost (contiguous) one, so a row-major [rows, cols] matrix has ne = {cols, rows}.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/atomic_output.h"
#include "core/mapped_file.h"
#include "core/status.h"

namespace escale::gguf {

enum class ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
std::string_view ValueTypeName(ValueType t);

// The ggml tensor types escale writes (ggml numbers them; others are read as "unsupported").
enum class TensorType : uint32_t { kF32 = 0, kF16 = 1, kQ8_0 = 8, kBF16 = 30 };
std::string_view TensorTypeName(TensorType t);
// Elements per block and bytes per block (q8_0: 32 values, an fp16 scale and 32 int8).
int64_t BlockSize(TensorType t);
int64_t BlockBytes(TensorType t);

// One metadata value. Scalars use the field of their kind (u for unsigned and bool, i for signed,
// f for floats, s for strings); arrays hold scalars or strings of one element type (no nesting).
struct Value {
  ValueType type = ValueType::kU32;
  ValueType elem = ValueType::kU8;  // arrays only
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<Value> arr;

  static Value U32(uint32_t v) {
    Value x;
    x.type = ValueType::kU32;
    x.u = v;
    return x;
  }
  static Value I32(int32_t v) {
    Value x;
    x.type = ValueType::kI32;
    x.i = v;
    return x;
  }
  static Value U64(uint64_t v) {
    Value x;
    x.type = ValueType::kU64;
    x.u = v;
    return x;
  }
  static Value F32(float v) {
    Value x;
    x.type = ValueType::kF32;
    x.f = v;
    return x;
  }
  static Value Bool(bool v) {
    Value x;
    x.type = ValueType::kBool;
    x.u = v ? 1 : 0;
    return x;
  }
  static Value Str(std::string v) {
    Value x;
    x.type = ValueType::kString;
    x.s = std::move(v);
    return x;
  }
  static Value Array(ValueType elem, std::vector<Value> items) {
    Value x;
    x.type = ValueType::kArray;
    x.elem = elem;
    x.arr = std::move(items);
    return x;
  }
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // ggml order, innermost first
  TensorType type = TensorType::kF32;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t nbytes = 0;
};

// Byte count of a tensor of `type` with dims `ne`; fails on overflow or when ne[0] is not a
// multiple of the block size.
Result<uint64_t> TensorBytes(TensorType type, const std::vector<uint64_t>& ne);

// Limits the reader enforces (well above any real model, far below what would exhaust memory).
struct Limits {
  uint64_t max_string = 1u << 24;
  uint64_t max_array = 1u << 26;
  uint64_t max_kv = 1u << 16;
  uint64_t max_tensors = 1u << 20;
  uint32_t max_dims = 4;  // GGML_MAX_DIMS
};

struct File {
  uint32_t version = 3;
  uint32_t alignment = 32;
  std::vector<std::pair<std::string, Value>> kv;  // file order, keys unique
  std::vector<TensorInfo> tensors;                // file order, names unique
  uint64_t data_offset = 0;                       // absolute offset of the data section
  std::shared_ptr<const MappedFile> mapping;      // set by ReadFile

  const Value* Find(const std::string& key) const;
  const TensorInfo* FindTensor(const std::string& name) const;
  // The tensor's bytes inside the mapping (ReadFile only).
  const std::byte* TensorData(const TensorInfo& t) const;
};

// Parses a whole GGUF image held in memory (`size` bytes). Every failure is a one-line Status.
Result<File> Parse(const std::byte* data, size_t size, const Limits& limits = {});
Result<File> ReadFile(const std::string& path, const Limits& limits = {});

// Writes a GGUF file: add every key/value and tensor info first, then Begin() writes the header
// and each WriteTensorData() call (in AddTensor order) writes one tensor's bytes and its padding;
// Commit() renames the file into place. Nothing is visible under `path` before Commit().
class Writer {
 public:
  explicit Writer(uint32_t alignment = 32) : alignment_(alignment) {}
  void Add(std::string key, Value v) { kv_.emplace_back(std::move(key), std::move(v)); }
  Status AddTensor(std::string name, std::vector<uint64_t> ne, TensorType type);
  // The header bytes (key/values, tensor infos, padding), as Begin() writes them.
  Result<std::string> Header() const;
  Status Begin(const std::string& path);
  Status WriteTensorData(const void* bytes, size_t n);
  Status Commit();
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

 private:
  uint32_t alignment_;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<TensorInfo> tensors_;
  uint64_t data_bytes_ = 0;
  size_t next_ = 0;
  std::unique_ptr<AtomicFile> file_;
};

// q8_0: blocks of 32 values, each stored as an fp16 scale d = max|x|/127 and 32 int8 round(x/d).
// `n` must be a multiple of 32; `out` holds n/32*34 bytes.
void QuantizeQ8_0(const float* x, size_t n, std::byte* out);

}  // namespace escale::gguf
