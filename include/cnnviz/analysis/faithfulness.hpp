#pragma once
// Is an explanation faithful to the model? Deletion and insertion curves (Petsiuk et al.,
// "RISE", 2018) and the model-parameter randomization test (Adebayo et al., "Sanity Checks
// for Saliency Maps", 2018), with the Spearman rank correlation they compare maps by.

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/integrated_gradients.hpp"
#include "cnnviz/options.hpp"
#include "cnnviz/progress.hpp"

namespace cnnviz {

class ScriptModel;

/// Options of deletion_insertion(); the deletion and insertion baselines are RISE's.
#define CNNVIZ_DELETION_INSERTION_OPTIONS(X)                                                                   \
  X(int64_t, steps, 50,                                                                                        \
    "Steps of each curve: at step k = 0..steps the round(k P / steps) most important of the P pixels are "     \
    "changed, so each curve has steps + 1 points.")                                                            \
  X(BaselineKind, deletion_baseline, BaselineKind::zeros,                                                      \
    "What deleted pixels become (all channels): 'zeros' is the mean color.")                                   \
  X(BaselineKind, insertion_baseline, BaselineKind::blur,                                                      \
    "The image insertion starts from (RISE: a blurred copy of the input).")                                    \
  X(torch::Tensor, custom_baseline, torch::Tensor(),                                                           \
    "The baseline image for BaselineKind::custom: (C, H, W), (1, C, H, W) or (N, C, H, W).")                   \
  X(double, blur_sigma, 5.0, "Standard deviation in pixels of the blur baseline.")                             \
  X(Normalization, normalization, {}, "How inputs were normalized (black and uniform baselines).")             \
  X(Score, score, Score::probability, "The target's softmax probability (RISE) or its logit.")                 \
  X(c10::optional<int64_t>, batch_size, c10::nullopt,                                                          \
    "Perturbed images per forward pass (bounds memory). Unset: on a CPU, as many as keep one batch's input "   \
    "under 2^19 values (3 images of 3 x 224 x 224, 32 of 3 x 32 x 32), at least 1 and at most 32; elsewhere "  \
    "32. Larger batches at 224 x 224 run slower per image on a CPU with glibc's default allocator (their "     \
    "activations come from fresh pages on every forward; benchmarks/RESULTS.md).")                             \
  X(int64_t, seed, 0,                                                                                          \
    "Seeds the random order among pixels of equal attribution (a flat or ReLU-clipped map would otherwise "    \
    "be removed in raster order).")                                                                            \
  X(ProgressCallback, progress, nullptr,                                                                       \
    "Called after each batch; returning false stops (points not yet computed are NaN).")
struct DeletionInsertionOptions {
  CNNVIZ_OPTIONS(DeletionInsertionOptions, CNNVIZ_DELETION_INSERTION_OPTIONS)
};

struct DeletionInsertionResult {
  torch::Tensor fractions;      ///< (steps + 1,) float64: fraction of the pixels changed at each step
  torch::Tensor deletion;       ///< (N, steps + 1): target score as the most important pixels are removed
  torch::Tensor insertion;      ///< (N, steps + 1): target score as they are put back into the baseline
  torch::Tensor deletion_auc;   ///< (N,) float64: trapezoid area under deletion over fractions (lower: more faithful)
  torch::Tensor insertion_auc;  ///< (N,) float64: the same for insertion (higher: more faithful)
  torch::Tensor target;         ///< (N,) int64: the class scored
  torch::Tensor logits;         ///< (N, K) for x
  int64_t batch_size = 0;       ///< perturbed images per forward pass (options.batch_size, or the one chosen)
  bool stopped_early = false;   ///< the progress callback stopped the curves (missing points are NaN)
  bool interrupted = false;     ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// Deletion and insertion curves of an attribution map for x (N, C, H, W): pixels (all
/// channels) are ranked by `attribution`, most important first, and the target's score is
/// recorded as they are deleted from x (replaced by the deletion baseline) and inserted into
/// the insertion baseline. attribution: (N, h, w), (N, 1, h, w), or (h, w) when N = 1; a
/// map at lower resolution with x's aspect ratio (a CAM) is upsampled bilinearly to (H, W).
/// The 2 N steps perturbed images run batch_size at a time (deletion's first point and
/// insertion's last are x itself, scored by one forward of x); batch_size unset: see
/// deletion_insertion_batch_size().
DeletionInsertionResult deletion_insertion(const AnyModel& model, const torch::Tensor& x,
                                           const torch::Tensor& attribution, const Target& target = {},
                                           const DeletionInsertionOptions& options = {});

/// The batch size deletion_insertion() runs x (N, C, H, W) with: options.batch_size when
/// set; unset, on a CPU, floor(2^19 / (C H W)) clamped to [1, 32], elsewhere 32.
int64_t deletion_insertion_batch_size(const torch::Tensor& x, const DeletionInsertionOptions& options = {});

/// Spearman rank correlation of a and b (N, ...) per sample, over all other dimensions,
/// ties given their average rank -> (N,) float64. A constant row gives NaN.
torch::Tensor rank_correlation(const torch::Tensor& a, const torch::Tensor& b);

/// An attribution method for sanity_check(): the map (N, h, w) of x (N, C, H, W) for the
/// class `target` (N,) int64 of each sample, computed on `model`.
using AttributionFn =
    std::function<torch::Tensor(const AnyModel& model, const torch::Tensor& x, const torch::Tensor& target)>;

#define CNNVIZ_SANITY_CHECK_OPTIONS(X)                                                                         \
  X(std::vector<std::string>, layers, {},                                                                      \
    "Layers to re-initialize, cascading in this order; empty: every module that owns parameters, from the "    \
    "output back (reverse named_modules order).")                                                              \
  X(c10::optional<int64_t>, layers_from_top, c10::nullopt,                                                     \
    "Only the first this many steps of that cascade (unset: all).")                                            \
  X(int64_t, group_depth, 0,                                                                                   \
    "0: each module is one step; d > 0: modules whose names share their first d dot-separated parts "          \
    "('features.17' for d = 2) are re-initialized in one step.")                                               \
  X(bool, ssim, true,                                                                                          \
    "Also compare each map with the original by SSIM (maps scaled to [0, 1] each); needs maps of at least "    \
    "11 x 11.")                                                                                                \
  X(int64_t, seed, 0, "Seeds the re-initialization.")                                                          \
  X(ProgressCallback, progress, nullptr, "Called after each step; returning false stops (the steps done are returned).")
struct SanityCheckOptions {
  CNNVIZ_OPTIONS(SanityCheckOptions, CNNVIZ_SANITY_CHECK_OPTIONS)
};

struct SanityCheckResult {
  /// Step k re-initialized steps[k] (a module name or group prefix) on top of steps[0..k).
  std::vector<std::string> steps;
  torch::Tensor target;            ///< (N,) int64: the class explained at every step (the original prediction)
  torch::Tensor original;          ///< (N, h, w): the map for the trained model
  torch::Tensor maps;              ///< (S, N, h, w): the map after each step
  torch::Tensor rank_correlation;  ///< (S, N) float64: Spearman correlation with the original map
  torch::Tensor ssim;              ///< (S, N) float64, or undefined without options.ssim
  bool stopped_early = false;      ///< the progress callback stopped the cascade (fewer steps)
  bool interrupted = false;        ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// The model-parameter randomization test: re-initializes the parameters of `copy` layer by
/// layer from the output back (cascading: earlier steps stay randomized), and compares
/// method's map after each step with its map for `model` by Spearman rank correlation (and
/// SSIM). A faithful method's correlation falls. `copy` must be an independent copy of
/// `model` (same layers, no shared parameters): it is modified, `model` never is. Each
/// parameter is redrawn from a normal distribution with the original tensor's mean and
/// standard deviation (so activations keep their scale); BatchNorm running statistics are
/// buffers and stay. target: default the predicted class of the original model, fixed for
/// all steps. x (N, C, H, W).
SanityCheckResult sanity_check(const AttributionFn& method, const AnyModel& model, const AnyModel& copy,
                               const torch::Tensor& x, const Target& target = {},
                               const SanityCheckOptions& options = {});

/// sanity_check() on a TorchScript model: the copy is made here (Module::deepcopy).
SanityCheckResult sanity_check(const AttributionFn& method, const ScriptModel& model, const torch::Tensor& x,
                               const Target& target = {}, const SanityCheckOptions& options = {});

namespace detail {
/// An attribution map as (N, H, W) for x (N, C, H, W), upsampled when coarser (see
/// deletion_insertion()); `fn` names the caller in errors.
torch::Tensor attribution_pixels(const torch::Tensor& attribution, const torch::Tensor& x, const char* fn);
}  // namespace detail

}  // namespace cnnviz
