// SSIM and PSNR (cnnviz/metrics.hpp).

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "cnnviz/detail/finite.hpp"
#include "cnnviz/metrics.hpp"

namespace cnnviz {
namespace {

/// Two images or batches as float (N, C, H, W) scaled by 1/L (so the constants are k^2),
/// with validation. 4-D inputs are (N, C, H, W); 3-D are images (H, W, C); 2-D are (H, W).
std::pair<torch::Tensor, torch::Tensor> metric_inputs(const torch::Tensor& a, const torch::Tensor& b,
                                                      const c10::optional<double>& data_range, const char* fn) {
  TORCH_CHECK_VALUE(a.defined() && b.defined(), "cnnviz: ", fn, ": an input is undefined");
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), "cnnviz: ", fn, ": the inputs differ in shape: ", a.sizes(), " and ",
                    b.sizes());
  TORCH_CHECK_VALUE(a.scalar_type() == b.scalar_type(), "cnnviz: ", fn, ": the inputs differ in dtype: ",
                    a.scalar_type(), " and ", b.scalar_type(), " (their value ranges would differ)");
  TORCH_CHECK_VALUE(a.scalar_type() == torch::kUInt8 || a.is_floating_point(), "cnnviz: ", fn,
                    " takes uint8 or floating point inputs, got ", a.scalar_type());
  TORCH_CHECK_VALUE(a.dim() >= 2 && a.dim() <= 4, "cnnviz: ", fn, " takes (N, C, H, W), (H, W, C) or (H, W), got shape ",
                    a.sizes());
  TORCH_CHECK_VALUE(a.dim() != 3 || a.size(2) <= 4, "cnnviz: ", fn, ": 3-D inputs are images (H, W, C) with C <= 4, "
                    "got shape ", a.sizes(), "; pass a channels-first image as a batch (1, C, H, W)");
  TORCH_CHECK_VALUE(a.numel() > 0, "cnnviz: ", fn, ": the inputs are empty, shape ", a.sizes());
  const double range = data_range.value_or(a.scalar_type() == torch::kUInt8 ? 255.0 : 1.0);
  TORCH_CHECK_VALUE(std::isfinite(range) && range > 0, "cnnviz: ", fn, ": data_range must be positive, got ", range);
  auto to_nchw = [&](const torch::Tensor& t) {
    auto x = t.is_floating_point() && t.scalar_type() != torch::kHalf && t.scalar_type() != torch::kBFloat16
                 ? t : t.to(torch::kFloat);
    if (x.dim() == 2) x = x.unsqueeze(0).unsqueeze(0);
    else if (x.dim() == 3) x = x.permute({2, 0, 1}).unsqueeze(0);
    return x / range;
  };
  auto x = to_nchw(a), y = to_nchw(b);
  TORCH_CHECK_VALUE(detail::all_finite(x) && detail::all_finite(y), "cnnviz: ", fn,
                    ": the inputs contain NaN or infinite values");
  if (!data_range && a.is_floating_point()) {
    // The default range 1 fits images in [0, 1] only: normalized model inputs (about
    // [-2.1, 2.6] for ImageNet's statistics) would be compared at the wrong scale.
    torch::NoGradGuard no_grad;
    const double lo = std::min(x.min().item<double>(), y.min().item<double>());
    const double hi = std::max(x.max().item<double>(), y.max().item<double>());
    TORCH_CHECK_VALUE(lo >= -0.5 && hi <= 1.5, "cnnviz: ", fn, ": float inputs span [", lo, ", ", hi,
                      "], not [0, 1], so the default data_range of 1 does not fit them; pass data_range (the "
                      "span of valid values), or compare deprocessed images (cnnviz.deprocess) instead of "
                      "normalized model inputs");
  }
  return {x, y};
}

/// Refuses the reductions a metric does not have before any work is done.
void check_reduction(Reduction reduction, const char* fn) {
  TORCH_CHECK_VALUE(reduction == Reduction::mean || reduction == Reduction::none, "cnnviz: ", fn,
                    ": reduction must be 'mean' or 'none', got '", reduction_name(reduction),
                    "' (for the least similar image take reduction 'none' and its min or max)");
}

torch::Tensor reduce_per_image(const torch::Tensor& per_image, Reduction reduction) {
  return reduction == Reduction::mean ? per_image.mean() : per_image;
}

/// The normalized 1-D Gaussian window.
torch::Tensor gaussian_window(int64_t size, double sigma, const torch::TensorOptions& options) {
  auto r = torch::arange(size, torch::TensorOptions().dtype(torch::kDouble)) - (size - 1) / 2.0;
  auto g = torch::exp(-(r * r) / (2 * sigma * sigma));
  return (g / g.sum()).to(options);
}

}  // namespace

torch::Tensor ssim_map(const torch::Tensor& a, const torch::Tensor& b, const SsimOptions& options) {
  const int64_t ws = options.window_size();
  TORCH_CHECK_VALUE(ws >= 1 && ws % 2 == 1, "cnnviz: ssim: window_size must be odd and positive, got ", ws);
  TORCH_CHECK_VALUE(options.sigma() > 0 && std::isfinite(options.sigma()), "cnnviz: ssim: sigma must be positive, got ",
                    options.sigma());
  TORCH_CHECK_VALUE(options.k1() > 0 && options.k2() > 0, "cnnviz: ssim: k1 and k2 must be positive");
  auto [x, y] = metric_inputs(a, b, options.data_range(), "ssim");
  const int64_t c = x.size(1);
  TORCH_CHECK_VALUE(x.size(2) >= ws && x.size(3) >= ws, "cnnviz: ssim: the images (", x.size(2), "x", x.size(3),
                    ") are smaller than the window (", ws, "x", ws, ")");
  // One separable grouped convolution filters the five local statistics at once.
  auto g = gaussian_window(ws, options.sigma(), x.options());
  auto stats = torch::cat({x, y, x * x, y * y, x * y}, 1);
  auto gv = g.view({1, 1, ws, 1}).expand({5 * c, 1, ws, 1});
  auto gh = g.view({1, 1, 1, ws}).expand({5 * c, 1, 1, ws});
  namespace F = torch::nn::functional;
  auto f = F::conv2d(F::conv2d(stats, gv, F::Conv2dFuncOptions().groups(5 * c)), gh,
                     F::Conv2dFuncOptions().groups(5 * c));
  auto mu_x = f.narrow(1, 0, c), mu_y = f.narrow(1, c, c);
  auto var_x = f.narrow(1, 2 * c, c) - mu_x * mu_x;
  auto var_y = f.narrow(1, 3 * c, c) - mu_y * mu_y;
  auto cov = f.narrow(1, 4 * c, c) - mu_x * mu_y;
  const double c1 = options.k1() * options.k1(), c2 = options.k2() * options.k2();
  return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2));
}

torch::Tensor ssim(const torch::Tensor& a, const torch::Tensor& b, const SsimOptions& options) {
  check_reduction(options.reduction(), "ssim");
  return reduce_per_image(ssim_map(a, b, options).mean({1, 2, 3}), options.reduction());
}

torch::Tensor psnr(const torch::Tensor& a, const torch::Tensor& b, const PsnrOptions& options) {
  check_reduction(options.reduction(), "psnr");
  auto [x, y] = metric_inputs(a, b, options.data_range(), "psnr");
  auto mse = (x.to(torch::kDouble) - y.to(torch::kDouble)).pow(2).mean({1, 2, 3});
  return reduce_per_image(-10.0 * torch::log10(mse), options.reduction());
}

}  // namespace cnnviz
