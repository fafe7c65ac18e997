#pragma once
// Opt-in: zero-copy adapters between tensors and xtensor, for C++ code that works on
// decoded images with xtensor expressions. Not included by cnnviz.hpp (xtensor's headers
// are heavy); the library itself uses xtensor only inside src/image.cpp.
//
//   #include <cnnviz/xtensor.hpp>
//   auto img = cnnviz::load_image("cat.jpg");            // (H, W, 3) uint8
//   auto view = cnnviz::as_xtensor<uint8_t>(img);         // shares img's memory
//   auto twice = cnnviz::from_xtensor(xt::cast<int32_t>(view) * 2);   // a new (H, W, 3) int32 tensor

#include <torch/torch.h>

#include <xtensor/xadapt.hpp>
#include <xtensor/xnoalias.hpp>

#include <cstdint>
#include <type_traits>
#include <vector>

namespace cnnviz {

/// An xtensor view of a contiguous CPU tensor of element type T, sharing its memory (the
/// tensor must outlive the view), with the tensor's shape: e.g. an (H, W, 3) uint8 image.
template <class T>
auto as_xtensor(const torch::Tensor& t) {
  TORCH_CHECK_VALUE(t.defined() && t.device().is_cpu() && t.is_contiguous(),
                    "cnnviz: as_xtensor needs a contiguous CPU tensor");
  TORCH_CHECK_VALUE(t.scalar_type() == c10::CppTypeToScalarType<T>::value,
                    "cnnviz: as_xtensor: element type does not match the tensor's ", t.scalar_type());
  std::vector<size_t> shape(t.sizes().begin(), t.sizes().end());
  return xt::adapt(t.data_ptr<T>(), static_cast<size_t>(t.numel()), xt::no_ownership(), shape);
}

/// Evaluates an xtensor expression into a new CPU tensor of the same shape and element type.
template <class E>
torch::Tensor from_xtensor(const xt::xexpression<E>& expression) {
  const auto& e = expression.derived_cast();
  using T = std::decay_t<typename E::value_type>;
  std::vector<int64_t> shape(e.shape().begin(), e.shape().end());
  auto out = torch::empty(shape, torch::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  auto view = as_xtensor<T>(out);
  xt::noalias(view) = e;
  return out;
}

}  // namespace cnnviz
