#pragma once
// Gradient maps: saliency (Simonyan et al. 2014), SmoothGrad (Smilkov et al. 2017) and
// guided backprop (Springenberg et al. 2015). Bodies in src/attribution.cpp.

#include <torch/torch.h>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

/// The options of a single-pass gradient map (saliency, guided backprop, guided Grad-CAM).
#define CNNVIZ_GRADIENT_MAP_OPTIONS(X) \
  X(Reduction, reduction, Reduction::max, "How |attribution| becomes the map: max or mean over channels.")

struct SaliencyOptions {
  CNNVIZ_OPTIONS(SaliencyOptions, CNNVIZ_GRADIENT_MAP_OPTIONS)
};

struct GuidedBackpropOptions {
  CNNVIZ_OPTIONS(GuidedBackpropOptions, CNNVIZ_GRADIENT_MAP_OPTIONS)
};

#define CNNVIZ_SMOOTH_GRAD_OPTIONS(X)                                                                         \
  X(int64_t, samples, 50, "Noisy copies averaged per image.")                                                 \
  X(double, noise_level, 0.15,                                                                                \
    "Noise standard deviation as a fraction of each image's range (max - min); the paper's 10-20 % work well.") \
  X(int64_t, batch_size, 16,                                                                                  \
    "Noisy copies per forward/backward pass (bounds memory); the first pass also carries the N clean images " \
    "when N < batch_size.")                                                                                   \
  X(Reduction, reduction, Reduction::max, "How |attribution| becomes the map: max or mean over channels.") \
  X(ProgressCallback, progress, nullptr, \
    "Called after each batch; returning false stops (the result averages what ran). " \
    "Python passes progress= to the call.")

struct SmoothGradOptions {
  CNNVIZ_OPTIONS(SmoothGradOptions, CNNVIZ_SMOOTH_GRAD_OPTIONS)
};

/// Vanilla gradient saliency: the gradient of each sample's target score with respect to
/// x (N, C, H, W); `map` (N, H, W) is |gradient| reduced over channels. One pass (never
/// `stopped_early`).
Attribution saliency(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                     const SaliencyOptions& options = {});

/// SmoothGrad: the gradient averaged over `samples` copies of each image with Gaussian
/// noise of standard deviation noise_level * (max - min) of that image. x (N, C, H, W) ->
/// attribution (N, C, H, W), map (N, H, W) = |attribution| reduced over channels. The
/// target is resolved on the clean images.
Attribution smooth_grad(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                        const SmoothGradOptions& options = {});

/// Guided backprop: the gradient of each sample's target score with respect to x
/// (N, C, H, W) where every ReLU passes back only positive gradients through active units.
/// Needs a model whose ReLUs can be guided (PyModel, ScriptModel). One pass.
Attribution guided_backprop(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                            const GuidedBackpropOptions& options = {});

}  // namespace cnnviz
