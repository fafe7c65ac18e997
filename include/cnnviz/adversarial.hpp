#pragma once
// Adversarial examples: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018) under an
// L-infinity budget in pixel units, respecting the input normalization and the [0, 1]
// pixel range; and how much each layer's activations move under an attack. Bodies in
// src/adversarial.cpp.

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/layers.hpp"
#include "cnnviz/normalization.hpp"
#include "cnnviz/options.hpp"
#include "cnnviz/progress.hpp"

namespace cnnviz {

#define CNNVIZ_FGSM_OPTIONS(X)                                                       \
  X(double, eps, 2.0 / 255, "L-infinity budget in pixel units (pixels in [0, 1]).")  \
  X(bool, targeted, false, "True: move toward the target class; false: away from it.") \
  X(Normalization, normalization, {}, "How inputs were normalized from pixels in [0, 1].")

struct FgsmOptions {
  CNNVIZ_OPTIONS(FgsmOptions, CNNVIZ_FGSM_OPTIONS)
};

#define CNNVIZ_PGD_OPTIONS(X)                                                                  \
  X(double, eps, 2.0 / 255, "L-infinity budget in pixel units (pixels in [0, 1]).")            \
  X(double, step, 0.5 / 255, "Step in pixel units.")                                           \
  X(int64_t, steps, 10, "Number of projected steps.")                                          \
  X(bool, random_start, true, "Start from a uniform random point of the eps-ball.")            \
  X(bool, targeted, false, "True: move toward the target class; false: away from it.")         \
  X(Normalization, normalization, {}, "How inputs were normalized from pixels in [0, 1].")     \
  X(ProgressCallback, progress, nullptr,                                                       \
    "Called after each step with the mean loss; returning false stops (the result is the current iterate).")

struct PgdOptions {
  CNNVIZ_OPTIONS(PgdOptions, CNNVIZ_PGD_OPTIONS)
};

/// The result of fgsm() and pgd().
struct AdversarialResult {
  torch::Tensor adversarial;        ///< (N, C, H, W), normalized like x
  torch::Tensor perturbation;       ///< (N, C, H, W) in pixel units, within [-eps, eps]
  torch::Tensor target;             ///< (N,): the class attacked (moved away from, or toward if targeted)
  torch::Tensor logits_before;      ///< (N, K) for x
  torch::Tensor logits_after;       ///< (N, K) for the adversarial images
  torch::Tensor prediction_before;  ///< (N,) int64
  torch::Tensor prediction_after;   ///< (N,) int64
  torch::Tensor success;            ///< (N,) bool: prediction changed away from / to the target
  int64_t steps = 0;                ///< gradient steps taken (fgsm: 1; pgd: fewer than asked when stopped)
  bool stopped_early = false;       ///< pgd's progress callback stopped the loop before `steps`
  bool interrupted = false;         ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// Fast gradient sign method: one step of eps * sign(gradient of the cross-entropy) in
/// pixel space, away from the target (untargeted; default: the predicted class) or toward
/// it (targeted), clamped to [0, 1]. x (N, C, H, W) normalized as `normalization` says.
AdversarialResult fgsm(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                       const FgsmOptions& options = {});

/// Projected gradient descent: `steps` signed steps of size `step` in pixel space, each
/// projected back onto the eps-ball around x and onto [0, 1]; optionally from a random
/// start. x (N, C, H, W) normalized as `normalization` says. A progress callback that
/// returns false stops after that step (stopped_early; the result is the current iterate).
AdversarialResult pgd(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                      const PgdOptions& options = {});

/// How far an attack moves each layer: ||A(adversarial) - A(clean)|| / ||A(clean)|| per
/// sample, for each layer (in request order) -> (N,). clean and adversarial (N, C, H, W);
/// `layers` one name, a vector or a brace list.
std::vector<std::pair<std::string, torch::Tensor>> layer_divergence(const AnyModel& model, const torch::Tensor& clean,
                                                                    const torch::Tensor& adversarial,
                                                                    const Layers& layers);

}  // namespace cnnviz
