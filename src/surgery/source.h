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

// Buffers reused from tensor to tensor: a fresh multi-megabyte allocation per tensor is page-faulted
// and zeroed every time, which costs more than the surgery itself.
template <class T>
struct Scratch {
  std::vector<T> a, b, out;
};

// Loads `name`, checks its shape against `expected` and converts it to T (float or double) into
// `buf` (grown when too small; its first numel elements are the tensor).
template <class T>
Status LoadSourceInto(const SourceFn& source, const std::string& name, const Shape& expected,
                      std::vector<T>& buf);

// A source tensor's elements as T without a copy when it is stored as T (a view into the mapped
// checkpoint), else converted into `buf` as LoadSourceInto does. `tensor` keeps the view alive.
template <class T>
struct SourceView {
  Tensor tensor;
  const T* data = nullptr;
};
template <class T>
Result<SourceView<T>> ViewSource(const SourceFn& source, const std::string& name, const Shape& expected,
                                 std::vector<T>& buf);

// OpenMP threads for computing one target tensor: all but one, which is left to the writer thread
// (copying into the page cache costs it as much CPU as producing costs here). 1 on two cores,
// where a spinning team would only take time from the writer.
int ProducerThreads();

// Canonical name -> shape of every tensor of `c`.
std::map<std::string, Shape> ShapesOf(const ModelConfig& c);

}  // namespace escale::surgery
