#pragma once
// Feature inversion (Mahendran & Vedaldi, "Understanding Deep Image Representations by
// Inverting Them", CVPR 2015): the image z whose activations at a layer match those of x,
//   argmin_z  euclidean_loss(phi(x), phi(z)) + lambda_alpha * alpha_norm(z, alpha)
//                                            + lambda_tv * total_variation(z, tv_beta),
// with the fused regularizers of regularizers.hpp. Gradients reach the image only (the
// model's parameters are frozen for the run) and each forward pass stops at the deepest
// layer it needs. The loops are compiled into the library (src/optimization.cpp).

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cnnviz/layers.hpp"
#include "cnnviz/loop_options.hpp"
#include "cnnviz/model.hpp"
#include "cnnviz/regularizers.hpp"  // the priors of the objective, for users writing their own

namespace cnnviz {

/// Options of invert() and invert_layers(). The priors are the notebook's; the optimizer
/// is Adam (lr 0.1), which converges on every sample model where the notebook's SGD at
/// lr 1e3 saturates the image (ResNet-20: feature loss 0.38 against 0.002 at layer1, see
/// docs/optimization.md). InversionOptions::notebook() restores the notebook's settings.
#define CNNVIZ_INVERSION_OPTIONS(X)                                                                                \
  CNNVIZ_LOOP_OPTIONS(X, 200, 0.1, 0)                                                                              \
  CNNVIZ_OPTIMIZER_OPTIONS(X)                                                                                      \
  CNNVIZ_PRIOR_OPTIONS(X, 1e-7, 1e-8)                                                                              \
  X(double, lr_decay, 0.1, "Step decay: the learning rate is multiplied by lr_decay every lr_decay_every steps.") \
  X(int64_t, lr_decay_every, 0, "Steps between learning-rate decays (0: constant).")                              \
  X(InversionInit, init, InversionInit::noise, "Where the image starts: noise (seeded), zeros or blurred.")       \
  X(torch::Tensor, init_image, {}, "A start image of x's shape (normalized); when defined it overrides init.")     \
  X(double, init_blur_sigma, 8, "Gaussian sigma in pixels of the blurred start.")                                  \
  X(bool, clamp_pixels, true,                                                                                      \
    "Clamp the image to the valid range of the normalization after each step (the notebook does not; without it " \
    "the alpha-norm term can make SGD at the notebook's learning rate diverge).")                                 \
  X(bool, batch_layers, false,                                                                                     \
    "invert_layers(): optimize all layers' reconstructions as one batch (one forward to the deepest layer per "    \
    "step) instead of one after another.")

struct InversionOptions {
  CNNVIZ_OPTIONS(InversionOptions, CNNVIZ_INVERSION_OPTIONS)

  /// The notebook's feature_inversion: SGD with momentum 0.9 at learning rate 1e3.
  static InversionOptions notebook() {
    return InversionOptions().optimizer(Optimizer::sgd).learning_rate(1e3).momentum(0.9);
  }
};

/// What invert() returns.
struct InversionResult {
  std::string layer;
  torch::Tensor image;             ///< (N, C, H, W), the reconstruction, detached
  torch::Tensor losses;            ///< (steps,) float64: the loss before each update
  std::vector<torch::Tensor> snapshots;  ///< (N, C, H, W) after steps snapshot_steps
  std::vector<int64_t> snapshot_steps;
  double final_loss = 0;           ///< the loss of `image` (no jitter): feature_loss + prior_loss
  /// The feature term of final_loss: euclidean_loss(phi(x_i), phi(image_i)) summed over i.
  double feature_loss = 0;
  /// The priors' part of final_loss: lambda_alpha * alpha_norm + lambda_tv * total_variation.
  double prior_loss = 0;
  bool stopped_early = false;      ///< the progress callback stopped the loop
  bool interrupted = false;        ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// Reconstructs x (N, C, H, W) from its activations at `layer` (a qualified module name):
/// returns the image z (N, C, H, W) minimizing the objective above, the loss per step and
/// the snapshots. The model's parameters are left as they were (frozen during the run).
InversionResult invert(const AnyModel& model, const torch::Tensor& x, const Layer& layer,
                       const InversionOptions& options = {});

/// invert() for several layers (the notebook's layer comparison): one result per layer,
/// in order. The targets of all layers come from one forward pass; with batch_layers the
/// reconstructions are optimized as one batch (L N, C, H, W), otherwise one after another.
/// Every layer starts from the same image. The progress callback counts steps over all
/// layers; when it stops the loop, the layers not yet started are left out of the result.
std::vector<InversionResult> invert_layers(const AnyModel& model, const torch::Tensor& x, const Layers& layers,
                                           const InversionOptions& options = {});

/// The objective invert() minimizes, at image z (N, C, H, W), for the target x (same
/// shape): a 0-dim tensor in the autograd graph of z (jitter is not applied). For checking
/// gradients and for custom optimizers.
torch::Tensor inversion_loss(const AnyModel& model, const torch::Tensor& x, const torch::Tensor& z,
                             const Layer& layer, const InversionOptions& options = {});

}  // namespace cnnviz
