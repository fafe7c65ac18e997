#pragma once
// Integrated gradients (Sundararajan et al. 2017): the path integral of the gradient from a
// baseline to the input, by the trapezoid rule or Gauss-Legendre quadrature with a fixed
// number of steps, or to a completeness tolerance by adaptive trapezoid panels, with the
// convergence delta that completeness predicts to be zero. Body in
// src/attribution_integrated_gradients.cpp.

#include <torch/torch.h>

#include <optional>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

enum class IntegrationMethod { riemann_trapezoid, gauss_legendre };

/// The reference input the path starts from.
enum class BaselineKind {
  zeros,    ///< zeros in normalized space (the dataset's mean color)
  black,    ///< pixels 0, normalized
  blur,     ///< the input blurred with a Gaussian of `blur_sigma` pixels (edges replicated)
  uniform,  ///< pixels uniform in [0, 1], normalized (one draw per call)
  custom,   ///< `custom_baseline`
};

#define CNNVIZ_INTEGRATED_GRADIENTS_OPTIONS(X)                                                              \
  X(int64_t, steps, 50, "Fixed-step mode: points on the path where the gradient is evaluated.")            \
  X(IntegrationMethod, method, IntegrationMethod::riemann_trapezoid, "Fixed-step mode: the quadrature rule.") \
  X(c10::optional<double>, tolerance, c10::nullopt,                                                         \
    "Error-controlled mode when set (fixed steps when unset): refine the path per image until "             \
    "max(|delta|, sqrt(sum of squared panel errors)) <= tolerance * |f(x) - f(baseline)|, or until "        \
    "max_passes path points; steps and method must then stay at their defaults.")                           \
  X(int64_t, initial_steps, 9, "Error-controlled mode: points of the first, uniform grid (endpoints included).") \
  X(int64_t, max_passes, 1024, "Error-controlled mode: the most path points (forward+backward passes) per image.") \
  X(BaselineKind, baseline, BaselineKind::zeros, "The reference input the path starts from.")                \
  X(torch::Tensor, custom_baseline, torch::Tensor(),                                                        \
    "The baseline for BaselineKind::custom: (C, H, W), (1, C, H, W) or (N, C, H, W).")                      \
  X(double, blur_sigma, 5.0, "Standard deviation in pixels of the blur baseline.")                          \
  X(Normalization, normalization, {}, "How inputs were normalized (black and uniform baselines).")           \
  X(int64_t, batch_size, 16, "Path points per forward/backward pass (bounds memory).")                      \
  X(Reduction, reduction, Reduction::mean, "How |attribution| becomes the map: max or mean over channels.") \
  X(ProgressCallback, progress, nullptr, \
    "Called after each batch; returning false stops (the result is then a partial sum). " \
    "Python passes progress= to the call.")

struct IntegratedGradientsOptions {
  CNNVIZ_OPTIONS(IntegratedGradientsOptions, CNNVIZ_INTEGRATED_GRADIENTS_OPTIONS)
};

struct IntegratedGradientsResult : Attribution {
  torch::Tensor baseline;        ///< (N, C, H, W)
  torch::Tensor delta;           ///< (N,): sum(attribution) - (f(x) - f(baseline)) for the target
  torch::Tensor score;           ///< (N,): f(x) for the target
  torch::Tensor baseline_score;  ///< (N,): f(baseline) for the target
  /// (N,) int64: path points evaluated per image, one forward+backward pass each (the two
  /// forward-only passes for f(x) and f(baseline) per image come on top).
  torch::Tensor passes;
  /// (N,) bool, error-controlled mode only (undefined otherwise): the tolerance was met.
  torch::Tensor converged;
  /// (N,) double, error-controlled mode only: max(|delta|, sqrt(sum of squared panel errors))
  /// / |f(x) - f(baseline)|, what the tolerance was compared with.
  torch::Tensor relative_error;
};

/// Integrated gradients of each sample's target score: (x - baseline) times the path
/// integral of the gradient, x (N, C, H, W) -> attribution (N, C, H, W), map (N, H, W),
/// and the convergence delta (N,) = sum(attribution) - (f(x) - f(baseline)).
///
/// Fixed steps (default): `steps` points of `method` for every image. With `tolerance`:
/// per image, trapezoid panels on the path, starting from `initial_steps` uniform points and
/// bisected where their error is largest (each panel's error is known exactly, since the
/// forward pass at a node gives f there), until max(|delta|, sqrt(sum of squared panel
/// errors)) <= tolerance * |f(x) - f(baseline)| or the image has used `max_passes` points;
/// `passes`, `converged` and `relative_error` report it. Each image costs its `passes`
/// forward+backward passes; the adaptive mode adds two forward-only passes (x and the
/// baseline), which fixed steps take from the path (the trapezoid rule's end points) or
/// run in front of the first batch (Gauss-Legendre).
IntegratedGradientsResult integrated_gradients(const AnyModel& model, const torch::Tensor& x,
                                               const Target& target = {},
                                               const IntegratedGradientsOptions& options = {});

}  // namespace cnnviz
