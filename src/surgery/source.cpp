#include "surgery/source.h"

namespace escale::surgery {

SourceFn SourceFromMap(const std::map<std::string, Tensor>& tensors) {
  return [&tensors](const std::string& name) -> Result<Tensor> {
    auto it = tensors.find(name);
    if (it == tensors.end()) return NotFound("source model has no tensor " + name);
    return it->second;
  };
}

template <class T>
Status LoadSourceInto(const SourceFn& source, const std::string& name, const Shape& expected, std::vector<T>& buf) {
  ESCALE_ASSIGN_OR_RETURN(Tensor t, source(name));
  if (t.shape() != expected)
    return FormatError("source tensor " + name + " has shape " + ShapeToString(t.shape()) + ", the config says " +
                       ShapeToString(expected));
  const auto n = static_cast<size_t>(t.numel());
  if (buf.size() < n) buf.resize(n);
  if constexpr (std::is_same_v<T, double>) {
    return ConvertToF64(t.dtype(), t.bytes(), n, buf.data()).WithContext("source tensor " + name);
  } else {
    return ConvertToF32(t.dtype(), t.bytes(), n, buf.data()).WithContext("source tensor " + name);
  }
}
template Status LoadSourceInto<float>(const SourceFn&, const std::string&, const Shape&, std::vector<float>&);
template Status LoadSourceInto<double>(const SourceFn&, const std::string&, const Shape&, std::vector<double>&);

template <class T>
Result<std::vector<T>> LoadSource(const SourceFn& source, const std::string& name, const Shape& expected) {
  std::vector<T> v;
  ESCALE_RETURN_IF_ERROR(LoadSourceInto(source, name, expected, v));
  v.resize(static_cast<size_t>(ShapeNumel(expected)));
  return v;
}
template Result<std::vector<float>> LoadSource<float>(const SourceFn&, const std::string&, const Shape&);
template Result<std::vector<double>> LoadSource<double>(const SourceFn&, const std::string&, const Shape&);

std::map<std::string, Shape> ShapesOf(const ModelConfig& c) {
  std::map<std::string, Shape> m;
  for (const TensorSpec& s : CanonicalTensors(c)) m.emplace(s.name, s.shape);
  return m;
}

}  // namespace escale::surgery
