#pragma once
// Activation maximization (Erhan et al. 2009; Olah et al., "Feature Visualization",
// Distill 2017): synthesize images that excite a channel, a neuron, a class logit or a
// direction in channel space, with Fourier / decorrelated-colour parameterizations and
// random transforms at each step; top_filters() picks the channels an image excites most;
// deep_dream() (Mordvintsev et al. 2015) amplifies what a layer sees in a real image.
// Gradients reach the image only and the forward stops at the layer. The loops are
// compiled into the library (src/optimization.cpp).

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/layers.hpp"
#include "cnnviz/loop_options.hpp"
#include "cnnviz/model.hpp"
#include "cnnviz/regularizers.hpp"  // the priors of the objective, for users writing their own

namespace cnnviz {

/// What maximize() maximizes. Each entry of `indices` (or row of `directions`) gets its own
/// image, so several channels are visualized in one batch.
struct Objective {
  enum class Kind {
    channel,    ///< mean activation of channel c of `layer` (a 2-D layer: its unit c)
    neuron,     ///< activation of channel c at position (y, x) of `layer`
    logit,      ///< the model's output k (a class logit)
    direction,  ///< mean over positions of <activation, d> for a unit vector d in channel space
  };
  Kind kind = Kind::channel;
  std::string layer;             ///< qualified module name (unused for logits)
  std::vector<int64_t> indices;  ///< channels or classes, one image each
  /// Neuron position in the layer's activation for the untransformed image; -1: the centre.
  int64_t y = -1, x = -1;
  torch::Tensor directions;      ///< (C,) or (B, C) for Kind::direction

  /// Channel c of `layer`.
  static Objective channel(std::string layer, int64_t c) { return channels(std::move(layer), {c}); }
  /// Several channels of `layer`, one image each.
  static Objective channels(std::string layer, std::vector<int64_t> cs) {
    Objective o;
    o.layer = std::move(layer);
    o.indices = std::move(cs);
    return o;
  }
  /// Channel c at (y, x) of `layer`'s (N, C, h, w) activation (-1: the centre).
  static Objective neuron(std::string layer, int64_t c, int64_t y = -1, int64_t x = -1) {
    return neurons(std::move(layer), {c}, y, x);
  }
  static Objective neurons(std::string layer, std::vector<int64_t> cs, int64_t y = -1, int64_t x = -1) {
    Objective o = channels(std::move(layer), std::move(cs));
    o.kind = Kind::neuron;
    o.y = y;
    o.x = x;
    return o;
  }
  /// Output k of the model.
  static Objective logit(int64_t k) { return logits({k}); }
  static Objective logits(std::vector<int64_t> ks) {
    Objective o;
    o.kind = Kind::logit;
    o.indices = std::move(ks);
    return o;
  }
  /// A direction d (C,) in the channel space of `layer`, or several (B, C), one image each.
  static Objective direction(std::string layer, torch::Tensor d) {
    Objective o;
    o.kind = Kind::direction;
    o.layer = std::move(layer);
    o.directions = std::move(d);
    return o;
  }

