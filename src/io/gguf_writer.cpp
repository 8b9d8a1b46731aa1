// The GGUF writer: the header (key/values, tensor infos with their aligned offsets) is known
// before any tensor byte, so tensors are streamed one at a time after it.
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "io/gguf.h"

namespace escale::gguf {
namespace {

template <class T>
void Put(std::string& o, T v) {
  o.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void PutString(std::string& o, const std::string& s) {
  Put<uint64_t>(o, s.size());
  o += s;
}

Status PutScalar(std::string& o, ValueType t, const Value& v) {
  switch (t) {
    case ValueType::kU8:
      Put<uint8_t>(o, static_cast<uint8_t>(v.u));
      break;
    case ValueType::kI8:
      Put<int8_t>(o, static_cast<int8_t>(v.i));
      break;
    case ValueType::kU16:
      Put<uint16_t>(o, static_cast<uint16_t>(v.u));
      break;
    case ValueType::kI16:
      Put<int16_t>(o, static_cast<int16_t>(v.i));
      break;
    case ValueType::kU32:
      Put<uint32_t>(o, static_cast<uint32_t>(v.u));
      break;
    case ValueType::kI32:
      Put<int32_t>(o, static_cast<int32_t>(v.i));
      break;
    case ValueType::kU64:
      Put<uint64_t>(o, v.u);
      break;
    case ValueType::kI64:
      Put<int64_t>(o, v.i);
      break;
    case ValueType::kF32:
      Put<float>(o, static_cast<float>(v.f));
      break;
    case ValueType::kF64:
      Put<double>(o, v.f);
      break;
    case ValueType::kBool:
      Put<uint8_t>(o, v.u ? 1 : 0);
      break;
    case ValueType::kString:
      PutString(o, v.s);
      break;
    case ValueType::kArray:
      return InternalError("nested GGUF arrays are not written");
  }
  return Status::Ok();
}

}  // namespace

Status Writer::AddTensor(std::string name, std::vector<uint64_t> ne, TensorType type) {
  ESCALE_ASSIGN_OR_RETURN(uint64_t nb, TensorBytes(type, ne));
  TensorInfo t{std::move(name), std::move(ne), type, data_bytes_, nb};
  data_bytes_ += (nb + alignment_ - 1) / alignment_ * alignment_;
  tensors_.push_back(std::move(t));
  return Status::Ok();
}

Result<std::string> Writer::Header() const {
  std::string o;
  o += "GGUF";
  Put<uint32_t>(o, 3);
  Put<uint64_t>(o, tensors_.size());
  Put<uint64_t>(o, kv_.size());
  for (const auto& [k, v] : kv_) {
    PutString(o, k);
    Put<uint32_t>(o, static_cast<uint32_t>(v.type));
    if (v.type == ValueType::kArray) {
      Put<uint32_t>(o, static_cast<uint32_t>(v.elem));
      Put<uint64_t>(o, v.arr.size());
      for (const Value& e : v.arr) ESCALE_RETURN_IF_ERROR(PutScalar(o, v.elem, e));
    } else {
      ESCALE_RETURN_IF_ERROR(PutScalar(o, v.type, v));
    }
  }
  for (const auto& t : tensors_) {
    PutString(o, t.name);
    Put<uint32_t>(o, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t d : t.ne) Put<uint64_t>(o, d);
    Put<uint32_t>(o, static_cast<uint32_t>(t.type));
    Put<uint64_t>(o, t.offset);
  }
  o.append((alignment_ - o.size() % alignment_) % alignment_, '\0');
  return o;
}

Status Writer::Begin(const std::string& path) {
  ESCALE_ASSIGN_OR_RETURN(std::string header, Header());
  ESCALE_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(path));
  file_ = std::make_unique<AtomicFile>(std::move(f));
  return file_->Write(header.data(), header.size());
}

Status Writer::WriteTensorData(const void* bytes, size_t n) {
  if (!file_ || next_ >= tensors_.size())
    return InternalError("GGUF tensor data written out of order");
  const TensorInfo& t = tensors_[next_++];
  if (n != t.nbytes)
    return InternalError("GGUF tensor " + t.name + ": " + std::to_string(n) + " bytes, expected " +
                         std::to_string(t.nbytes));
  ESCALE_RETURN_IF_ERROR(file_->Write(bytes, n));
  static const char kZeros[256] = {};
  const size_t pad = (alignment_ - n % alignment_) % alignment_;
  if (pad > 0) ESCALE_RETURN_IF_ERROR(file_->Write(kZeros, pad));
  return Status::Ok();
}

Status Writer::Commit() {
  if (!file_ || next_ != tensors_.size())
    return InternalError("GGUF file committed with " + std::to_string(next_) + " of " +
                         std::to_string(tensors_.size()) + " tensors written");
  return file_->Commit();
}

void QuantizeQ8_0(const float* x, size_t n, std::byte* out) {
  for (size_t b = 0; b < n / 32; ++b) {
    const float* v = x + b * 32;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t dh = F32ToF16(d);
    std::byte* blk = out + b * 34;
    std::memcpy(blk, &dh, 2);
    for (int j = 0; j < 32; ++j) {
      const auto q = static_cast<int8_t>(std::lround(v[j] * id));
      std::memcpy(blk + 2 + j, &q, 1);
    }
  }
}

}  // namespace escale::gguf
