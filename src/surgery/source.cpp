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
Result<std::vector<T>> LoadSource(const SourceFn& source, const std::string& name, const Shape& expected) {
  ESCALE_ASSIGN_OR_RETURN(Tensor t, source(name));
  if (t.shape() != expected)
    return FormatError("source tensor " + name + " has shape " + ShapeToString(t.shape()) + ", the config says " +
                       ShapeToString(expected));
  if constexpr (std::is_same_v<T, double>) {
    return ToF64Vector(t);
  } else {
    return ToF32Vector(t);
  }
}
template Result<std::vector<float>> LoadSource<float>(const SourceFn&, const std::string&, const Shape&);
template Result<std::vector<double>> LoadSource<double>(const SourceFn&, const std::string&, const Shape&);

std::map<std::string, Shape> ShapesOf(const ModelConfig& c) {
  std::map<std::string, Shape> m;
  for (const TensorSpec& s : CanonicalTensors(c)) m.emplace(s.name, s.shape);
  return m;
}

}  // namespace escale::surgery
