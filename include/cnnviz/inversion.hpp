#pragma once
// Feature inversion (Mahendran & Vedaldi, "Understanding Deep Image Representations by
// Inverting Them", CVPR 2015): the image z whose activations at a layer match those of x,
//   argmin_z  euclidean_loss(phi(x), phi(z)) + lambda_alpha * alpha_norm(z, alpha)
//                                            + lambda_tv * total_variation(z, tv_beta),
// with the fused regularizers of regularizers.hpp. Gradients reach the image only (the
// model's parameters are frozen for the run) and each forward pass stops at the deepest
// layer it needs.

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cnnviz/detail/checked_capture.hpp"
#include "cnnviz/detail/checked_size.hpp"
#include "cnnviz/detail/gaussian_filter.hpp"
#include "cnnviz/normalization.hpp"
#include "cnnviz/detail/optimizer.hpp"
#include "cnnviz/detail/transforms.hpp"
#include "cnnviz/image.hpp"
#include "cnnviz/model.hpp"
#include "cnnviz/progress.hpp"
#include "cnnviz/snapshot.hpp"
#include "cnnviz/regularizers.hpp"

namespace cnnviz {

/// Where the optimized image starts (InversionOptions::init_image overrides it).
enum class InversionInit {
  noise,    ///< standard normal noise (seeded), as the notebook does
  zeros,    ///< the mean image (0 in normalized space)
  blurred,  ///< x blurred with a Gaussian of init_blur_sigma pixels
};

/// Options of invert() and invert_layers(). The priors are the notebook's; the optimizer
/// is Adam (lr 0.1), which converges on every sample model where the notebook's SGD at
/// lr 1e3 saturates the image (ResNet-20: feature loss 0.38 against 0.002 at layer1, see
/// docs/optimization.md). InversionOptions::notebook() restores the notebook's settings.
struct InversionOptions {
  /// The notebook's feature_inversion: SGD with momentum 0.9 at learning rate 1e3.
  static InversionOptions notebook() {
    return InversionOptions().optimizer(Optimizer::sgd).learning_rate(1e3).momentum(0.9);
  }

