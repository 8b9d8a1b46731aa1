// Tensor: a dtype, a row-major shape and bytes. The bytes are either owned (64-byte aligned heap)
// or a view into something kept alive by `owner` (an mmapped file, another tensor).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace escale {

using Shape = std::vector<int64_t>;

std::string ShapeToString(const Shape& s);
// Product of the dimensions, or nullopt-like -1 when it would overflow int64 or a dim is negative.
int64_t ShapeNumel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  // Owned, zero-filled storage.
  static Tensor Zeros(DType dtype, Shape shape);
  // A view of `bytes` (not copied); `owner` keeps them alive.
  static Tensor View(DType dtype, Shape shape, const std::byte* bytes, std::shared_ptr<const void> owner);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return nbytes_; }
  bool defined() const { return data_ != nullptr || nbytes_ == 0; }
  bool empty() const { return shape_.empty() && data_ == nullptr; }

  const std::byte* bytes() const { return data_; }
  // Mutable access. Owned storage is shared by copies of a tensor and written in place; a view
  // (of a read-only mapping, of another tensor) is first copied into storage of its own, so a
  // write never reaches the file or the tensor it views.
  std::byte* mutable_bytes();
  template <class T> const T* data() const { return reinterpret_cast<const T*>(data_); }
  template <class T> T* mutable_data() { return reinterpret_cast<T*>(mutable_bytes()); }

  // A deep copy into owned storage.
  Tensor Clone() const;

 private:
  DType dtype_ = DType::kF32;
  Shape shape_;
  int64_t numel_ = 0;
  size_t nbytes_ = 0;
  const std::byte* data_ = nullptr;
  std::shared_ptr<const void> owner_;
  bool view_ = false;
};

// Element conversions between storage dtypes and f32/f64. Supported: F32, F16, BF16, F64.
Status ConvertToF32(DType src_type, const std::byte* src, size_t n, float* dst);
Status ConvertFromF32(const float* src, size_t n, DType dst_type, std::byte* dst);
Status ConvertToF64(DType src_type, const std::byte* src, size_t n, double* dst);
Status ConvertFromF64(const double* src, size_t n, DType dst_type, std::byte* dst);
// Whole-tensor helpers.
Result<Tensor> ToDType(const Tensor& t, DType dst);
Result<std::vector<float>> ToF32Vector(const Tensor& t);
Result<std::vector<double>> ToF64Vector(const Tensor& t);

}  // namespace escale