  /// The number of images this objective optimizes.
  int64_t batch_size() const {
    if (kind == Kind::direction) return directions.defined() && directions.dim() == 2 ? directions.size(0) : 1;
    return static_cast<int64_t>(indices.size());
  }
};

/// Options of maximize(); the defaults follow Lucid/Lucent's render_vis. Images are made
/// in [0, 1] and normalized with `normalization` before the model sees them.
#define CNNVIZ_MAXIMIZE_OPTIONS(X)                                                                               \
  CNNVIZ_LOOP_OPTIONS(X, 256, 0.05, 8)                                                                           \
  CNNVIZ_OPTIMIZER_OPTIONS(X)                                                                                    \
  CNNVIZ_PRIOR_OPTIONS(X, 0, 0)                                                                                  \
  X(std::vector<int64_t>, size, (std::vector<int64_t>{128, 128}), "Image (height, width).")                     \
  X(Parameterization, parameterization, Parameterization::fourier, "How the image is represented: fourier or pixel.") \
  X(double, decay_power, 1.0, "Fourier: the spectrum is scaled by 1 / frequency^decay_power.")                 \
  X(bool, decorrelate, true, "Mix colours through ImageNet's colour correlation (needs 3 channels).")            \
  X(bool, sigmoid, true, "Map to [0, 1] through a sigmoid (otherwise the image is unbounded around 0.5).")       \
  X(double, init_scale, 0.01, "Standard deviation of the random start parameters.")                              \
  X(torch::Tensor, init_image, {}, "A start image (1 or B, 3, H, W), normalized like the model's input; overrides the noise.") \
  X(bool, transforms, true,                                                                                      \
    "Random transforms at each step: the canvas is padded by pad, then every image is shifted by up to jitter "  \
    "pixels, scaled by [scale_min, scale_max] and rotated by up to rotate degrees (one grid_sample).")           \
  X(int64_t, pad, 12, "Padding of the canvas before the transforms (pixels).")                                   \
  X(double, scale_min, 0.9, "Smallest random scale.")                                                            \
  X(double, scale_max, 1.1, "Largest random scale.")                                                             \
  X(double, rotate, 10, "Largest random rotation (degrees).")                                                    \
  X(double, lambda_blur, 0,                                                                                      \
    "Weight of the blur prior lambda_blur / 2 * ||x - blur(x)||^2, blur(x) held constant (pulls x towards its "  \
    "Gaussian blur; 0: off).")                                                                                   \
  X(double, blur_sigma, 1, "Gaussian sigma in pixels of the blur prior.")

struct MaximizeOptions {
  CNNVIZ_OPTIONS(MaximizeOptions, CNNVIZ_MAXIMIZE_OPTIONS)
};

/// What maximize() returns.
struct MaximizeResult {
  torch::Tensor image;              ///< (B, 3, H, W), normalized like the model's input
  torch::Tensor objective;          ///< (B,) the objective at `image` (no transforms)
  torch::Tensor initial_objective;  ///< (B,) the objective at the start image
  torch::Tensor losses;             ///< (steps,) float64: mean over images of -objective + priors
  std::vector<torch::Tensor> snapshots;  ///< (B, 3, H, W) after steps snapshot_steps
  std::vector<int64_t> snapshot_steps;
  bool stopped_early = false;  ///< the progress callback stopped the loop
  bool interrupted = false;    ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// The channels of a layer ranked per image.
struct TopFilters {
  torch::Tensor channels;     ///< (N, k) int64: per image, highest score first
  torch::Tensor scores;       ///< (N, k) float64: the ranking score (activation, or relative to the reference)
  torch::Tensor activations;  ///< (N, k) float64: the channels' activation (mean or max over positions)
  /// One forward pass, no loop: never stopped early or interrupted (kept so that every
  /// result of the optimization area has both).
  bool stopped_early = false;
  bool interrupted = false;
};

/// A filter's typical response to rank against (FilterStatistics::mean and ::std over a
/// reference set of images), so that filters which respond to everything (flat colour)
/// stop topping every image's list.
struct TopFiltersReference {
  torch::Tensor mean;  ///< (C,) mean over the reference images of the per-image mean activation
  torch::Tensor std;   ///< (C,) its standard deviation across those images ("zscore" only)
  /// "zscore": (a - mean) / std; "ratio": a / mean.
  std::string relative = "zscore";
};

/// Options of deep_dream(); the defaults follow the original DeepDream notebook. Each step
/// adds learning_rate times the gradient normalized to mean |g| = 1 per image (normalized
/// pixel units).
#define CNNVIZ_DEEP_DREAM_OPTIONS(X)                                                                             \
  CNNVIZ_LOOP_OPTIONS(X, 10, 0.02, 32)                                                                           \
  X(int64_t, octaves, 4, "Scales processed, smallest first.")                                                    \
  X(double, octave_scale, 1.4, "Each octave is octave_scale times the previous one (>= 1).")                    \
  X(double, grad_blur_sigma, 0, "Smooth the gradient with a Gaussian of this many pixels (0: off).")             \
  X(bool, clamp_pixels, true, "Clamp the image to the valid range of the normalization after each step.")

struct DeepDreamOptions {
  CNNVIZ_OPTIONS(DeepDreamOptions, CNNVIZ_DEEP_DREAM_OPTIONS)
};

/// What deep_dream() returns.
struct DeepDreamResult {
  torch::Tensor image;   ///< (N, C, H, W), normalized like x
  torch::Tensor losses;  ///< (steps,) float64: sum over layers of mean(activation^2)
  /// (N, C, h, w) at the octave's size after steps snapshot_steps (counted over all octaves).
  std::vector<torch::Tensor> snapshots;
  std::vector<int64_t> snapshot_steps;
  bool stopped_early = false;  ///< the progress callback stopped the loop
  bool interrupted = false;    ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// Synthesizes B images (B, 3, H, W) that maximize `objective` (one image per channel,
/// class or direction), by gradient ascent on the image parameterization with random
/// transforms at each step. Returns the images normalized like the model's input (show
/// them with deprocess), the objective before and after, and the loss per step.
MaximizeResult maximize(const AnyModel& model, const Objective& objective, const MaximizeOptions& options = {});

/// The k channels of `layer` each image of x (N, C, H, W) excites most, by mean activation
/// over positions (Reduction::mean) or maximum (Reduction::max; Reduction::none is refused),
/// ranked per image; with a reference (mean reduction only), ranked by the activation
/// relative to each filter's typical response. Returns (N, k) channels, scores and
/// activations; feed `channels[i]` to Objective::channels to see what they respond to.
TopFilters top_filters(const AnyModel& model, const torch::Tensor& x, const Layer& layer, int64_t k = 10,
                       Reduction reduction = Reduction::mean, const TopFiltersReference& reference = {});

/// DeepDream: gradient ascent from the image x (N, C, H, W) on the activation energy
/// sum over `layers` of mean(activation^2), over `octaves` scales (smallest first, the
/// detail found at one scale carried to the next), with jitter and the gradient
/// normalized per image. Returns the dreamed image (N, C, H, W), normalized like x.
DeepDreamResult deep_dream(const AnyModel& model, const torch::Tensor& x, const Layers& layers,
                           const DeepDreamOptions& options = {});

}  // namespace cnnviz
