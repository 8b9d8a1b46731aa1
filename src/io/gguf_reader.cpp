// The strict GGUF reader: every read goes through a bounds-checked cursor, every count and length
// is checked against the bytes left and the limits before anything is allocated, and the tensor
// table is checked the way ggml does (dims, types, block divisibility, aligned in-range offsets,
// no overlap), so a malformed file is a Status, never a crash or a huge allocation.
#include <algorithm>
#include <cstring>
#include <set>
#include <unordered_set>

#include "io/gguf.h"

namespace escale::gguf {
namespace {

class Cursor {
 public:
  Cursor(const std::byte* d, size_t n) : d_(d), n_(n) {}
  size_t pos() const { return p_; }
  size_t left() const { return n_ - p_; }
  template <class T>
  Status Read(T& v, const char* what) {
    if (left() < sizeof(T)) return FormatError(Where(what) + ": file ends early (truncated GGUF)");
    std::memcpy(&v, d_ + p_, sizeof(T));
    p_ += sizeof(T);
    return Status::Ok();
  }
  Status ReadString(std::string& s, uint64_t max, const char* what) {
    uint64_t len = 0;
    ESCALE_RETURN_IF_ERROR(Read(len, what));
    if (len > max)
      return FormatError(Where(what) + ": string length " + std::to_string(len) +
                         " exceeds the limit " + std::to_string(max));
    if (len > left()) return FormatError(Where(what) + ": string runs past the end of the file");
    s.assign(reinterpret_cast<const char*>(d_ + p_), len);
    p_ += len;
    return Status::Ok();
  }
  std::string Where(const char* what) const {
    return std::string("GGUF ") + what + " at byte " + std::to_string(p_);
  }

 private:
  const std::byte* d_;
  size_t n_;
  size_t p_ = 0;
};

// Smallest encoded size of one element of `t` (used to bound array counts by the bytes left).
uint64_t MinSize(ValueType t) {
  switch (t) {
    case ValueType::kU8:
    case ValueType::kI8:
    case ValueType::kBool:
      return 1;
    case ValueType::kU16:
    case ValueType::kI16:
      return 2;
    case ValueType::kU32:
    case ValueType::kI32:
    case ValueType::kF32:
      return 4;
    case ValueType::kString:
    case ValueType::kU64:
    case ValueType::kI64:
    case ValueType::kF64:
      return 8;
    case ValueType::kArray:
      return 12;
  }
  return 1;
}

bool ValidValueType(uint32_t t) {
  return t <= static_cast<uint32_t>(ValueType::kF64);
}

Status ReadScalar(Cursor& c, ValueType t, Value& v, const Limits& lim) {
  v.type = t;
  switch (t) {
    case ValueType::kU8: {
      uint8_t x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.u = x;
      break;
    }
    case ValueType::kI8: {
      int8_t x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.i = x;
      break;
    }
    case ValueType::kU16: {
      uint16_t x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.u = x;
      break;
    }
    case ValueType::kI16: {
      int16_t x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.i = x;
      break;
    }
    case ValueType::kU32: {
      uint32_t x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.u = x;
      break;
    }
    case ValueType::kI32: {
      int32_t x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.i = x;
      break;
    }
    case ValueType::kU64: {
      uint64_t x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.u = x;
      break;
    }
    case ValueType::kI64: {
      int64_t x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.i = x;
      break;
    }
    case ValueType::kF32: {
      float x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.f = x;
      break;
    }
    case ValueType::kF64: {
      double x{};
      ESCALE_RETURN_IF_ERROR(c.Read(x, "value"));
      v.f = x;
      break;
    }
    case ValueType::kBool: {
      uint8_t x = 0;
      ESCALE_RETURN_IF_ERROR(c.Read(x, "bool"));
      if (x > 1)
        return FormatError(c.Where("bool") + ": value " + std::to_string(x) + " is not 0 or 1");
      v.u = x;
      break;
    }
    case ValueType::kString:
      return c.ReadString(v.s, lim.max_string, "string value");
    case ValueType::kArray:
      return InternalError("array passed to ReadScalar");
  }
  return Status::Ok();
}

Status ReadValue(Cursor& c, ValueType t, Value& v, const Limits& lim) {
  if (t != ValueType::kArray) return ReadScalar(c, t, v, lim);
  v.type = t;
  uint32_t et = 0;
  uint64_t n = 0;
  ESCALE_RETURN_IF_ERROR(c.Read(et, "array type"));
  if (!ValidValueType(et))
    return FormatError(c.Where("array type") + ": element type " + std::to_string(et) +
                       " is not a GGUF type");
  if (static_cast<ValueType>(et) == ValueType::kArray)
    return FormatError(c.Where("array type") + ": nested arrays are not supported");
  v.elem = static_cast<ValueType>(et);
  ESCALE_RETURN_IF_ERROR(c.Read(n, "array length"));
  if (n > lim.max_array)
    return FormatError(c.Where("array length") + ": " + std::to_string(n) +
                       " elements exceeds the limit " + std::to_string(lim.max_array));
  if (n > c.left() / MinSize(v.elem))
    return FormatError(c.Where("array length") + ": " + std::to_string(n) +
                       " elements cannot fit in the " + std::to_string(c.left()) + " bytes left");
  v.arr.resize(n);
  for (auto& e : v.arr) ESCALE_RETURN_IF_ERROR(ReadScalar(c, v.elem, e, lim));
  return Status::Ok();
}

}  // namespace

std::string_view ValueTypeName(ValueType t) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                "i32", "f32", "bool", "string", "array",
                                                "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "?";
}

