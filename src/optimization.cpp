// The optimization loops of inversion.hpp and maximization.hpp (feature inversion,
// activation maximization, top filters, deep dream), compiled once into the library.
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
#include "cnnviz/detail/optimization.hpp"
#include "cnnviz/detail/optimizer.hpp"
#include "cnnviz/detail/parameterization.hpp"
#include "cnnviz/detail/transforms.hpp"
#include "cnnviz/inversion.hpp"
#include "cnnviz/maximization.hpp"
#include "cnnviz/regularizers.hpp"

namespace cnnviz {
namespace detail {
namespace {

/// Checks the rows of CNNVIZ_LOOP_OPTIONS (o is any loop's Options).
template <class O>
void check_loop(const O& o, const char* fn) {
  check_loop_options(o.iterations(), o.learning_rate(), fn);
  TORCH_CHECK_VALUE(o.seed() >= 0, "cnnviz: ", fn, ": seed must be >= 0, got ", o.seed());
  TORCH_CHECK_VALUE(o.jitter() >= 0, "cnnviz: ", fn, ": jitter must be >= 0, got ", o.jitter());
  TORCH_CHECK_VALUE(o.snapshot_every() >= 0, "cnnviz: ", fn, ": snapshot_every must be >= 0, got ",
                    o.snapshot_every());
  // A bad normalization (empty, mismatched counts, non-positive std) raises before any work.
  const auto& n = o.normalization();
  TORCH_CHECK_VALUE(!n.mean().empty() && !n.std().empty(), "cnnviz: ", fn, ": mean and std need at least one value");
  normalization(n.mean(), n.std(), static_cast<int64_t>(std::max(n.mean().size(), n.std().size())),
                torch::TensorOptions(torch::kDouble), fn);
}

/// Checks the rows of CNNVIZ_PRIOR_OPTIONS.
template <class O>
void check_priors(const O& o, const char* fn) {
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
}

void check_inversion_options(const InversionOptions& o, const char* fn) {
  check_loop(o, fn);
  check_priors(o, fn);
  TORCH_CHECK_VALUE(std::isfinite(o.lr_decay()) && o.lr_decay() > 0, "cnnviz: ", fn,
                    ": lr_decay must be positive, got ", o.lr_decay());
  TORCH_CHECK_VALUE(o.lr_decay_every() >= 0, "cnnviz: ", fn, ": lr_decay_every must be >= 0");
  TORCH_CHECK_VALUE(std::isfinite(o.init_blur_sigma()) && o.init_blur_sigma() > 0, "cnnviz: ", fn,
                    ": init_blur_sigma must be positive");
}

/// The start image for x (N, C, H, W).
torch::Tensor inversion_start(const torch::Tensor& x, const InversionOptions& o, const char* fn) {
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
std::vector<torch::Tensor> inversion_terms(const std::vector<torch::Tensor>& targets,
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

torch::Tensor sum_terms(const std::vector<torch::Tensor>& terms) {
  torch::Tensor total = terms.front();
  for (size_t i = 1; i < terms.size(); ++i) total = total + terms[i];
  return total;
}

/// Target activations of `layers` for x, in one forward pass.
std::vector<torch::Tensor> inversion_targets(const AnyModel& model, const torch::Tensor& x,
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
std::vector<InversionResult> run_inversion(const AnyModel& model, const std::vector<std::string>& layers,
                                                  const std::vector<torch::Tensor>& targets, const torch::Tensor& z0,
                                                  const InversionOptions& o, const ProgressCallback& progress) {
  const int64_t L = static_cast<int64_t>(layers.size()), n = targets.front().size(0);
  const int64_t T = o.iterations();
  torch::Tensor lo, hi;
  if (o.clamp_pixels()) std::tie(lo, hi) = valid_range(o.normalization().mean(), o.normalization().std(), z0.size(1), z0.options(), "invert");
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

void check_inversion_input(const AnyModel& model, const torch::Tensor& x,
                                  const std::vector<std::string>& layers, const InversionOptions& o,
                                  const char* fn) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: ", fn, ": the list of layers is empty");
  check_layers(model, layers);
  check_inversion_options(o, fn);
}

/// The dtype and device of a model's parameters (float32 on the CPU when it has none).
torch::TensorOptions model_tensor_options(const AnyModel& model) {
  auto params = model.parameters();
  auto opts = torch::TensorOptions().dtype(torch::kFloat);
  if (!params.empty() && params.front().is_floating_point())
    opts = opts.device(params.front().device()).dtype(params.front().dtype());
  return opts;
}

/// Validates an objective that needs no forward pass to check.
void check_objective(const AnyModel& model, const Objective& o, const char* fn) {
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

}  // namespace

/// The objective for each image of x (B, 3, H, W): (B,), in the autograd graph of x.
/// `base` is the (h, w) of the layer's activation for the untransformed image: a neuron
/// position refers to it, and is shifted by half the growth of a padded canvas.
torch::Tensor objective_values(const AnyModel& model, const torch::Tensor& x, const Objective& o,
                                      const char* fn, std::pair<int64_t, int64_t> base) {
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

namespace {

void check_maximize_options(const MaximizeOptions& o, const char* fn) {
  check_loop(o, fn);
  check_priors(o, fn);
  TORCH_CHECK_VALUE(o.size().size() == 2 && o.size()[0] > 0 && o.size()[1] > 0, "cnnviz: ", fn,
                    ": size must be (height, width) with positive values");
  auto nonneg = [&](double v, const char* name) {
    TORCH_CHECK_VALUE(std::isfinite(v) && v >= 0, "cnnviz: ", fn, ": ", name, " must be a finite number >= 0, got ", v);
  };
  nonneg(o.lambda_blur(), "lambda_blur");
  nonneg(o.decay_power(), "decay_power");
  nonneg(o.rotate(), "rotate");
  TORCH_CHECK_VALUE(std::isfinite(o.init_scale()) && o.init_scale() > 0, "cnnviz: ", fn,
                    ": init_scale must be positive");
  TORCH_CHECK_VALUE(o.blur_sigma() > 0 && std::isfinite(o.blur_sigma()), "cnnviz: ", fn,
                    ": blur_sigma must be positive, got ", o.blur_sigma());
  TORCH_CHECK_VALUE(o.pad() >= 0, "cnnviz: ", fn, ": pad must be >= 0, got ", o.pad());
  TORCH_CHECK_VALUE(std::isfinite(o.scale_min()) && std::isfinite(o.scale_max()) && o.scale_min() > 0 &&
                        o.scale_min() <= o.scale_max(),
                    "cnnviz: ", fn, ": need 0 < scale_min <= scale_max, got ", o.scale_min(), " and ", o.scale_max());
}

/// The priors of maximize() on the normalized images x; undefined when all are off.
torch::Tensor maximize_priors(const torch::Tensor& x, const MaximizeOptions& o) {
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

}  // namespace
}  // namespace detail

// Documented in the header.
InversionResult invert(const AnyModel& model, const torch::Tensor& x, const Layer& layer,
                              const InversionOptions& options) {
  detail::check_inversion_input(model, x, {layer}, options, "invert");
  FreezeParameters freeze(model);
  auto targets = detail::inversion_targets(model, x, {layer}, "invert");
  auto z0 = detail::inversion_start(x, options, "invert");
  return detail::run_inversion(model, {layer}, targets, z0, options, options.progress()).front();
}

// Documented in the header.
std::vector<InversionResult> invert_layers(const AnyModel& model, const torch::Tensor& x,
                                                  const Layers& layers,
                                                  const InversionOptions& options) {
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

// Documented in the header.
torch::Tensor inversion_loss(const AnyModel& model, const torch::Tensor& x, const torch::Tensor& z,
                                    const Layer& layer, const InversionOptions& options) {
  detail::check_inversion_input(model, x, {layer}, options, "inversion_loss");
  check_image_batch(z, "z");
  TORCH_CHECK_VALUE(z.sizes() == x.sizes(), "cnnviz: inversion_loss: z must have x's shape ", x.sizes(), ", got ",
                    z.sizes());
  auto targets = detail::inversion_targets(model, x, {layer}, "inversion_loss");
  auto r = detail::checked_capture(model, z, CaptureRequest{{layer}, false}, "inversion_loss");
  return detail::inversion_terms(targets, {r.activations.front().second}, z, options).front();
}

// Documented in the header.
MaximizeResult maximize(const AnyModel& model, const Objective& objective, const MaximizeOptions& options) {
  const auto& o = options;
  detail::check_maximize_options(o, "maximize");
  detail::check_objective(model, objective, "maximize");
  FreezeParameters freeze(model);
  const int64_t B = objective.batch_size(), H = o.size()[0], W = o.size()[1];
  auto topts = detail::model_tensor_options(model);
  detail::ImageParameterization param(o.parameterization(), B, H, W, o.decorrelate(), o.sigmoid(), o.decay_power(),
                                      topts);
  torch::Tensor mean, std;
  std::tie(mean, std) = detail::normalization(o.normalization().mean(), o.normalization().std(), 3, topts, "maximize");
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

// Documented in the header.
TopFilters top_filters(const AnyModel& model, const torch::Tensor& x, const Layer& layer, int64_t k,
                       Reduction reduction, const TopFiltersReference& reference) {
  check_image_batch(x);
  detail::check_layers(model, {layer});
  TORCH_CHECK_VALUE(reduction == Reduction::mean || reduction == Reduction::max, "cnnviz: top_filters: reduction "
                    "must be mean or max (a ranking needs one score per channel), got ", reduction_name(reduction));
  TORCH_CHECK_VALUE(k >= 1, "cnnviz: top_filters: k must be at least 1, got ", k);
  const bool relative = reference.mean.defined();
  if (relative) {
    TORCH_CHECK_VALUE(reduction == Reduction::mean, "cnnviz: top_filters: a reference holds mean activations; use "
                      "reduction='mean' (Reduction::mean) with it");
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
  auto per_image = (reduction == Reduction::mean ? flat.mean(2) : std::get<0>(flat.max(2))).to(torch::kDouble).cpu();
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

// Documented in the header.
DeepDreamResult deep_dream(const AnyModel& model, const torch::Tensor& x, const Layers& layers,
                                  const DeepDreamOptions& options) {
  const auto& o = options;
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: deep_dream: the list of layers is empty");
  detail::check_layers(model, layers);
  detail::check_loop(o, "deep_dream");
  TORCH_CHECK_VALUE(o.octaves() >= 1, "cnnviz: deep_dream: octaves must be at least 1, got ", o.octaves());
  TORCH_CHECK_VALUE(std::isfinite(o.octave_scale()) && o.octave_scale() >= 1, "cnnviz: deep_dream: octave_scale must "
                    "be >= 1, got ", o.octave_scale());
  detail::checked_product(o.octaves(), o.iterations(), "deep_dream", "octaves", "iterations");
  // One image size per octave is kept: more octaves than pixels per side cannot differ.
  TORCH_CHECK_VALUE(o.octaves() <= std::max(x.size(2), x.size(3)), "cnnviz: deep_dream: ", o.octaves(),
                    " octaves for a ", x.size(2), " x ", x.size(3), " image is too many: at most one per pixel of "
                    "its longer side");
  TORCH_CHECK_VALUE(std::isfinite(o.grad_blur_sigma()) && o.grad_blur_sigma() >= 0, "cnnviz: deep_dream: "
                    "grad_blur_sigma must be >= 0");
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
  if (o.clamp_pixels()) std::tie(lo, hi) = detail::valid_range(o.normalization().mean(), o.normalization().std(), x.size(1), x.options(), "deep_dream");
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
      if (o.snapshot_every() > 0 && step % o.snapshot_every() == 0) {
        result.snapshots.push_back(img.detach().clone());
        result.snapshot_steps.push_back(step);
        if (o.on_snapshot()) o.on_snapshot()(step, result.snapshots.back());
      }
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
