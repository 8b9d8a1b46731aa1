#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/half.h"

namespace escale {

std::string ShapeToString(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

int64_t ShapeNumel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

namespace {
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
}  // namespace

Tensor Tensor::Zeros(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = ShapeNumel(shape);
  t.shape_ = std::move(shape);
  const size_t bits = static_cast<size_t>(t.numel_) * static_cast<size_t>(DTypeBits(dtype));
  t.nbytes_ = (bits + 7) / 8;
  const size_t alloc = ((t.nbytes_ + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, alloc == 0 ? 64 : alloc);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, alloc == 0 ? 64 : alloc);
  t.owner_ = std::shared_ptr<void>(p, AlignedFree());
  t.data_ = static_cast<const std::byte*>(p);
  return t;
}

Tensor Tensor::View(DType dtype, Shape shape, const std::byte* bytes,
                    std::shared_ptr<const void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = ShapeNumel(shape);
  t.shape_ = std::move(shape);
  t.nbytes_ = (static_cast<size_t>(t.numel_) * static_cast<size_t>(DTypeBits(dtype)) + 7) / 8;
  t.data_ = bytes;
  t.owner_ = std::move(owner);
  t.view_ = true;
  return t;
}

std::byte* Tensor::mutable_bytes() {
  if (view_) *this = Clone();
  return const_cast<std::byte*>(data_);
}

Tensor Tensor::Clone() const {
  Tensor t = Zeros(dtype_, shape_);
  if (nbytes_) std::memcpy(t.mutable_bytes(), data_, nbytes_);
  return t;
}

namespace {
template <class Dst>
Status ConvertTo(DType src_type, const std::byte* src, size_t n, Dst* dst) {
  switch (src_type) {
    case DType::kF32: {
      const float* s = reinterpret_cast<const float*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(s[i]);
      return Status::Ok();
    }
    case DType::kF64: {
      const double* s = reinterpret_cast<const double*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(s[i]);
      return Status::Ok();
    }
    case DType::kBF16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(Bf16ToF32(s[i]));
      return Status::Ok();
    }
    case DType::kF16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(F16ToF32(s[i]));
      return Status::Ok();
    }
    default:
      return Unsupported("cannot convert " + std::string(DTypeName(src_type)) +
                         " to floating point; escale computes with F32, F16, BF16 or F64 weights");
  }
}

template <class Src>
Status ConvertFrom(const Src* src, size_t n, DType dst_type, std::byte* dst) {
  switch (dst_type) {
    case DType::kF32: {
      float* d = reinterpret_cast<float*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = static_cast<float>(src[i]);
      return Status::Ok();
    }
    case DType::kF64: {
      double* d = reinterpret_cast<double*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = static_cast<double>(src[i]);
      return Status::Ok();
    }
    case DType::kBF16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = F32ToBf16(static_cast<float>(src[i]));
      return Status::Ok();
    }
    case DType::kF16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = F32ToF16(static_cast<float>(src[i]));
      return Status::Ok();
    }
    default:
      return Unsupported("cannot write weights as " + std::string(DTypeName(dst_type)) +
                         "; choose F32, F16, BF16 or F64");
  }
}
}  // namespace

Status ConvertToF32(DType t, const std::byte* src, size_t n, float* dst) { return ConvertTo(t, src, n, dst); }
Status ConvertToF64(DType t, const std::byte* src, size_t n, double* dst) { return ConvertTo(t, src, n, dst); }
Status ConvertFromF32(const float* src, size_t n, DType t, std::byte* dst) { return ConvertFrom(src, n, t, dst); }
Status ConvertFromF64(const double* src, size_t n, DType t, std::byte* dst) { return ConvertFrom(src, n, t, dst); }

Result<Tensor> ToDType(const Tensor& t, DType dst) {
  if (t.dtype() == dst) return t.Clone();
  std::vector<double> tmp(static_cast<size_t>(t.numel()));
  ESCALE_RETURN_IF_ERROR(ConvertToF64(t.dtype(), t.bytes(), tmp.size(), tmp.data()));
  Tensor out = Tensor::Zeros(dst, t.shape());
  if (dst == DType::kF64) {
    std::memcpy(out.mutable_bytes(), tmp.data(), tmp.size() * sizeof(double));
    return out;
  }
  // f16/bf16/f32 sources are exact in f32, so this rounds once; an F64 source to a 16-bit type
  // rounds twice (f64->f32->16), which only fp64 test fixtures ever do.
  std::vector<float> f(tmp.begin(), tmp.end());
  ESCALE_RETURN_IF_ERROR(ConvertFromF32(f.data(), f.size(), dst, out.mutable_bytes()));
  return out;
}

Result<std::vector<float>> ToF32Vector(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  ESCALE_RETURN_IF_ERROR(ConvertToF32(t.dtype(), t.bytes(), out.size(), out.data()));
  return out;
}

Result<std::vector<double>> ToF64Vector(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  ESCALE_RETURN_IF_ERROR(ConvertToF64(t.dtype(), t.bytes(), out.size(), out.data()));
  return out;
}

}  // namespace escale
