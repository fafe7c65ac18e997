#pragma once
// Image similarity: SSIM (Wang et al. 2004) and PSNR, for batches (N, C, H, W) and images
// (H, W, C) or (H, W). Both are plain tensor code (src/metrics.cpp): they run batched, on
// any device, and SSIM is differentiable (usable as a loss). They return tensors, not
// result structs: nothing loops long enough to stop early or be interrupted.

#include <torch/torch.h>

#include <cstdint>

#include "cnnviz/enums.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

#define CNNVIZ_SSIM_OPTIONS(X)                                                                        \
  X(int64_t, window_size, 11, "Side of the Gaussian window (odd).")                                   \
  X(double, sigma, 1.5, "Standard deviation of the Gaussian window.")                                 \
  X(double, k1, 0.01, "Stabilizing constant C1 = (k1 L)^2, L the data range.")                        \
  X(double, k2, 0.03, "Stabilizing constant C2 = (k2 L)^2, L the data range.")                        \
  X(c10::optional<double>, data_range, c10::nullopt,                                                  \
    "L, the range of the values; unset: 255 for uint8, 1 for floating point.")                        \
  X(Reduction, reduction, Reduction::mean, "mean: one value; none: one value per image (N,). max is refused.")

/// The parameters of ssim(); the defaults are those of Wang et al.
struct SsimOptions {
  CNNVIZ_OPTIONS(SsimOptions, CNNVIZ_SSIM_OPTIONS)
};

#define CNNVIZ_PSNR_OPTIONS(X)                                                 \
  X(c10::optional<double>, data_range, c10::nullopt,                           \
    "L, the range of the values; unset: 255 for uint8, 1 for floating point.") \
  X(Reduction, reduction, Reduction::mean,                                     \
    "mean: the mean of the per-image values; none: one value per image (N,). max is refused.")

/// The parameters of psnr().
struct PsnrOptions {
  CNNVIZ_OPTIONS(PsnrOptions, CNNVIZ_PSNR_OPTIONS)

  PsnrOptions() = default;
  PsnrOptions(double data_range) : data_range_(data_range) {}  // NOLINT: implicit by design
};

/// The local SSIM map of two images or batches: (N, C, H - w + 1, W - w + 1) for a window
/// of side w (only windows fully inside the image, as in Wang et al.). Inputs as for
/// ssim(); `options.reduction` is not used.
torch::Tensor ssim_map(const torch::Tensor& a, const torch::Tensor& b, const SsimOptions& options = {});

/// Structural similarity of two images or batches (identical: 1), averaged over the window
/// positions and channels: a 0-dim tensor, or (N,) with Reduction::none. Inputs: (N, C, H, W)
/// batches, (H, W, C) images or (H, W) maps, of one shape and dtype (uint8, or floating point
/// in [0, data_range]); H and W at least the window size. Differentiable for floating point
/// inputs. Matches skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
/// use_sample_covariance=False) averaged over channels.
torch::Tensor ssim(const torch::Tensor& a, const torch::Tensor& b, const SsimOptions& options = {});

/// Peak signal-to-noise ratio in dB, 10 log10(L^2 / MSE), per image (MSE over C, H, W):
/// a 0-dim float64 tensor (the mean over images), or (N,) with Reduction::none. Identical
/// images give +inf. Inputs as for ssim().
torch::Tensor psnr(const torch::Tensor& a, const torch::Tensor& b, const PsnrOptions& options = {});

}  // namespace cnnviz
