// Where producers read source tensors from: a function from canonical name to a tensor (a view
// into an mmapped checkpoint, or an in-memory tensor in tests), converted on demand.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "model/layout.h"

namespace escale::surgery {

using SourceFn = std::function<Result<Tensor>(const std::string& canonical)>;

// A SourceFn over a map of tensors (tests, `escale verify`, in-memory pipelines).
SourceFn SourceFromMap(const std::map<std::string, Tensor>& tensors);

// Loads `name` and checks its shape against `expected`, converted to T (float or double).
template <class T>
Result<std::vector<T>> LoadSource(const SourceFn& source, const std::string& name, const Shape& expected);

// Canonical name -> shape of every tensor of `c`.
std::map<std::string, Shape> ShapesOf(const ModelConfig& c);

}  // namespace escale::surgery
