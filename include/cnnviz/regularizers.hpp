#pragma once
// Image priors and the feature-matching loss of feature inversion (Mahendran & Vedaldi,
// "Understanding Deep Image Representations by Inverting Them", 2015), as fused kernels.
//
// Each function returns a 0-dim tensor of the input's dtype (float for half and bfloat16)
// that is connected to autograd. On CPU float/double tensors one fused pass computes the
// value and one fused pass the analytic gradient (at::parallel_for, the same result for
// any thread count); other devices and dtypes (CUDA, half, bfloat16) run the same formulas
// as composed ATen expressions.
// Double backward (create_graph=True) works: the backward then runs as composed ATen
// expressions, which autograd can differentiate again.
//
// Where the true derivative is infinite or undefined the gradient is 0: |x|^alpha at x == 0
// for alpha <= 1, and a total-variation term whose two differences are both 0 for beta < 2.
//
// Errors: non-floating dtypes raise TypeError (c10::TypeError); non-positive or non-finite
// exponents, empty tensors, non-finite values, wrong ranks, mismatched shapes and a zero
// target in euclidean_loss raise ValueError (c10::ValueError).

#include <torch/torch.h>

namespace cnnviz {

/// sum_i |x_i|^alpha over every element of x (any shape, e.g. (N, C, H, W)); alpha > 0.
/// Returns a 0-dim tensor. Fast paths (no pow) for alpha = 0.5, 1, ..., 4 and 5, 6, 7, 8.
torch::Tensor alpha_norm(const torch::Tensor& x, double alpha);

/// Total variation of images x (N, C, H, W) or (C, H, W), beta > 0:
///   sum over n, c and i < H-1, j < W-1 of
///   ((x[i, j+1] - x[i, j])^2 + (x[i+1, j] - x[i, j])^2)^(beta / 2),
/// the convention of Mahendran & Vedaldi (forward differences, no padding: the last row
/// and column appear only as neighbours). Summed over the batch; an image with H == 1 or
/// W == 1 has no terms and a total variation of 0. Returns a 0-dim tensor. Fast paths (no
/// pow) for beta = 0.5, 1, ..., 4 and 5, 6, 7, 8; beta = 2 needs no square root either.
torch::Tensor total_variation(const torch::Tensor& x, double beta);

/// Normalized squared Euclidean distance ||current - target||^2 / ||target||^2 of two
/// tensors of the same shape (e.g. feature maps (N, C, H, W)), dtype and device. Returns a
/// 0-dim tensor; differentiable with respect to both arguments.
torch::Tensor euclidean_loss(const torch::Tensor& target, const torch::Tensor& current);

namespace detail {

/// Which implementation a regularizer runs: `automatic` takes the fused kernels for CPU
/// float/double tensors and the composed ATen expressions otherwise. Tests use the others
/// to check the device fallback on CPU.
enum class RegularizerImpl { automatic, fused, composed };

torch::Tensor alpha_norm(const torch::Tensor& x, double alpha, RegularizerImpl impl);
torch::Tensor total_variation(const torch::Tensor& x, double beta, RegularizerImpl impl);
torch::Tensor euclidean_loss(const torch::Tensor& target, const torch::Tensor& current,
                             RegularizerImpl impl);

}  // namespace detail
}  // namespace cnnviz
