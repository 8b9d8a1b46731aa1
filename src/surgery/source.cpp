#include "surgery/source.h"

#include <omp.h>

#include <algorithm>

namespace escale::surgery {

SourceFn SourceFromMap(const std::map<std::string, Tensor>& tensors) {
  return [&tensors](const std::string& name) -> Result<Tensor> {
    auto it = tensors.find(name);
    if (it == tensors.end()) return NotFound("source model has no tensor " + name);
    return it->second;
  };
}

namespace {
Result<Tensor> Checked(const SourceFn& source, const std::string& name, const Shape& expected) {
  ESCALE_ASSIGN_OR_RETURN(Tensor t, source(name));
  if (t.shape() != expected)
    return FormatError("source tensor " + name + " has shape " + ShapeToString(t.shape()) + ", the config says " +
                       ShapeToString(expected));
  return t;
}

template <class T>
Status ConvertInto(const Tensor& t, const std::string& name, std::vector<T>& buf) {
  const auto n = static_cast<size_t>(t.numel());
  // resize() would zero-fill memory that is overwritten right away; grow only.
  if (buf.size() < n) buf.resize(n);
  if constexpr (std::is_same_v<T, double>) {
    return ConvertToF64(t.dtype(), t.bytes(), n, buf.data()).WithContext("source tensor " + name);
  } else {
    return ConvertToF32(t.dtype(), t.bytes(), n, buf.data()).WithContext("source tensor " + name);
  }
}
}  // namespace

template <class T>
Result<SourceView<T>> ViewSource(const SourceFn& source, const std::string& name, const Shape& expected,
                                 std::vector<T>& buf) {
  ESCALE_ASSIGN_OR_RETURN(Tensor t, Checked(source, name, expected));
  constexpr DType kSame = std::is_same_v<T, double> ? DType::kF64 : DType::kF32;
  SourceView<T> v;
  // Tensors are 64-byte aligned or views at 8-byte-aligned offsets of an aligned mapping, which
  // the safetensors reader re-aligns when a file does not; so the cast is to aligned T.
  if (t.dtype() == kSame && reinterpret_cast<uintptr_t>(t.bytes()) % alignof(T) == 0) {
    v.data = t.template data<T>();
  } else {
    ESCALE_RETURN_IF_ERROR(ConvertInto(t, name, buf));
    v.data = buf.data();
  }
  v.tensor = std::move(t);
  return v;
}
template Result<SourceView<float>> ViewSource<float>(const SourceFn&, const std::string&, const Shape&,
                                                     std::vector<float>&);
template Result<SourceView<double>> ViewSource<double>(const SourceFn&, const std::string&, const Shape&,
                                                       std::vector<double>&);

template <class T>
Status LoadSourceInto(const SourceFn& source, const std::string& name, const Shape& expected, std::vector<T>& buf) {
  ESCALE_ASSIGN_OR_RETURN(Tensor t, Checked(source, name, expected));
  return ConvertInto(t, name, buf);
}
template Status LoadSourceInto<float>(const SourceFn&, const std::string&, const Shape&, std::vector<float>&);
template Status LoadSourceInto<double>(const SourceFn&, const std::string&, const Shape&, std::vector<double>&);

int ProducerThreads() { return std::max(1, omp_get_max_threads() - 1); }

std::map<std::string, Shape> ShapesOf(const ModelConfig& c) {
  std::map<std::string, Shape> m;
  for (const TensorSpec& s : CanonicalTensors(c)) m.emplace(s.name, s.shape);
  return m;
}

}  // namespace escale::surgery
