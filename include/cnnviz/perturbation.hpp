#pragma once
// Occlusion (Zeiler & Fergus 2014): how much the target's score drops when a window of the
// input is replaced by a baseline value, for every window position, in batches. Body in
// src/attribution.cpp.

#include <torch/torch.h>

#include <vector>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

#define CNNVIZ_OCCLUSION_OPTIONS(X)                                                                             \
  X(std::vector<int64_t>, window, (std::vector<int64_t>{16, 16}),                                               \
    "Window (height, width) in pixels; one value means a square.")                                             \
  X(std::vector<int64_t>, stride, (std::vector<int64_t>{8, 8}),                                                 \
    "Step between windows (height, width); one value means the same in both directions.")                      \
  X(double, baseline, 0.0, "The value occluded pixels get, in the input's (normalized) space: 0 is the mean color.") \
  X(Score, score, Score::logit, "Compare logits or softmax probabilities.")                                     \
  X(int64_t, batch_size, 32, "Occluded copies per forward pass (bounds memory).") \
  X(ProgressCallback, progress, nullptr, \
    "Called after each batch; returning false stops (windows not yet run count as no drop). " \
    "Python passes progress= to the call.")

struct OcclusionOptions {
  CNNVIZ_OPTIONS(OcclusionOptions, CNNVIZ_OCCLUSION_OPTIONS)
};

struct OcclusionResult {
  torch::Tensor map;     ///< (N, H, W): mean drop of the windows covering each pixel (0 if none)
  torch::Tensor scores;  ///< (N, nh, nw): drop f(x) - f(x occluded) per window position
  torch::Tensor target;  ///< (N,) int64
  torch::Tensor logits;  ///< (N, K) for x
  bool stopped_early = false;  ///< the progress callback stopped the loop (partial result)
  bool interrupted = false;    ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// Occlusion sensitivity of x (N, C, H, W): every window (all channels) at positions
/// 0, stride, 2 stride, ... that fit in the image is set to `baseline`, and the drop of the
/// target's score is recorded per position (N, nh, nw) and averaged per pixel (N, H, W).
OcclusionResult occlusion(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                          const OcclusionOptions& options = {});

}  // namespace cnnviz
