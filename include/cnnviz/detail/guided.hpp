#pragma once
// The guided-backprop rule as an op: identity forward, negative gradients dropped in the
// backward. Placed right after a ReLU (or ReLU6), the ReLU's own backward then masks the
// inactive units, so the pair computes guided backprop's rule for any ReLU-like layer.

#include <torch/torch.h>

namespace cnnviz {
namespace detail {

struct PositiveGrad : public torch::autograd::Function<PositiveGrad> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& x) {
    // A copy, not the input itself: later in-place ops must not hit a custom op's view.
    return x.clone();
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext*,
                                               torch::autograd::tensor_list grads) {
    return {grads[0].clamp_min(0)};
  }
};

/// Identity whose backward keeps only positive gradients: x (any shape) -> x.
inline torch::Tensor positive_grad(const torch::Tensor& x) { return PositiveGrad::apply(x); }

}  // namespace detail
}  // namespace cnnviz
