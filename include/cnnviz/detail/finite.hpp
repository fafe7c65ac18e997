#pragma once
// A fast "all values finite" check for input validation.

#include <torch/torch.h>

#include <cmath>

namespace cnnviz {
namespace detail {

/// True when every element of a floating point tensor is finite (integer tensors always
/// are). A sum is NaN or infinite whenever an element is, so one reduction decides the
/// common case; only a sum that overflows needs the elementwise check.
inline bool all_finite(const torch::Tensor& t) {
  if (!t.is_floating_point() || t.numel() == 0) return true;
  if (std::isfinite(t.sum(torch::kDouble).item<double>())) return true;
  return torch::isfinite(t).all().item<bool>();
}

}  // namespace detail
}  // namespace cnnviz
