// FGSM, PGD and layer divergence (cnnviz/adversarial.hpp).

#include <torch/torch.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/adversarial.hpp"
#include "cnnviz/attribution_common.hpp"

namespace cnnviz {
namespace {

void check_attack(const torch::Tensor& x, double eps, bool targeted, const Target& target) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "cnnviz: eps must be non-negative, got ", eps);
  TORCH_CHECK_VALUE(!targeted || !target.is_predicted(),
                    "cnnviz: a targeted attack needs a target class (the predicted class is already reached)");
}

/// Refuses inputs whose pixels (x * std + mean) leave [0, 1]: the attack clamps to that
/// range, so such an input would be changed even by eps = 0. Usually x was normalized with
/// other statistics than `mean`/`std`, or not normalized at all.
void check_pixel_range(const torch::Tensor& pixels, const char* fn) {
  constexpr double tol = 1e-3;  // rounding of preprocess and of image formats
  torch::NoGradGuard no_grad;
  const double lo = pixels.min().item<double>(), hi = pixels.max().item<double>();
  TORCH_CHECK_VALUE(lo >= -tol && hi <= 1 + tol, "cnnviz: ", fn, ": x is outside the pixel range its normalization "
                    "implies: x * std + mean spans [", lo, ", ", hi, "], not [0, 1]; pass the mean and std x was "
                    "normalized with (cnnviz.preprocess uses ImageNet's unless told otherwise)");
}

/// One forward and backward at x: the logits, the resolved target, the mean cross-entropy
/// and the sign of its gradient with respect to x. The gradient in pixels is this one
/// divided by the (positive) std, so the signs agree.
struct LossGradient {
  torch::Tensor sign, logits, target;
  double loss = 0;
};

LossGradient loss_gradient(const AnyModel& model, const torch::Tensor& x, const Target& target) {
  auto xi = x.detach().requires_grad_(true);
  auto out = detail::checked_logits(model.capture(xi, CaptureRequest()).output, x.size(0));
  LossGradient r;
  r.target = target.resolve(out);
  auto loss = torch::nn::functional::cross_entropy(
      out, r.target, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  r.sign = torch::autograd::grad({loss}, {xi})[0].sign();
  r.logits = out.detach().to(x.scalar_type());
  r.loss = loss.item<double>() / x.size(0);
  return r;
}

AdversarialResult finish_attack(const AnyModel& model, const torch::Tensor& pixels, const torch::Tensor& adv_pixels,
                                const torch::Tensor& mean, const torch::Tensor& std, bool targeted,
                                AdversarialResult r) {
  r.adversarial = (adv_pixels - mean) / std;
  r.perturbation = adv_pixels - pixels;
  r.logits_after = detail::logits_of(model, r.adversarial);
  r.prediction_before = r.logits_before.argmax(1);
  r.prediction_after = r.logits_after.argmax(1);
  r.success = targeted ? r.prediction_after.eq(r.target) : r.prediction_after.ne(r.target);
  return r;
}

}  // namespace

AdversarialResult fgsm(const AnyModel& model, const torch::Tensor& x, const Target& target,
                       const FgsmOptions& options) {
  check_attack(x, options.eps(), options.targeted(), target);
  FreezeParameters frozen(model);
  auto [mean, std] = detail::normalization_stats(options.normalization(), x, "fgsm");
  auto pixels = x.detach() * std + mean;
  check_pixel_range(pixels, "fgsm");
  auto g = loss_gradient(model, x, target);
  AdversarialResult r;
  r.logits_before = g.logits;
  r.target = g.target;
  r.steps = 1;
  // [0, 1], widened to the pixel itself where rounding put it just outside: eps = 0 changes nothing.
  auto adv = torch::max(torch::min(pixels + (options.targeted() ? -options.eps() : options.eps()) * g.sign,
                                   pixels.clamp_min(1)),
                        pixels.clamp_max(0));
  return finish_attack(model, pixels, adv, mean, std, options.targeted(), std::move(r));
}

AdversarialResult pgd(const AnyModel& model, const torch::Tensor& x, const Target& target,
                      const PgdOptions& options) {
  check_attack(x, options.eps(), options.targeted(), target);
  TORCH_CHECK_VALUE(std::isfinite(options.step()) && options.step() >= 0, "cnnviz: step must be non-negative, got ",
                    options.step());
  TORCH_CHECK_VALUE(options.steps() >= 1, "cnnviz: steps must be positive, got ", options.steps());
  FreezeParameters frozen(model);
  auto [mean, std] = detail::normalization_stats(options.normalization(), x, "pgd");
  auto pixels = x.detach() * std + mean;
  check_pixel_range(pixels, "pgd");
  AdversarialResult r;
  r.logits_before = detail::logits_of(model, x);
  r.target = target.resolve(r.logits_before);
  auto lo = torch::max(pixels - options.eps(), pixels.clamp_max(0));
  auto hi = torch::min(pixels + options.eps(), pixels.clamp_min(1));
  auto adv = pixels.clone();
  if (options.random_start())
    adv = torch::max(torch::min(pixels + torch::empty_like(pixels).uniform_(-options.eps(), options.eps()), hi), lo);
  const double step = options.targeted() ? -options.step() : options.step();
  for (int64_t i = 0; i < options.steps(); ++i) {
    auto g = loss_gradient(model, (adv - mean) / std, Target(r.target));
    adv = torch::max(torch::min(adv + step * g.sign, hi), lo);
    r.steps = i + 1;
    if (!detail::report(options.progress(), i + 1, options.steps(), g.loss)) {
      r.stopped_early = i + 1 < options.steps();
      break;
    }
  }
  return finish_attack(model, pixels, adv, mean, std, options.targeted(), std::move(r));
}

std::vector<std::pair<std::string, torch::Tensor>> layer_divergence(const AnyModel& model, const torch::Tensor& clean,
                                                                    const torch::Tensor& adversarial,
                                                                    const Layers& layers) {
  check_image_batch(clean, "clean");
  check_image_batch(adversarial, "adversarial");
  TORCH_CHECK_VALUE(clean.sizes() == adversarial.sizes(), "cnnviz: clean ", clean.sizes(),
                    " and adversarial ", adversarial.sizes(), " batches differ in shape");
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: layer_divergence needs at least one layer");
  torch::NoGradGuard no_grad;
  const int64_t n = clean.size(0);
  CaptureRequest request;
  request.layers = layers.names();
  request.need_output = false;
  auto cap = model.capture(torch::cat({clean, adversarial}), request);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& kv : cap.activations) {
    auto a = kv.second.to(torch::kDouble).reshape({2 * n, -1});
    auto c = a.slice(0, 0, n), d = a.slice(0, n);
    out.emplace_back(kv.first, ((d - c).norm(2, 1) / c.norm(2, 1).clamp_min(1e-30)).to(clean.scalar_type()));
  }
  return out;
}

}  // namespace cnnviz
