#pragma once
// Activation maximization (Erhan et al. 2009; Olah et al., "Feature Visualization",
// Distill 2017): synthesize images that excite a channel, a neuron, a class logit or a
// direction in channel space, with Fourier / decorrelated-colour parameterizations and
// random transforms at each step; top_filters() picks the channels an image excites most;
// deep_dream() (Mordvintsev et al. 2015) amplifies what a layer sees in a real image.
// Gradients reach the image only and the forward stops at the layer.

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "cnnviz/detail/checked_capture.hpp"
#include "cnnviz/detail/checked_size.hpp"
#include "cnnviz/detail/gaussian_filter.hpp"
#include "cnnviz/normalization.hpp"
#include "cnnviz/detail/optimizer.hpp"
#include "cnnviz/detail/parameterization.hpp"
#include "cnnviz/detail/transforms.hpp"
#include "cnnviz/image.hpp"
#include "cnnviz/model.hpp"
#include "cnnviz/progress.hpp"
#include "cnnviz/snapshot.hpp"
#include "cnnviz/regularizers.hpp"

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

/// Options of maximize(); the defaults follow Lucid/Lucent's render_vis.
struct MaximizeOptions {
  TORCH_ARG(int64_t, iterations) = 256;
  TORCH_ARG(Optimizer, optimizer) = Optimizer::adam;
  TORCH_ARG(double, learning_rate) = 0.05;
  /// Adam's beta1, or SGD momentum.
  TORCH_ARG(double, momentum) = 0.9;
  /// Image (height, width).
  TORCH_ARG(std::vector<int64_t>, size) = std::vector<int64_t>({128, 128});
  TORCH_ARG(Parameterization, parameterization) = Parameterization::fourier;
  /// Fourier: spectrum scaled by 1 / frequency^decay_power.
  TORCH_ARG(double, decay_power) = 1.0;
  /// Mix colours through ImageNet's colour correlation (needs 3 channels).
  TORCH_ARG(bool, decorrelate) = true;
  /// Map to [0, 1] through a sigmoid (otherwise the image is unbounded around 0.5).
  TORCH_ARG(bool, sigmoid) = true;
  /// Standard deviation of the random start parameters.
  TORCH_ARG(double, init_scale) = 0.01;
  /// A start image (1 or B, 3, H, W), normalized like the model's input; overrides the noise.
  TORCH_ARG(torch::Tensor, init_image) = {};
  TORCH_ARG(int64_t, seed) = 0;
  /// Random transforms at each step: the canvas is padded by `pad`, then every image is
  /// shifted by up to `jitter` pixels, scaled by [scale_min, scale_max] and rotated by up
  /// to `rotate` degrees (one grid_sample for the batch).
  TORCH_ARG(bool, transforms) = true;
  TORCH_ARG(int64_t, pad) = 12;
  TORCH_ARG(int64_t, jitter) = 8;
  TORCH_ARG(double, scale_min) = 0.9;
  TORCH_ARG(double, scale_max) = 1.1;
  TORCH_ARG(double, rotate) = 10;
  /// Priors on the normalized image: lambda_alpha * alpha_norm, lambda_tv * TV, and
  /// lambda_blur / 2 * ||x - blur(x)||^2 with blur(x) held constant (pulls x towards its
  /// Gaussian blur of blur_sigma pixels). 0 switches a prior off.
  TORCH_ARG(double, lambda_alpha) = 0;
  TORCH_ARG(double, alpha) = 6;
  TORCH_ARG(double, lambda_tv) = 0;
  TORCH_ARG(double, tv_beta) = 2;
  TORCH_ARG(double, lambda_blur) = 0;
  TORCH_ARG(double, blur_sigma) = 1;
  /// The model's input normalization: images are made in [0, 1] and normalized with it.
  TORCH_ARG(std::vector<double>, mean) = kImageNetMean;
  TORCH_ARG(std::vector<double>, std) = kImageNetStd;
  /// Keep a copy of the images every this many steps (0: none).
  TORCH_ARG(int64_t, snapshot_every) = 0;
  /// Also handed each snapshot (B, 3, H, W), normalized, as it is taken.
  TORCH_ARG(SnapshotCallback, on_snapshot) = nullptr;
  TORCH_ARG(ProgressCallback, progress) = nullptr;
};

