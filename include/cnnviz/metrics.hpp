#pragma once
// Image similarity: SSIM (Wang et al. 2004) and PSNR, for batches (N, C, H, W) and images
// (H, W, C) or (H, W). Both are plain tensor code: they run batched, on any device, and SSIM
// is differentiable (usable as a loss).

#include <torch/torch.h>

#include <algorithm>

#include <cmath>
#include <string>

#include "cnnviz/detail/finite.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

/// The parameters of ssim(); the defaults are those of Wang et al.
#define CNNVIZ_SSIM_OPTIONS(X)                                                                   \
  X(int64_t, window_size, 11, "Side of the Gaussian window (odd).")                              \
  X(double, sigma, 1.5, "Standard deviation of the Gaussian window.")                            \
  X(double, k1, 0.01, "Stabilizing constant: C1 = (k1 L)^2 with L the data range.")              \
  X(double, k2, 0.03, "Stabilizing constant: C2 = (k2 L)^2 with L the data range.")              \
  X(c10::optional<double>, data_range, c10::nullopt,                                             \
    "L, the range of the values; unset: 255 for uint8, 1 for floating point.")                   \
  X(std::string, reduction, "mean", "'mean': one value; 'none': one value per image (N,).")
struct SsimOptions {
  CNNVIZ_OPTIONS(SsimOptions, CNNVIZ_SSIM_OPTIONS)
};

/// The parameters of psnr().
struct PsnrOptions {
  PsnrOptions() = default;
  PsnrOptions(double data_range) : data_range_(data_range) {}  // NOLINT: implicit by design
  /// L, the range of the values; unset: 255 for uint8, 1 for floating point.
  TORCH_ARG(c10::optional<double>, data_range) = c10::nullopt;
  /// "mean": the mean of the per-image values; "none": one value per image (N,).
  TORCH_ARG(std::string, reduction) = "mean";
};

namespace detail {

/// Two images or batches as float (N, C, H, W) scaled by 1/L (so the constants are k^2),
/// with validation. 4-D inputs are (N, C, H, W); 3-D are images (H, W, C); 2-D are (H, W).
inline std::pair<torch::Tensor, torch::Tensor> metric_inputs(const torch::Tensor& a, const torch::Tensor& b,
                                                             const c10::optional<double>& data_range,
                                                             const char* fn) {
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

inline torch::Tensor reduce_per_image(const torch::Tensor& per_image, const std::string& reduction, const char* fn) {
  TORCH_CHECK_VALUE(reduction == "mean" || reduction == "none", "cnnviz: ", fn, ": reduction must be 'mean' or "
                    "'none', got '", reduction, "'");
  return reduction == "mean" ? per_image.mean() : per_image;
}

/// The normalized 1-D Gaussian window.
inline torch::Tensor gaussian_window(int64_t size, double sigma, const torch::TensorOptions& options) {
  auto r = torch::arange(size, torch::TensorOptions().dtype(torch::kDouble)) - (size - 1) / 2.0;
  auto g = torch::exp(-(r * r) / (2 * sigma * sigma));
  return (g / g.sum()).to(options);
}

}  // namespace detail

/// The local SSIM map of two images or batches: (N, C, H - w + 1, W - w + 1) for a window
/// of side w (only windows fully inside the image, as in Wang et al.). Inputs as for ssim().
inline torch::Tensor ssim_map(const torch::Tensor& a, const torch::Tensor& b, const SsimOptions& options = {}) {
  const int64_t ws = options.window_size();
  TORCH_CHECK_VALUE(ws >= 1 && ws % 2 == 1, "cnnviz: ssim: window_size must be odd and positive, got ", ws);
  TORCH_CHECK_VALUE(options.sigma() > 0 && std::isfinite(options.sigma()), "cnnviz: ssim: sigma must be positive, got ",
                    options.sigma());
  TORCH_CHECK_VALUE(options.k1() > 0 && options.k2() > 0, "cnnviz: ssim: k1 and k2 must be positive");
  auto [x, y] = detail::metric_inputs(a, b, options.data_range(), "ssim");
  const int64_t c = x.size(1);
  TORCH_CHECK_VALUE(x.size(2) >= ws && x.size(3) >= ws, "cnnviz: ssim: the images (", x.size(2), "x", x.size(3),
                    ") are smaller than the window (", ws, "x", ws, ")");
  // One separable grouped convolution filters the five local statistics at once.
  auto g = detail::gaussian_window(ws, options.sigma(), x.options());
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

/// Structural similarity of two images or batches (identical: 1), averaged over the window
/// positions and channels: a 0-dim tensor, or (N,) with reduction "none". Inputs: (N, C, H, W)
/// batches, (H, W, C) images or (H, W) maps, of one shape and dtype (uint8, or floating point
/// in [0, data_range]); H and W at least the window size. Differentiable for floating point
/// inputs. Matches skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
/// use_sample_covariance=False) averaged over channels.
inline torch::Tensor ssim(const torch::Tensor& a, const torch::Tensor& b, const SsimOptions& options = {}) {
  auto map = ssim_map(a, b, options);
  return detail::reduce_per_image(map.mean({1, 2, 3}), options.reduction(), "ssim");
}

/// Peak signal-to-noise ratio in dB, 10 log10(L^2 / MSE), per image (MSE over C, H, W):
/// a 0-dim float64 tensor (the mean over images), or (N,) with reduction "none". Identical
/// images give +inf. Inputs as for ssim().
inline torch::Tensor psnr(const torch::Tensor& a, const torch::Tensor& b, const PsnrOptions& options = {}) {
  auto [x, y] = detail::metric_inputs(a, b, options.data_range(), "psnr");
  auto mse = (x.to(torch::kDouble) - y.to(torch::kDouble)).pow(2).mean({1, 2, 3});
  return detail::reduce_per_image(-10.0 * torch::log10(mse), options.reduction(), "psnr");
}

}  // namespace cnnviz