  /// Optimization steps (each one forward to the layer and one backward to the image).
  TORCH_ARG(int64_t, iterations) = 200;
  TORCH_ARG(Optimizer, optimizer) = Optimizer::adam;
  /// Step size: Adam wants about 0.05 to 0.1; 1e3 suits SGD on the normalized loss.
  TORCH_ARG(double, learning_rate) = 0.1;
  /// SGD momentum, or Adam's beta1.
  TORCH_ARG(double, momentum) = 0.9;
  /// Step decay: the learning rate is multiplied by lr_decay every lr_decay_every steps
  /// (0: constant).
  TORCH_ARG(double, lr_decay) = 0.1;
  TORCH_ARG(int64_t, lr_decay_every) = 0;
  /// The alpha-norm prior: lambda_alpha * sum |z|^alpha.
  TORCH_ARG(double, alpha) = 6;
  TORCH_ARG(double, lambda_alpha) = 1e-7;
  /// The total-variation prior: lambda_tv * TV_beta(z).
  TORCH_ARG(double, tv_beta) = 2;
  TORCH_ARG(double, lambda_tv) = 1e-8;
  TORCH_ARG(InversionInit, init) = InversionInit::noise;
  /// A start image of x's shape (normalized); when defined it overrides init.
  TORCH_ARG(torch::Tensor, init_image) = {};
  TORCH_ARG(double, init_blur_sigma) = 8;
  /// Seeds the start noise and the jitter.
  TORCH_ARG(int64_t, seed) = 0;
  /// Jitter: before each forward the image is rolled by up to this many pixels.
  TORCH_ARG(int64_t, jitter) = 0;
  /// Clamp the image to the valid normalized range [(0 - mean) / std, (1 - mean) / std]
  /// after each step (the notebook does not; without it the alpha-norm term can make SGD
  /// at the notebook's learning rate diverge).
  TORCH_ARG(bool, clamp_pixels) = true;
  /// The model's input normalization (for clamp_pixels).
  TORCH_ARG(std::vector<double>, mean) = kImageNetMean;
  TORCH_ARG(std::vector<double>, std) = kImageNetStd;
  /// Keep a copy of the image every this many steps (0: none).
  TORCH_ARG(int64_t, snapshot_every) = 0;
  /// Also handed each snapshot as it is taken, with the step of the current run and all
  /// images being optimized (N, C, H, W; L N of them for batch_layers).
  TORCH_ARG(SnapshotCallback, on_snapshot) = nullptr;
  /// invert_layers(): optimize the reconstructions of all layers as one batch (one forward
  /// to the deepest layer per step) instead of one after another.
  TORCH_ARG(bool, batch_layers) = false;
  /// Called after each step with (step, iterations, loss); returning false stops.
  TORCH_ARG(ProgressCallback, progress) = nullptr;
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

namespace detail {

inline void check_inversion_options(const InversionOptions& o, const char* fn) {
  check_loop_options(o.iterations(), o.learning_rate(), fn);
  auto finite_nonneg = [&](double v, const char* name) {
    TORCH_CHECK_VALUE(std::isfinite(v) && v >= 0, "cnnviz: ", fn, ": ", name,
                      " must be a finite number >= 0, got ", v);
  };
  finite_nonneg(o.lambda_alpha(), "lambda_alpha");
  finite_nonneg(o.lambda_tv(), "lambda_tv");
  TORCH_CHECK_VALUE(std::isfinite(o.alpha()) && o.alpha() > 0, "cnnviz: ", fn, ": alpha must be positive, got ",
                    o.alpha());
  TORCH_CHECK_VALUE(std::isfinite(o.tv_beta()) && o.tv_beta() > 0, "cnnviz: ", fn, ": tv_beta must be positive, got ",
                    o.tv_beta());
  TORCH_CHECK_VALUE(std::isfinite(o.lr_decay()) && o.lr_decay() > 0, "cnnviz: ", fn,
                    ": lr_decay must be positive, got ", o.lr_decay());
  TORCH_CHECK_VALUE(o.lr_decay_every() >= 0, "cnnviz: ", fn, ": lr_decay_every must be >= 0");
  TORCH_CHECK_VALUE(o.jitter() >= 0, "cnnviz: ", fn, ": jitter must be >= 0, got ", o.jitter());
  TORCH_CHECK_VALUE(o.snapshot_every() >= 0, "cnnviz: ", fn, ": snapshot_every must be >= 0");
  TORCH_CHECK_VALUE(o.seed() >= 0, "cnnviz: ", fn, ": seed must be >= 0, got ", o.seed());
  TORCH_CHECK_VALUE(std::isfinite(o.init_blur_sigma()) && o.init_blur_sigma() > 0, "cnnviz: ", fn,
                    ": init_blur_sigma must be positive");
}

/// The start image for x (N, C, H, W).
inline torch::Tensor inversion_start(const torch::Tensor& x, const InversionOptions& o, const char* fn) {
  torch::NoGradGuard no_grad;
  if (o.init_image().defined()) {
    const auto& z = o.init_image();
    TORCH_CHECK_VALUE(z.sizes() == x.sizes(), "cnnviz: ", fn, ": init_image must have x's shape ", x.sizes(),
                      ", got ", z.sizes());
    TORCH_CHECK_VALUE(z.is_floating_point() && torch::isfinite(z).all().item<bool>(), "cnnviz: ", fn,
                      ": init_image must be finite floating point");
    return z.detach().to(x.options()).clone();
  }
  switch (o.init()) {
    case InversionInit::zeros:
      return torch::zeros_like(x);
    case InversionInit::blurred:
      return gaussian_filter(x.detach(), o.init_blur_sigma()).contiguous();
    case InversionInit::noise:
    default:
      auto gen = seeded_generator(o.seed());
      return torch::randn(x.sizes(), gen, torch::TensorOptions().dtype(x.dtype())).to(x.device());
  }
}

/// The objective per group of images: for layer l, images [l n, (l + 1) n) of z are matched
/// to targets[l] (n images) at acts[l] (captured on all of z). Returns one 0-dim loss per
/// layer: feature loss (summed over its images) plus the priors of its images.
inline std::vector<torch::Tensor> inversion_terms(const std::vector<torch::Tensor>& targets,
                                                  const std::vector<torch::Tensor>& acts, const torch::Tensor& z,
                                                  const InversionOptions& o) {
  const int64_t layers = static_cast<int64_t>(targets.size());
  const int64_t n = targets.front().size(0);
  std::vector<torch::Tensor> terms;
  for (int64_t l = 0; l < layers; ++l) {
    const auto& act = acts[l];
    torch::Tensor loss;
    for (int64_t i = 0; i < n; ++i) {
      // Per image, so each reconstruction's gradient does not depend on the others.
      auto t = n == 1 ? targets[l] : targets[l].narrow(0, i, 1);
      auto e = cnnviz::euclidean_loss(t, act.narrow(0, l * n + i, 1));
      loss = loss.defined() ? loss + e : e;
    }
    auto zl = layers == 1 ? z : z.narrow(0, l * n, n);
    if (o.lambda_alpha() != 0) loss = loss + o.lambda_alpha() * cnnviz::alpha_norm(zl, o.alpha());
    if (o.lambda_tv() != 0) loss = loss + o.lambda_tv() * cnnviz::total_variation(zl, o.tv_beta());
    terms.push_back(loss);
  }
  return terms;
}

inline torch::Tensor sum_terms(const std::vector<torch::Tensor>& terms) {
  torch::Tensor total = terms.front();
  for (size_t i = 1; i < terms.size(); ++i) total = total + terms[i];
  return total;
}

/// Target activations of `layers` for x, in one forward pass.
inline std::vector<torch::Tensor> inversion_targets(const AnyModel& model, const torch::Tensor& x,
                                                    const std::vector<std::string>& layers, const char* fn) {
  torch::NoGradGuard no_grad;
  auto r = checked_capture(model, x, CaptureRequest{layers, /*need_output=*/false}, fn);
  std::vector<torch::Tensor> out;
  for (auto& kv : r.activations) {
    TORCH_CHECK_VALUE(kv.second.is_floating_point(), "cnnviz: ", fn, ": layer '", kv.first,
                      "' yields a non-floating point tensor");
    TORCH_CHECK_VALUE(kv.second.size(0) == x.size(0), "cnnviz: ", fn, ": layer '", kv.first,
                      "' does not keep the batch dimension (got shape ", kv.second.sizes(), ")");
    TORCH_CHECK_VALUE(kv.second.ne(0).any().item<bool>(), "cnnviz: ", fn, ": the activations of layer '", kv.first,
                      "' are all zero for this image, so there is nothing to match");
    out.push_back(kv.second.detach());
  }
  return out;
}

/// Optimizes len(layers) reconstructions of the n images behind `targets` at once: z0 holds
/// them as (len(layers) n, C, H, W), layer l's images at [l n, (l + 1) n). One result per
/// layer. `progress` gets the summed loss.
inline std::vector<InversionResult> run_inversion(const AnyModel& model, const std::vector<std::string>& layers,
                                                  const std::vector<torch::Tensor>& targets, const torch::Tensor& z0,
                                                  const InversionOptions& o, const ProgressCallback& progress) {
  const int64_t L = static_cast<int64_t>(layers.size()), n = targets.front().size(0);
  const int64_t T = o.iterations();
  torch::Tensor lo, hi;
  if (o.clamp_pixels()) std::tie(lo, hi) = valid_range(o.mean(), o.std(), z0.size(1), z0.options(), "invert");
  auto z = z0.detach().clone();
  if (lo.defined()) at::clamp_(z, lo, hi);
  z.requires_grad_(true);
  Stepper stepper(o.optimizer(), o.learning_rate(), o.momentum(), "invert");
  std::mt19937_64 rng(static_cast<uint64_t>(o.seed()));
  std::vector<torch::Tensor> history;
  std::vector<InversionResult> results(static_cast<size_t>(L));
  CaptureRequest request{layers, /*need_output=*/false};
  bool stopped = false;
  int64_t steps = 0;
  for (int64_t i = 0; i < T && !stopped; ++i) {
    stepper.set_learning_rate(decayed_learning_rate(o.learning_rate(), o.lr_decay(), o.lr_decay_every(), i));
    auto r = checked_capture(model, random_roll(z, o.jitter(), rng), request, "invert");
    std::vector<torch::Tensor> acts;
    for (auto& kv : r.activations) acts.push_back(kv.second);
    std::vector<torch::Tensor> terms;
    torch::Tensor loss, grad;
    guard_divergence(z, "invert", [&] {
      terms = inversion_terms(targets, acts, z, o);
      loss = sum_terms(terms);
      grad = torch::autograd::grad({loss}, {z}, /*grad_outputs=*/{}, /*retain_graph=*/c10::nullopt,
                                   /*create_graph=*/false, /*allow_unused=*/true)[0];
    });
    TORCH_CHECK_VALUE(grad.defined(), "cnnviz: invert: the activations do not depend on the input image");
    stepper.step(z, grad);
    if (lo.defined()) {
      torch::NoGradGuard no_grad;
      at::clamp_(z, lo, hi);
    }
    history.push_back(L == 1 ? loss.detach().view({1}) : torch::stack(terms).detach());
    steps = i + 1;
    if (o.snapshot_every() > 0 && steps % o.snapshot_every() == 0) {
      for (int64_t l = 0; l < L; ++l) {
        results[l].snapshots.push_back(z.detach().narrow(0, l * n, n).clone());
        results[l].snapshot_steps.push_back(steps);
      }
      if (o.on_snapshot()) o.on_snapshot()(steps, z.detach().clone());
    }
    if (progress && !progress(steps, T, loss.item<double>())) stopped = true;
  }
  auto losses = torch::stack(history).to(torch::kCPU, torch::kDouble);  // (steps, L)
  torch::NoGradGuard no_grad;
  check_not_diverged(z, "invert");
  auto final_acts = model.capture(z, request);
  std::vector<torch::Tensor> acts;
  for (auto& kv : final_acts.activations) acts.push_back(kv.second);
  auto final_terms = guard_divergence(z, "invert", [&] { return inversion_terms(targets, acts, z, o); });
  // The feature term alone, so results report it apart from the priors.
  auto feature_terms = inversion_terms(targets, acts, z, InversionOptions(o).lambda_alpha(0).lambda_tv(0));
  for (int64_t l = 0; l < L; ++l) {
    auto& res = results[l];
    res.layer = layers[l];
    res.image = z.detach().narrow(0, l * n, n).clone();
    res.losses = losses.select(1, l).contiguous();
    res.final_loss = final_terms[l].item<double>();
    res.feature_loss = feature_terms[l].item<double>();
    res.prior_loss = res.final_loss - res.feature_loss;
    res.stopped_early = stopped;
  }
  return results;
}

inline void check_inversion_input(const AnyModel& model, const torch::Tensor& x,
                                  const std::vector<std::string>& layers, const InversionOptions& o,
                                  const char* fn) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: ", fn, ": the list of layers is empty");
  check_layers(model, layers);
  check_inversion_options(o, fn);
}

}  // namespace detail

/// Reconstructs x (N, C, H, W) from its activations at `layer` (a qualified module name):
/// returns the image z (N, C, H, W) minimizing the objective above, the loss per step and
/// the snapshots. The model's parameters are left as they were (frozen during the run).
inline InversionResult invert(const AnyModel& model, const torch::Tensor& x, const Layer& layer,
                              const InversionOptions& options = {}) {
  detail::check_inversion_input(model, x, {layer}, options, "invert");
  FreezeParameters freeze(model);
  auto targets = detail::inversion_targets(model, x, {layer}, "invert");
  auto z0 = detail::inversion_start(x, options, "invert");
  return detail::run_inversion(model, {layer}, targets, z0, options, options.progress()).front();
}

/// invert() for several layers (the notebook's layer comparison): one result per layer,
/// in order. The targets of all layers come from one forward pass; with batch_layers the
/// reconstructions are optimized as one batch (L N, C, H, W), otherwise one after another.
/// Every layer starts from the same image. The progress callback counts steps over all
/// layers; when it stops the loop, the layers not yet started are left out of the result.
inline std::vector<InversionResult> invert_layers(const AnyModel& model, const torch::Tensor& x,
                                                  const Layers& layers,
                                                  const InversionOptions& options = {}) {
  detail::check_inversion_input(model, x, layers, options, "invert_layers");
  FreezeParameters freeze(model);
  auto targets = detail::inversion_targets(model, x, layers, "invert_layers");
  auto z0 = detail::inversion_start(x, options, "invert_layers");
  if (options.batch_layers()) {
    std::vector<torch::Tensor> copies(layers.size(), z0);
    return detail::run_inversion(model, layers, targets, torch::cat(copies), options, options.progress());
  }
  std::vector<InversionResult> results;
  const int64_t L = static_cast<int64_t>(layers.size()), T = options.iterations();
  detail::checked_product(L, T, "invert_layers", "layers", "iterations");
  for (int64_t l = 0; l < L; ++l) {
    ProgressCallback cb;
    if (options.progress())
      cb = [&](int64_t step, int64_t, double loss) { return options.progress()(l * T + step, L * T, loss); };
    auto r = detail::run_inversion(model, {layers[l]}, {targets[l]}, z0, options, cb).front();
    bool stop = r.stopped_early;
    results.push_back(std::move(r));
    if (stop) break;
  }
  return results;
}

/// The objective invert() minimizes, at image z (N, C, H, W), for the target x (same
/// shape): a 0-dim tensor in the autograd graph of z (jitter is not applied). For checking
/// gradients and for custom optimizers.
inline torch::Tensor inversion_loss(const AnyModel& model, const torch::Tensor& x, const torch::Tensor& z,
                                    const Layer& layer, const InversionOptions& options = {}) {
  detail::check_inversion_input(model, x, {layer}, options, "inversion_loss");
  check_image_batch(z, "z");
  TORCH_CHECK_VALUE(z.sizes() == x.sizes(), "cnnviz: inversion_loss: z must have x's shape ", x.sizes(), ", got ",
                    z.sizes());
  auto targets = detail::inversion_targets(model, x, {layer}, "inversion_loss");
  auto r = detail::checked_capture(model, z, CaptureRequest{{layer}, false}, "inversion_loss");
  return detail::inversion_terms(targets, {r.activations.front().second}, z, options).front();
}

}  // namespace cnnviz