std::string_view TensorTypeName(TensorType t) {
  switch (t) {
    case TensorType::kF32:
      return "f32";
    case TensorType::kF16:
      return "f16";
    case TensorType::kQ8_0:
      return "q8_0";
    case TensorType::kBF16:
      return "bf16";
  }
  return "?";
}

int64_t BlockSize(TensorType t) {
  return t == TensorType::kQ8_0 ? 32 : 1;
}
int64_t BlockBytes(TensorType t) {
  switch (t) {
    case TensorType::kF32:
      return 4;
    case TensorType::kF16:
    case TensorType::kBF16:
      return 2;
    case TensorType::kQ8_0:
      return 34;
  }
  return 0;
}

Result<uint64_t> TensorBytes(TensorType type, const std::vector<uint64_t>& ne) {
  if (ne.empty()) return FormatError("tensor has no dimensions");
  const uint64_t bs = static_cast<uint64_t>(BlockSize(type));
  if (ne[0] % bs != 0)
    return FormatError("first dimension " + std::to_string(ne[0]) + " is not a multiple of the " +
                       std::string(TensorTypeName(type)) + " block size " + std::to_string(bs));
  uint64_t n = ne[0] / bs * static_cast<uint64_t>(BlockBytes(type));
  for (size_t i = 1; i < ne.size(); ++i) {
    if (ne[i] != 0 && n > UINT64_MAX / ne[i]) return FormatError("tensor size overflows 64 bits");
    n *= ne[i];
  }
  return n;
}

const Value* File::Find(const std::string& key) const {
  for (const auto& [k, v] : kv)
    if (k == key) return &v;
  return nullptr;
}
const TensorInfo* File::FindTensor(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}
const std::byte* File::TensorData(const TensorInfo& t) const {
  return mapping ? mapping->data() + data_offset + t.offset : nullptr;
}