/// What maximize() returns.
struct MaximizeResult {
  torch::Tensor image;              ///< (B, 3, H, W), normalized like the model's input
  torch::Tensor objective;          ///< (B,) the objective at `image` (no transforms)
  torch::Tensor initial_objective;  ///< (B,) the objective at the start image
  torch::Tensor losses;             ///< (steps,) float64: mean over images of -objective + priors
  std::vector<torch::Tensor> snapshots;  ///< (B, 3, H, W) after steps snapshot_steps
  std::vector<int64_t> snapshot_steps;
  bool stopped_early = false;
  bool interrupted = false;  ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// The channels of a layer ranked per image.
struct TopFilters {
  torch::Tensor channels;     ///< (N, k) int64: per image, highest score first
  torch::Tensor scores;       ///< (N, k) float64: the ranking score (activation, or relative to the reference)
  torch::Tensor activations;  ///< (N, k) float64: the channels' activation (mean or max over positions)
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

/// Options of deep_dream(); the defaults follow the original DeepDream notebook.
struct DeepDreamOptions {
  /// Gradient steps per octave.
  TORCH_ARG(int64_t, iterations) = 10;
  /// Scales processed, smallest first; each is octave_scale times the previous one.
  TORCH_ARG(int64_t, octaves) = 4;
  TORCH_ARG(double, octave_scale) = 1.4;
  /// Step size on the gradient normalized to mean |g| = 1 per image (normalized pixel units).
  TORCH_ARG(double, learning_rate) = 0.02;
  /// The image is rolled by up to this many pixels before each step.
  TORCH_ARG(int64_t, jitter) = 32;
  /// Smooth the gradient with a Gaussian of this many pixels (0: off).
  TORCH_ARG(double, grad_blur_sigma) = 0;
  TORCH_ARG(bool, clamp_pixels) = true;
  TORCH_ARG(std::vector<double>, mean) = kImageNetMean;
  TORCH_ARG(std::vector<double>, std) = kImageNetStd;
  TORCH_ARG(int64_t, seed) = 0;
  /// Every this many steps (counted over all octaves) on_snapshot gets the current image
  /// (N, C, h, w) at the octave's size, normalized like x (0: never).
  TORCH_ARG(int64_t, snapshot_every) = 0;
  TORCH_ARG(SnapshotCallback, on_snapshot) = nullptr;
  TORCH_ARG(ProgressCallback, progress) = nullptr;
};

/// What deep_dream() returns.
struct DeepDreamResult {
  torch::Tensor image;   ///< (N, C, H, W), normalized like x
  torch::Tensor losses;  ///< (steps,) float64: sum over layers of mean(activation^2)
  bool stopped_early = false;
  bool interrupted = false;  ///< Ctrl-C stopped the loop (set by the Python bindings)
};

namespace detail {

/// The dtype and device of a model's parameters (float32 on the CPU when it has none).
inline torch::TensorOptions model_tensor_options(const AnyModel& model) {
  auto params = model.parameters();
  auto opts = torch::TensorOptions().dtype(torch::kFloat);
  if (!params.empty() && params.front().is_floating_point())
    opts = opts.device(params.front().device()).dtype(params.front().dtype());
  return opts;
}

/// Validates an objective that needs no forward pass to check.
inline void check_objective(const AnyModel& model, const Objective& o, const char* fn) {
  if (o.kind == Objective::Kind::direction) {
    TORCH_CHECK_VALUE(o.directions.defined() && (o.directions.dim() == 1 || o.directions.dim() == 2) &&
                          o.directions.numel() > 0 && o.directions.is_floating_point(),
                      "cnnviz: ", fn, ": a direction must be a floating point (C,) or (B, C) tensor");
    TORCH_CHECK_VALUE(torch::isfinite(o.directions).all().item<bool>(), "cnnviz: ", fn,
                      ": the direction contains NaN or infinite values");
    TORCH_CHECK_VALUE((o.directions.norm(2, {-1}) > 0).all().item<bool>(), "cnnviz: ", fn,
                      ": a direction must not be zero");
  } else {
    TORCH_CHECK_VALUE(!o.indices.empty(), "cnnviz: ", fn, ": the objective names no ",
                      o.kind == Objective::Kind::logit ? "class" : "channel");
    for (auto i : o.indices)
      TORCH_CHECK_INDEX(i >= 0, "cnnviz: ", fn, ": ", o.kind == Objective::Kind::logit ? "class" : "channel",
                        " index must be >= 0, got ", i);
  }
  if (o.kind != Objective::Kind::logit) {
    TORCH_CHECK_VALUE(!o.layer.empty(), "cnnviz: ", fn, ": the objective needs a layer name");
    check_layers(model, {o.layer});
  }
}

/// The objective for each image of x (B, 3, H, W): (B,), in the autograd graph of x.
/// `base` is the (h, w) of the layer's activation for the untransformed image: a neuron
/// position refers to it, and is shifted by half the growth of a padded canvas.
inline torch::Tensor objective_values(const AnyModel& model, const torch::Tensor& x, const Objective& o,
                                      const char* fn, std::pair<int64_t, int64_t> base = {-1, -1}) {
  using Kind = Objective::Kind;
  const int64_t B = x.size(0);
  CaptureRequest request;
  if (o.kind == Kind::logit) {
    request.need_output = true;
  } else {
    request.layers = {o.layer};
    request.need_output = false;
  }
  auto r = checked_capture(model, x, request, fn);
  auto rows = torch::arange(B, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
  auto index_tensor = [&]() { return torch::tensor(o.indices, torch::kLong).to(x.device()); };
  auto check_range = [&](int64_t count, const char* what, const std::string& where) {
    for (auto i : o.indices)
      TORCH_CHECK_INDEX(i < count, "cnnviz: ", fn, ": ", what, " ", i, " is out of range for ", where, " with ", count,
                        " ", what, "s");
  };
  if (o.kind == Kind::logit) {
    const auto& out = r.output;
    TORCH_CHECK_VALUE(out.dim() == 2 && out.size(0) == B, "cnnviz: ", fn,
                      ": a logit objective needs model outputs of shape (N, K), got ", out.sizes());
    check_range(out.size(1), "class", "the model's output");
    return out.index({rows, index_tensor()});
  }
  const auto& act = r.activations.front().second;
  TORCH_CHECK_VALUE(act.dim() >= 2 && act.size(0) == B, "cnnviz: ", fn, ": layer '", o.layer,
                    "' must give (N, C, ...) activations, got shape ", act.sizes());
  const std::string where = "layer '" + o.layer + "'";
  if (o.kind == Kind::direction) {
    TORCH_CHECK_VALUE(o.directions.size(-1) == act.size(1), "cnnviz: ", fn, ": the direction has ",
                      o.directions.size(-1), " entries but ", where, " has ", act.size(1), " channels");
    auto d = o.directions.to(act.options());
    d = (d / d.norm(2, {-1}, true)).view({o.directions.dim() == 2 ? B : 1, act.size(1)});
    std::vector<int64_t> shape = {d.size(0), d.size(1)};
    for (int64_t i = 2; i < act.dim(); ++i) shape.push_back(1);
    auto dot = (act * d.view(shape)).sum(1);
    return dot.dim() == 1 ? dot : dot.flatten(1).mean(1);
  }
  check_range(act.size(1), "channel", where);
  if (o.kind == Kind::neuron) {
    TORCH_CHECK_VALUE(act.dim() == 4, "cnnviz: ", fn, ": a neuron objective needs (N, C, h, w) activations, ", where,
                      " gives shape ", act.sizes());
    const int64_t dy = base.first < 0 ? 0 : (act.size(2) - base.first) / 2;
    const int64_t dx = base.second < 0 ? 0 : (act.size(3) - base.second) / 2;
    int64_t y = o.y < 0 ? act.size(2) / 2 : o.y + dy, x0 = o.x < 0 ? act.size(3) / 2 : o.x + dx;
    TORCH_CHECK_INDEX(y < act.size(2) && x0 < act.size(3), "cnnviz: ", fn, ": neuron position (", y, ", ", x0,
                      ") is outside the ", act.size(2), " x ", act.size(3), " activation of ", where);
    return act.index({rows, index_tensor(), y, x0});
  }
  auto sel = act.index({rows, index_tensor()});
  return sel.dim() == 1 ? sel : sel.flatten(1).mean(1);
}

inline void check_maximize_options(const MaximizeOptions& o, const char* fn) {
  check_loop_options(o.iterations(), o.learning_rate(), fn);
  TORCH_CHECK_VALUE(o.size().size() == 2 && o.size()[0] > 0 && o.size()[1] > 0, "cnnviz: ", fn,
                    ": size must be (height, width) with positive values");
  auto nonneg = [&](double v, const char* name) {
    TORCH_CHECK_VALUE(std::isfinite(v) && v >= 0, "cnnviz: ", fn, ": ", name, " must be a finite number >= 0, got ", v);
  };
  nonneg(o.lambda_alpha(), "lambda_alpha");
  nonneg(o.lambda_tv(), "lambda_tv");
  nonneg(o.lambda_blur(), "lambda_blur");
  nonneg(o.decay_power(), "decay_power");
  nonneg(o.rotate(), "rotate");
  TORCH_CHECK_VALUE(std::isfinite(o.init_scale()) && o.init_scale() > 0, "cnnviz: ", fn,
                    ": init_scale must be positive");
  TORCH_CHECK_VALUE(o.alpha() > 0 && o.tv_beta() > 0 && o.blur_sigma() > 0 && std::isfinite(o.alpha()) &&
                        std::isfinite(o.tv_beta()) && std::isfinite(o.blur_sigma()),
                    "cnnviz: ", fn, ": alpha, tv_beta and blur_sigma must be positive");
  TORCH_CHECK_VALUE(o.pad() >= 0 && o.jitter() >= 0, "cnnviz: ", fn, ": pad and jitter must be >= 0");
  TORCH_CHECK_VALUE(std::isfinite(o.scale_min()) && std::isfinite(o.scale_max()) && o.scale_min() > 0 &&
                        o.scale_min() <= o.scale_max(),
                    "cnnviz: ", fn, ": need 0 < scale_min <= scale_max, got ", o.scale_min(), " and ", o.scale_max());
  TORCH_CHECK_VALUE(o.snapshot_every() >= 0, "cnnviz: ", fn, ": snapshot_every must be >= 0");
  TORCH_CHECK_VALUE(o.seed() >= 0, "cnnviz: ", fn, ": seed must be >= 0, got ", o.seed());
}

/// The priors of maximize() on the normalized images x; undefined when all are off.
inline torch::Tensor maximize_priors(const torch::Tensor& x, const MaximizeOptions& o) {
  torch::Tensor total;
  auto add = [&](const torch::Tensor& t) { total = total.defined() ? total + t : t; };
  if (o.lambda_alpha() != 0) add(o.lambda_alpha() * cnnviz::alpha_norm(x, o.alpha()));
  if (o.lambda_tv() != 0) add(o.lambda_tv() * cnnviz::total_variation(x, o.tv_beta()));
  if (o.lambda_blur() != 0) {
    auto blurred = [&] {
      torch::NoGradGuard no_grad;
      return gaussian_filter(x.detach(), o.blur_sigma());
    }();
    add(0.5 * o.lambda_blur() * (x - blurred).pow(2).sum());
  }
  return total;
}

}  // namespace detail

/// Synthesizes B images (B, 3, H, W) that maximize `objective` (one image per channel,
/// class or direction), by gradient ascent on the image parameterization with random
/// transforms at each step. Returns the images normalized like the model's input (show
/// them with deprocess), the objective before and after, and the loss per step.
inline MaximizeResult maximize(const AnyModel& model, const Objective& objective, const MaximizeOptions& options = {}) {
  const auto& o = options;
  detail::check_maximize_options(o, "maximize");
  detail::check_objective(model, objective, "maximize");
  FreezeParameters freeze(model);
  const int64_t B = objective.batch_size(), H = o.size()[0], W = o.size()[1];
  auto topts = detail::model_tensor_options(model);
  detail::ImageParameterization param(o.parameterization(), B, H, W, o.decorrelate(), o.sigmoid(), o.decay_power(),
                                      topts);
  torch::Tensor mean, std;
  std::tie(mean, std) = detail::normalization(o.mean(), o.std(), 3, topts, "maximize");
  auto to_input = [&](const torch::Tensor& p) { return (param.to_rgb(p).to(topts) - mean) / std; };

  torch::Tensor p;
  if (o.init_image().defined()) {
    const auto& init = o.init_image();
    TORCH_CHECK_VALUE(init.dim() == 4 && (init.size(0) == 1 || init.size(0) == B) && init.size(1) == 3 &&
                          init.size(2) == H && init.size(3) == W,
                      "cnnviz: maximize: init_image must be (1 or ", B, ", 3, ", H, ", ", W, "), got ", init.sizes());
    TORCH_CHECK_VALUE(init.is_floating_point() && torch::isfinite(init).all().item<bool>(), "cnnviz: maximize: "
                      "init_image must be finite floating point");
    auto rgb = init.detach().to(topts) * std + mean;
    p = param.from_rgb(rgb.expand({B, 3, H, W}));
  } else {
    auto gen = detail::seeded_generator(o.seed());
    p = torch::randn(param.shape(), gen, torch::TensorOptions().dtype(torch::kFloat)) * o.init_scale();
  }
  p = p.to(topts.device()).requires_grad_(true);

  MaximizeResult result;
  std::pair<int64_t, int64_t> base{-1, -1};
  {
    torch::NoGradGuard no_grad;  // also checks channel and class ranges before the loop
    auto x0 = to_input(p);
    result.initial_objective = detail::objective_values(model, x0, objective, "maximize").detach().cpu();
    if (objective.kind == Objective::Kind::neuron) {
      auto act = detail::checked_capture(model, x0, CaptureRequest{{objective.layer}, false}, "maximize");
      base = {act.activations.front().second.size(2), act.activations.front().second.size(3)};
    }
  }
  detail::TransformRanges ranges;
  if (o.transforms()) ranges = {o.pad(), o.jitter(), o.scale_min(), o.scale_max(), o.rotate()};
  detail::Stepper stepper(o.optimizer(), o.learning_rate(), o.momentum(), "maximize");
  std::mt19937_64 rng(static_cast<uint64_t>(o.seed()));
  detail::LossLog log(o.progress());
  const int64_t T = o.iterations();
  for (int64_t i = 0; i < T; ++i) {
    auto x = to_input(p);
    torch::Tensor loss, grad;
    detail::guard_divergence(x, "maximize", [&] {
      auto values =
          detail::objective_values(model, detail::random_transform(x, ranges, rng), objective, "maximize", base);
      loss = -values.sum();
      auto priors = detail::maximize_priors(x, o);
      if (priors.defined()) loss = loss + priors;
      grad = torch::autograd::grad({loss}, {p}, {}, c10::nullopt, false, /*allow_unused=*/true)[0];
    });
    TORCH_CHECK_VALUE(grad.defined(), "cnnviz: maximize: the objective does not depend on the input image");
    stepper.step(p, grad);
    const int64_t step = i + 1;
    if (o.snapshot_every() > 0 && step % o.snapshot_every() == 0) {
      torch::NoGradGuard no_grad;
      result.snapshots.push_back(to_input(p).detach());
      result.snapshot_steps.push_back(step);
      if (o.on_snapshot()) o.on_snapshot()(step, result.snapshots.back());
    }
    if (!log.record(loss / static_cast<double>(B), step, T)) {
      result.stopped_early = true;
      break;
    }
  }
  torch::NoGradGuard no_grad;
  result.image = to_input(p).detach();
  result.objective = detail::objective_values(model, result.image, objective, "maximize").detach().cpu();
  result.losses = log.tensor();
  return result;
}

/// The k channels of `layer` each image of x (N, C, H, W) excites most, by mean activation
/// over positions (`reduction` "mean") or maximum ("max"), ranked per image; with a
/// reference (mean reduction only), ranked by the activation relative to each filter's
/// typical response. Feed `channels[i]` to Objective::channels to see what they respond to.
inline TopFilters top_filters(const AnyModel& model, const torch::Tensor& x, const Layer& layer, int64_t k = 10,
                              const std::string& reduction = "mean", const TopFiltersReference& reference = {}) {
  check_image_batch(x);
  detail::check_layers(model, {layer});
  TORCH_CHECK_VALUE(reduction == "mean" || reduction == "max", "cnnviz: top_filters: reduction must be 'mean' or "
                    "'max', got '", reduction, "'");
  TORCH_CHECK_VALUE(k >= 1, "cnnviz: top_filters: k must be at least 1, got ", k);
  const bool relative = reference.mean.defined();
  if (relative) {
    TORCH_CHECK_VALUE(reduction == "mean", "cnnviz: top_filters: a reference holds mean activations; use "
                      "reduction='mean' with it");
    TORCH_CHECK_VALUE(reference.relative == "zscore" || reference.relative == "ratio", "cnnviz: top_filters: "
                      "relative must be 'zscore' or 'ratio', got '", reference.relative, "'");
    TORCH_CHECK_VALUE(reference.relative != "zscore" || reference.std.defined(), "cnnviz: top_filters: a z-score "
                      "needs the reference's std");
  }
  torch::NoGradGuard no_grad;
  auto r = detail::checked_capture(model, x, CaptureRequest{{layer}, false}, "top_filters");
  auto act = r.activations.front().second;
  TORCH_CHECK_VALUE(act.dim() >= 2 && act.size(0) == x.size(0), "cnnviz: top_filters: layer '", layer,
                    "' must give (N, C, ...) activations, got shape ", act.sizes());
  TORCH_CHECK_VALUE(k <= act.size(1), "cnnviz: top_filters: k = ", k, " exceeds the ", act.size(1),
                    " channels of layer '", layer, "'");
  auto a = act.to(torch::kFloat);
  auto flat = a.dim() == 2 ? a.unsqueeze(2) : a.flatten(2);  // (N, C, positions)
  auto per_image = (reduction == "mean" ? flat.mean(2) : std::get<0>(flat.max(2))).to(torch::kDouble).cpu();
  auto score = per_image;
  if (relative) {
    auto check = [&](const torch::Tensor& t, const char* what) {
      TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == per_image.size(1), "cnnviz: top_filters: the reference ", what,
                        " must be (", per_image.size(1), ",) for layer '", layer, "', got ", t.sizes());
      return t.detach().to(torch::kDouble).cpu();
    };
    auto mean = check(reference.mean, "mean");
    // A floor at 1% of the median scale: a filter silent on the reference set would
    // otherwise get an unbounded score from any response.
    if (reference.relative == "zscore") {
      auto sd = check(reference.std, "std");
      auto floor = std::max(sd.median().item<double>() * 1e-2, 1e-12);
      score = (per_image - mean) / sd.clamp_min(floor);
    } else {
      auto floor = std::max(mean.abs().median().item<double>() * 1e-2, 1e-12);
      score = per_image / mean.abs().clamp_min(floor);
    }
  }
  auto top = score.topk(k, 1);
  TopFilters out;
  out.scores = std::get<0>(top);
  out.channels = std::get<1>(top);
  out.activations = per_image.gather(1, out.channels);
  return out;
}

/// DeepDream: gradient ascent from the image x (N, C, H, W) on the activation energy
/// sum over `layers` of mean(activation^2), over `octaves` scales (smallest first, the
/// detail found at one scale carried to the next), with jitter and the gradient
/// normalized per image. Returns the dreamed image (N, C, H, W), normalized like x.
inline DeepDreamResult deep_dream(const AnyModel& model, const torch::Tensor& x, const Layers& layers,
                                  const DeepDreamOptions& options = {}) {
  const auto& o = options;
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: deep_dream: the list of layers is empty");
  detail::check_layers(model, layers);
  detail::check_loop_options(o.iterations(), o.learning_rate(), "deep_dream");
  TORCH_CHECK_VALUE(o.octaves() >= 1, "cnnviz: deep_dream: octaves must be at least 1, got ", o.octaves());
  TORCH_CHECK_VALUE(std::isfinite(o.octave_scale()) && o.octave_scale() >= 1, "cnnviz: deep_dream: octave_scale must "
                    "be >= 1, got ", o.octave_scale());
  detail::checked_product(o.octaves(), o.iterations(), "deep_dream", "octaves", "iterations");
  // One image size per octave is kept: more octaves than pixels per side cannot differ.
  TORCH_CHECK_VALUE(o.octaves() <= std::max(x.size(2), x.size(3)), "cnnviz: deep_dream: ", o.octaves(),
                    " octaves for a ", x.size(2), " x ", x.size(3), " image is too many: at most one per pixel of "
                    "its longer side");
  TORCH_CHECK_VALUE(o.jitter() >= 0, "cnnviz: deep_dream: jitter must be >= 0");
  TORCH_CHECK_VALUE(std::isfinite(o.grad_blur_sigma()) && o.grad_blur_sigma() >= 0, "cnnviz: deep_dream: "
                    "grad_blur_sigma must be >= 0");
  TORCH_CHECK_VALUE(o.seed() >= 0, "cnnviz: deep_dream: seed must be >= 0");
  TORCH_CHECK_VALUE(o.snapshot_every() >= 0, "cnnviz: deep_dream: snapshot_every must be >= 0");
  const int64_t H = x.size(2), W = x.size(3);
  std::vector<std::pair<int64_t, int64_t>> sizes;
  for (int64_t k = 0; k < o.octaves(); ++k) {
    double f = std::pow(o.octave_scale(), static_cast<double>(o.octaves() - 1 - k));
    sizes.emplace_back(std::llround(H / f), std::llround(W / f));
    TORCH_CHECK_VALUE(sizes.back().first >= 1 && sizes.back().second >= 1, "cnnviz: deep_dream: ", o.octaves(),
                      " octaves of scale ", o.octave_scale(), " shrink the ", H, " x ", W, " image to nothing");
  }
  FreezeParameters freeze(model);
  torch::Tensor lo, hi;
  if (o.clamp_pixels()) std::tie(lo, hi) = detail::valid_range(o.mean(), o.std(), x.size(1), x.options(), "deep_dream");
  namespace F = torch::nn::functional;
  auto resize = [](const torch::Tensor& t, std::pair<int64_t, int64_t> s) {
    if (t.size(2) == s.first && t.size(3) == s.second) return t;
    return F::interpolate(t, F::InterpolateFuncOptions().size(std::vector<int64_t>{s.first, s.second})
                                 .mode(torch::kBilinear).align_corners(false));
  };
  std::mt19937_64 rng(static_cast<uint64_t>(o.seed()));
  detail::LossLog log(o.progress());
  const int64_t total = o.octaves() * o.iterations();  // checked above
  DeepDreamResult result;
  CaptureRequest request{layers, false};
  auto source = x.detach();
  torch::Tensor detail_img, img;
  for (int64_t k = 0; k < o.octaves() && !result.stopped_early; ++k) {
    torch::Tensor base;
    {
      torch::NoGradGuard no_grad;
      base = resize(source, sizes[k]);
      detail_img = detail_img.defined() ? resize(detail_img, sizes[k]) : torch::zeros_like(base);
      img = (base + detail_img).contiguous();
    }
    img.requires_grad_(true);
    for (int64_t i = 0; i < o.iterations(); ++i) {
      auto r = detail::checked_capture(model, detail::random_roll(img, o.jitter(), rng), request, "deep_dream");
      torch::Tensor loss;
      for (auto& kv : r.activations) {
        auto e = kv.second.pow(2).mean();
        loss = loss.defined() ? loss + e : e;
      }
      auto g = torch::autograd::grad({loss}, {img}, {}, c10::nullopt, false, /*allow_unused=*/true)[0];
      TORCH_CHECK_VALUE(g.defined(), "cnnviz: deep_dream: the activations do not depend on the input image");
      {
        torch::NoGradGuard no_grad;
        if (o.grad_blur_sigma() > 0) g = detail::gaussian_filter(g, o.grad_blur_sigma());
        g = g / (g.abs().mean({1, 2, 3}, true) + 1e-8);
        img.add_(g, o.learning_rate());
        if (lo.defined()) at::clamp_(img, lo, hi);
      }
      const int64_t step = k * o.iterations() + i + 1;
      if (o.on_snapshot() && o.snapshot_every() > 0 && step % o.snapshot_every() == 0)
        o.on_snapshot()(step, img.detach().clone());
      if (!log.record(loss, step, total)) {
        result.stopped_early = true;
        break;
      }
    }
    torch::NoGradGuard no_grad;
    detail_img = img.detach() - base;
  }
  torch::NoGradGuard no_grad;
  if (img.size(2) == H && img.size(3) == W) {
    result.image = img.detach();
  } else {
    // Stopped before the last octave: the detail found so far on the full-size image.
    result.image = source + resize(detail_img, {H, W});
    if (lo.defined()) result.image = at::clamp(result.image, lo, hi);
  }
  result.losses = log.tensor();
  return result;
}

}  // namespace cnnviz
