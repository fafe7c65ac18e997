#pragma once
// How much of an image each depth keeps: the feature inversion of several layers, compared
// with the input in pixel space (SSIM, PSNR, MSE), and the layer where the most is lost.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cnnviz/inversion.hpp"
#include "cnnviz/metrics.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

/// The inversion of each layer (iterations, priors, normalization: its mean and std also map
/// images back to pixels for the comparison) starts from the mean image rather than the
/// notebook's noise, so the SSIM measures what the layer pins down, not start noise the
/// optimization has not yet removed (with noise, every layer's SSIM stays near that of noise
/// after a few dozen steps, and the curve loses its shape).
#define CNNVIZ_LAYER_INFORMATION_OPTIONS(X)                                                                   \
  X(InversionOptions, inversion, InversionOptions().init(InversionInit::zeros),                               \
    "The inversion of each layer (its normalization also maps images back to pixels); starts from the mean image.") \
  X(SsimOptions, ssim, SsimOptions(), "SSIM's window and constants; the data range is that of pixels, 1.")
struct LayerInformationOptions {
  CNNVIZ_OPTIONS(LayerInformationOptions, CNNVIZ_LAYER_INFORMATION_OPTIONS)
};

struct LayerInformation {
  std::vector<std::string> layers;           ///< in the order given (shallow to deep)
  std::vector<InversionResult> inversions;   ///< one per layer: .image (N, C, H, W), normalized
  torch::Tensor ssim;      ///< (L, N) float64: SSIM of each inversion with the input, in pixels [0, 1]
  torch::Tensor psnr;      ///< (L, N) float64: PSNR in dB, data range 1
  torch::Tensor mse;       ///< (L, N) float64: mean squared pixel error
  torch::Tensor channels;  ///< (L,) int64: the layer's channels (features for a flat layer)
  torch::Tensor height;    ///< (L,) int64: the layer's spatial size (1 for a flat layer)
  torch::Tensor width;     ///< (L,) int64
  /// (L,) float64: mean SSIM lost at each layer against the previous one (the input has SSIM 1).
  torch::Tensor ssim_drop;
  int64_t bottleneck = -1;      ///< index of the layer with the largest ssim_drop
  std::string bottleneck_layer; ///< its name
  bool stopped_early = false;   ///< the progress callback stopped the inversions (fewer layers)
  bool interrupted = false;     ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// For each of `layers` (qualified names, shallow to deep): the inversion of x (N, C, H, W)
/// (invert_layers with options.inversion), its SSIM, PSNR and MSE against x after both are
/// mapped back to pixels (x * std + mean, clamped to [0, 1]), the layer's channels and
/// spatial size, and the bottleneck: the layer whose SSIM falls most below the previous
/// layer's (the input counting as SSIM 1), averaged over the batch.
LayerInformation layer_information(const AnyModel& model, const torch::Tensor& x,
                                   const std::vector<std::string>& layers,
                                   const LayerInformationOptions& options = {});

}  // namespace cnnviz
