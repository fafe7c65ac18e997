#pragma once
// Separable Gaussian blur of image batches: the blurred start of a feature inversion, the
// blur prior of activation maximization and deep dream's gradient smoothing.

#include <torch/torch.h>

#include <cmath>
#include <cstdint>

namespace cnnviz {
namespace detail {

/// A normalized 1-D Gaussian of `sigma` pixels, radius ceil(3 sigma): (2r + 1,).
inline torch::Tensor gaussian_kernel1d(double sigma, const torch::TensorOptions& options) {
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0, "cnnviz: blur sigma must be positive, got ", sigma);
  auto radius = static_cast<int64_t>(std::ceil(3 * sigma));
  auto t = torch::arange(-radius, radius + 1, torch::TensorOptions().dtype(torch::kDouble));
  auto k = torch::exp(-0.5 * (t / sigma).pow(2));
  return (k / k.sum()).to(options);
}

/// Gaussian blur of x (N, C, H, W) per channel, edges replicated; same shape. sigma 0
/// returns x.
inline torch::Tensor gaussian_filter(const torch::Tensor& x, double sigma) {
  TORCH_CHECK_VALUE(x.dim() == 4, "cnnviz: gaussian_filter needs (N, C, H, W), got shape ", x.sizes());
  if (sigma == 0) return x;
  auto k = gaussian_kernel1d(sigma, x.options());
  const int64_t c = x.size(1), r = (k.size(0) - 1) / 2;
  namespace F = torch::nn::functional;
  auto padded = F::pad(x, F::PadFuncOptions({r, r, r, r}).mode(torch::kReplicate));
  auto depthwise = F::Conv2dFuncOptions().groups(c);
  auto h = F::conv2d(padded, k.view({1, 1, 1, -1}).expand({c, 1, 1, k.size(0)}), depthwise);
  return F::conv2d(h, k.view({1, 1, -1, 1}).expand({c, 1, k.size(0), 1}), depthwise);
}

}  // namespace detail
}  // namespace cnnviz
