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

// Every target tensor of a plan's recipes computed in fp64 and stored as `dtype` (verify and the
// tests hold the whole model in memory); produce(recipe) gives one recipe's fp64 values.
template <class Recipes, class Produce>
Result<std::map<std::string, Tensor>> ProduceAllInMemory(const Recipes& recipes, DType dtype,
                                                         Produce produce) {
  std::map<std::string, Tensor> out;
  for (const auto& r : recipes) {
    ESCALE_ASSIGN_OR_RETURN(std::vector<double> v, produce(r));
    Tensor t = Tensor::Zeros(dtype, r.target.shape);
    ESCALE_RETURN_IF_ERROR(ConvertFromF64(v.data(), v.size(), dtype, t.mutable_bytes()));
    out.emplace(r.target.name, std::move(t));
  }
  return out;
}

// Canonical name -> shape of every tensor of `c`.
std::map<std::string, Shape> ShapesOf(const ModelConfig& c);

}  // namespace escale::surgery
