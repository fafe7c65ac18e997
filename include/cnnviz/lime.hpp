#pragma once
// LIME for images (Ribeiro et al. 2016): superpixels switched on and off at random, the
// model's score on each perturbed image, and a weighted ridge regression on the on/off
// pattern whose coefficients are the superpixels' importance. Bodies in src/attribution.cpp.

#include <torch/torch.h>

#include <vector>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

enum class Segmentation { slic, grid };

#define CNNVIZ_SLIC_OPTIONS(X)                                                               \
  X(int64_t, segments, 50, "About how many superpixels (or grid cells, for a grid).")        \
  X(double, compactness, 10.0, "Color vs position: higher gives more square segments.")      \
  X(int64_t, iterations, 10, "k-means iterations.")

/// SLIC superpixels: how many and how shaped.
struct SlicOptions {
  CNNVIZ_OPTIONS(SlicOptions, CNNVIZ_SLIC_OPTIONS)
};

#define CNNVIZ_LIME_OPTIONS(X)                                                                              \
  X(Segmentation, segmentation, Segmentation::slic, "How images are cut into segments: slic or grid.")      \
  X(SlicOptions, superpixels, {}, "SLIC parameters; `segments` also sets the number of grid cells.")        \
  X(torch::Tensor, custom_segments, torch::Tensor(),                                                        \
    "Segments given by the caller, (H, W) or (N, H, W) integer labels; overrides segmentation.")            \
  X(int64_t, samples, 1000, "Perturbed images per input image (the first keeps every segment).")            \
  X(double, keep_probability, 0.5, "Probability that a segment stays on in a perturbed image.")             \
  X(double, kernel_width, 0.25, "Width of the exponential kernel on the cosine distance to the unperturbed image.") \
  X(double, ridge, 1.0, "L2 penalty of the ridge regression (the intercept is not penalized).")             \
  X(double, baseline, 0.0, "The value switched-off segments get, in the input's (normalized) space.")       \
  X(Score, score, Score::probability, "Fit logits or softmax probabilities.")                               \
  X(Normalization, normalization, {}, "How inputs were normalized (SLIC segments the image in pixels).")     \
  X(int64_t, batch_size, 64, "Perturbed images per forward pass (bounds memory).") \
  X(ProgressCallback, progress, nullptr, \
    "Called after each batch; returning false stops (the fit uses the samples that ran). " \
    "Python passes progress= to the call.")

struct LimeOptions {
  CNNVIZ_OPTIONS(LimeOptions, CNNVIZ_LIME_OPTIONS)
};

struct LimeResult {
  torch::Tensor segments;              ///< (N, H, W) int64 labels 0..S_n-1
  std::vector<torch::Tensor> weights;  ///< per image (S_n,): the ridge coefficient of each segment
  torch::Tensor intercept;             ///< (N,)
  torch::Tensor r2;                    ///< (N,): weighted R^2 of the fit
  torch::Tensor map;                   ///< (N, H, W): each pixel's segment weight
  torch::Tensor target;                ///< (N,) int64
  torch::Tensor logits;                ///< (N, K) for x
  bool stopped_early = false;  ///< the progress callback stopped the loop (images not reached get no fit)
  bool interrupted = false;    ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// SLIC superpixels (Achanta et al. 2012) of an sRGB image (3, H, W) with values in
/// [0, 1] -> (H, W) int64 labels 0..S-1, each label one connected region.
torch::Tensor slic(const torch::Tensor& rgb, const SlicOptions& options = {});

/// A regular grid of about `segments` cells over (H, W) -> (H, W) int64 labels 0..S-1.
torch::Tensor grid_segments(int64_t height, int64_t width, int64_t segments);

/// LIME explanation of each image of x (N, C, H, W) for its target: `samples` random
/// on/off patterns of its segments (the first all on), the target's score for each
/// perturbed image, and a ridge regression weighted by sqrt(exp(-d^2 / width^2)) (d the cosine
/// distance of the pattern to all-on, LIME's kernel). Returns per-segment weights and the
/// map (N, H, W) of each pixel's segment weight.
LimeResult lime(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                const LimeOptions& options = {});

}  // namespace cnnviz