Result<File> Parse(const std::byte* data, size_t size, const Limits& lim) {
  Cursor c(data, size);
  File f;
  uint32_t magic = 0;
  ESCALE_RETURN_IF_ERROR(c.Read(magic, "magic"));
  if (std::memcmp(&magic, "GGUF", 4) != 0)
    return FormatError("not a GGUF file: the first 4 bytes are not 'GGUF'");
  ESCALE_RETURN_IF_ERROR(c.Read(f.version, "version"));
  if (f.version != 2 && f.version != 3)
    return FormatError("GGUF version " + std::to_string(f.version) +
                       " is not supported (2 or 3 are)");
  uint64_t n_tensors = 0, n_kv = 0;
  ESCALE_RETURN_IF_ERROR(c.Read(n_tensors, "tensor count"));
  ESCALE_RETURN_IF_ERROR(c.Read(n_kv, "key/value count"));
  if (n_tensors > lim.max_tensors || n_tensors > c.left() / 24)
    return FormatError("GGUF tensor count " + std::to_string(n_tensors) + " is impossible for a " +
                       std::to_string(size) + "-byte file");
  if (n_kv > lim.max_kv || n_kv > c.left() / 12)
    return FormatError("GGUF key/value count " + std::to_string(n_kv) + " is impossible for a " +
                       std::to_string(size) + "-byte file");
  std::unordered_set<std::string> keys;
  f.kv.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    ESCALE_RETURN_IF_ERROR(c.ReadString(key, lim.max_string, "key"));
    if (key.empty()) return FormatError(c.Where("key") + ": empty key");
    if (!keys.insert(key).second) return FormatError("GGUF key '" + key + "' appears twice");
    uint32_t t = 0;
    ESCALE_RETURN_IF_ERROR(c.Read(t, "value type"));
    if (!ValidValueType(t))
      return FormatError("GGUF key '" + key + "' has type " + std::to_string(t) +
                         ", not a GGUF type");
    Value v;
    if (Status s = ReadValue(c, static_cast<ValueType>(t), v, lim); !s.ok())
      return FormatError("GGUF key '" + key + "': " + s.message());
    f.kv.emplace_back(std::move(key), std::move(v));
  }
  if (const Value* a = f.Find("general.alignment")) {
    if (a->type != ValueType::kU32) return FormatError("general.alignment must be a u32");
    if (a->u == 0 || (a->u & (a->u - 1)) != 0)
      return FormatError("general.alignment " + std::to_string(a->u) + " is not a power of two");
    f.alignment = static_cast<uint32_t>(a->u);
  }
  std::unordered_set<std::string> names;
  f.tensors.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    ESCALE_RETURN_IF_ERROR(c.ReadString(t.name, 64 * 1024, "tensor name"));
    if (t.name.empty())
      return FormatError("GGUF tensor " + std::to_string(i) + " has an empty name");
    if (!names.insert(t.name).second)
      return FormatError("GGUF tensor '" + t.name + "' appears twice");
    uint32_t nd = 0;
    ESCALE_RETURN_IF_ERROR(c.Read(nd, "tensor dims"));
    if (nd == 0 || nd > lim.max_dims)
      return FormatError("GGUF tensor '" + t.name + "' has " + std::to_string(nd) +
                         " dimensions (1 to " + std::to_string(lim.max_dims) + " allowed)");
    t.ne.resize(nd);
    uint64_t numel = 1;
    for (auto& d : t.ne) {
      ESCALE_RETURN_IF_ERROR(c.Read(d, "tensor dim"));
      if (d == 0 || d > static_cast<uint64_t>(INT64_MAX))
        return FormatError("GGUF tensor '" + t.name + "' has a dimension of " + std::to_string(d));
      if (numel > static_cast<uint64_t>(INT64_MAX) / d)
        return FormatError("GGUF tensor '" + t.name + "' has more elements than fit in 63 bits");
      numel *= d;
    }
    uint32_t type = 0;
    ESCALE_RETURN_IF_ERROR(c.Read(type, "tensor type"));
    const auto tt = static_cast<TensorType>(type);
    if (tt != TensorType::kF32 && tt != TensorType::kF16 && tt != TensorType::kQ8_0 &&
        tt != TensorType::kBF16)
      return FormatError("GGUF tensor '" + t.name + "' has ggml type " + std::to_string(type) +
                         ", which escale does not read (f32, f16, bf16, q8_0)");
    t.type = tt;
    auto nb = TensorBytes(t.type, t.ne);
    if (!nb.ok()) return FormatError("GGUF tensor '" + t.name + "': " + nb.status().message());
    t.nbytes = *nb;
    ESCALE_RETURN_IF_ERROR(c.Read(t.offset, "tensor offset"));
    if (t.offset % f.alignment != 0)
      return FormatError("GGUF tensor '" + t.name + "' offset " + std::to_string(t.offset) +
                         " is not a multiple of the alignment " + std::to_string(f.alignment));
    f.tensors.push_back(std::move(t));
  }
  const uint64_t pad = (f.alignment - c.pos() % f.alignment) % f.alignment;
  f.data_offset = c.pos() + pad;
  if (f.data_offset > size && !f.tensors.empty())
    return FormatError("GGUF data section starts at byte " + std::to_string(f.data_offset) +
                       ", past the end of the " + std::to_string(size) + "-byte file (truncated)");
  const uint64_t data_size = size >= f.data_offset ? size - f.data_offset : 0;
  std::vector<std::pair<uint64_t, const TensorInfo*>> spans;
  for (const auto& t : f.tensors) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      return FormatError("GGUF tensor '" + t.name + "' data (" + std::to_string(t.nbytes) +
                         " bytes at " + std::to_string(t.offset) +
                         ") runs past the end of the file (truncated?)");
    spans.emplace_back(t.offset, &t);
  }
  std::sort(spans.begin(), spans.end(), [](auto& a, auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i - 1].first + spans[i - 1].second->nbytes > spans[i].first)
      return FormatError("GGUF tensors '" + spans[i - 1].second->name + "' and '" +
                         spans[i].second->name + "' overlap in the data section");
  return f;
}

Result<File> ReadFile(const std::string& path, const Limits& lim) {
  ESCALE_ASSIGN_OR_RETURN(auto m, MappedFile::Open(path));
  auto f = Parse(m->data(), m->size(), lim);
  if (!f.ok()) return FormatError(path + ": " + f.status().message());
  f->mapping = std::move(m);
  return f;
}

}  // namespace escale::gguf
