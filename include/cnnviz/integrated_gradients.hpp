#pragma once
// Integrated gradients (Sundararajan et al. 2017): the path integral of the gradient from a
// baseline to the input, by the trapezoid rule or Gauss-Legendre quadrature, with the
// convergence delta that completeness predicts to be zero.

#include <torch/torch.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/detail/gaussian_filter.hpp"

namespace cnnviz {

enum class IntegrationMethod { riemann_trapezoid, gauss_legendre };

/// The reference input the path starts from.
enum class BaselineKind {
  zeros,    ///< zeros in normalized space (the dataset's mean color)
  black,    ///< pixels 0, normalized
  blur,     ///< the input blurred with a Gaussian of `blur_sigma` pixels (edges replicated)
  uniform,  ///< pixels uniform in [0, 1], normalized (one draw per call)
  custom,   ///< `custom_baseline`
};

struct IntegratedGradientsOptions {
  /// Points on the path where the gradient is evaluated.
  TORCH_ARG(int64_t, steps) = 50;
  TORCH_ARG(IntegrationMethod, method) = IntegrationMethod::riemann_trapezoid;
  TORCH_ARG(BaselineKind, baseline) = BaselineKind::zeros;
  /// The baseline for BaselineKind::custom: (C, H, W), (1, C, H, W) or (N, C, H, W).
  TORCH_ARG(torch::Tensor, custom_baseline) = torch::Tensor();
  /// Standard deviation in pixels of the blur baseline.
  TORCH_ARG(double, blur_sigma) = 5.0;
  /// How inputs were normalized (black and uniform baselines).
  TORCH_ARG(Normalization, normalization) = Normalization();
  /// Path points per forward/backward pass (bounds memory).
  TORCH_ARG(int64_t, batch_size) = 16;
  TORCH_ARG(ChannelReduction, reduction) = ChannelReduction::mean;
  /// Called after each batch; returning false stops (the result is then a partial sum).
  TORCH_ARG(ProgressCallback, progress) = nullptr;
};

struct IntegratedGradientsResult : Attribution {
  torch::Tensor baseline;        ///< (N, C, H, W)
  torch::Tensor delta;           ///< (N,): sum(attribution) - (f(x) - f(baseline)) for the target
  torch::Tensor score;           ///< (N,): f(x) for the target
  torch::Tensor baseline_score;  ///< (N,): f(baseline) for the target
};

namespace detail {

/// Quadrature nodes in [0, 1] and weights summing to 1 for `steps` points.
inline std::pair<std::vector<double>, std::vector<double>> quadrature(IntegrationMethod method, int64_t steps) {
  std::vector<double> nodes(steps), weights(steps);
  if (method == IntegrationMethod::riemann_trapezoid) {
    TORCH_CHECK_VALUE(steps >= 2, "cnnviz: the trapezoid rule needs steps >= 2, got ", steps);
    for (int64_t i = 0; i < steps; ++i) {
      nodes[i] = static_cast<double>(i) / (steps - 1);
      weights[i] = (i == 0 || i == steps - 1 ? 0.5 : 1.0) / (steps - 1);
    }
    return {nodes, weights};
  }
  // Gauss-Legendre on [-1, 1] by Newton's method on P_n, mapped to [0, 1].
  const double pi = 3.14159265358979323846;
  for (int64_t i = 0; i < steps; ++i) {
    double z = std::cos(pi * (i + 0.75) / (steps + 0.5)), dp = 1;
    for (int iter = 0; iter < 100; ++iter) {
      double p0 = 1, p1 = z;
      for (int64_t k = 2; k <= steps; ++k) {
        double p2 = ((2.0 * k - 1) * z * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      dp = steps * (z * p1 - p0) / (z * z - 1);
      double dz = p1 / dp;
      z -= dz;
      if (std::abs(dz) < 1e-15) break;
    }
    nodes[i] = (1 - z) / 2;
    weights[i] = 1.0 / ((1 - z * z) * dp * dp);  // 2 / ((1 - z^2) P'^2), halved for [0, 1]
  }
  return {nodes, weights};
}

inline torch::Tensor make_baseline(const torch::Tensor& x, const IntegratedGradientsOptions& o) {
  switch (o.baseline()) {
    case BaselineKind::zeros:
      return torch::zeros_like(x);
    case BaselineKind::black: {
      auto [mean, std] = normalization_stats(o.normalization(), x, "integrated_gradients");
      return ((0 - mean) / std).expand_as(x).contiguous();
    }
    case BaselineKind::blur:
      TORCH_CHECK_VALUE(o.blur_sigma() > 0, "cnnviz: blur_sigma must be positive, got ", o.blur_sigma());
      return gaussian_filter(x.detach(), o.blur_sigma());
    case BaselineKind::uniform: {
      auto [mean, std] = normalization_stats(o.normalization(), x, "integrated_gradients");
      return (torch::rand_like(x) - mean) / std;
    }
    case BaselineKind::custom: {
      auto b = o.custom_baseline();
      TORCH_CHECK_VALUE(b.defined(), "cnnviz: the custom baseline is undefined");
      TORCH_CHECK_VALUE(b.is_floating_point(), "cnnviz: the baseline must be floating point, got ",
                        b.scalar_type());
      if (b.dim() == 3) b = b.unsqueeze(0);
      TORCH_CHECK_VALUE(b.dim() == 4 && (b.size(0) == 1 || b.size(0) == x.size(0)) &&
                            b.sizes().slice(1) == x.sizes().slice(1),
                        "cnnviz: the baseline must have shape (C, H, W), (1, C, H, W) or (N, C, H, W) "
                        "matching the input ", x.sizes(), ", got ", o.custom_baseline().sizes());
      TORCH_CHECK_VALUE(torch::isfinite(b).all().item<bool>(), "cnnviz: the baseline contains NaN or "
                        "infinite values");
      return b.detach().to(x.device(), x.scalar_type()).expand_as(x).contiguous();
    }
  }
  TORCH_CHECK(false, "cnnviz: unknown baseline kind");
}

}  // namespace detail

/// Integrated gradients of each sample's target score: (x - baseline) times the path
/// integral of the gradient, x (N, C, H, W) -> attribution (N, C, H, W), map (N, H, W),
/// and the convergence delta (N,) = sum(attribution) - (f(x) - f(baseline)).
inline IntegratedGradientsResult integrated_gradients(const AnyModel& model, const torch::Tensor& x,
                                                      const Target& target = {},
                                                      const IntegratedGradientsOptions& options = {}) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(options.steps() >= 1, "cnnviz: steps must be positive, got ", options.steps());
  detail::check_batch_size(options.batch_size());
  const int64_t total = detail::checked_product(x.size(0), options.steps(), "integrated_gradients", "images", "steps");
  auto [nodes, weights] = detail::quadrature(options.method(), options.steps());
  FreezeParameters frozen(model);
  const int64_t n = x.size(0), steps = options.steps();
  IntegratedGradientsResult r;
  r.baseline = detail::make_baseline(x, options);
  // f(x) and f(baseline) for the delta, and the logits that resolve the targets, come from
  // the path's own passes where they can: the trapezoid rule's end points are x and the
  // baseline, so its steps run in the order (x, baseline, the rest) and the first batch
  // resolves the targets; Gauss-Legendre's nodes are inner points, so x and the baseline
  // ride in front of its first batch. A separate forward of 2N rows (torch's slow path
  // for a batch of one or two images, and a batch more) is left only for a first batch
  // too small to hold the N images of x.
  const bool ends_on_path = options.method() == IntegrationMethod::riemann_trapezoid;
  const int64_t chunks = total / options.batch_size() + (total % options.batch_size() != 0);
  const int64_t first_end = detail::scaled(total, 1, chunks);
  const int64_t riders = !ends_on_path && n <= first_end ? 2 * n : 0;  // rows in front of batch 0
  const bool separate = ends_on_path ? first_end < n : riders == 0;
  if (separate) {
    auto both = detail::logits_of(model, torch::cat({x.detach(), r.baseline}));
    r.logits = both.slice(0, 0, n);
    r.target = target.resolve(r.logits);
    r.score = r.logits.gather(1, r.target.view({-1, 1})).squeeze(1);
    r.baseline_score = both.slice(0, n).gather(1, r.target.view({-1, 1})).squeeze(1);
  }
  std::vector<int64_t> order(steps);
  for (int64_t i = 0; i < steps; ++i) order[i] = i;
  if (ends_on_path) {  // x (alpha = 1) first, then the baseline (alpha = 0), then the inner points
    order[0] = steps - 1;
    for (int64_t i = 1; i < steps; ++i) order[i] = i - 1;
  }
  auto order_t = torch::tensor(order, torch::kLong).to(x.device());
  auto diff = x.detach() - r.baseline;
  auto alpha = torch::tensor(nodes, torch::kDouble).to(x.device(), x.scalar_type());
  auto weight = torch::tensor(weights, torch::kDouble).to(x.device(), x.scalar_type());
  auto sum = torch::zeros_like(x);
  int64_t covered = 0;  // items run
  // Item k is path point order[k / N] of image k % N.
  bool done = detail::for_each_batch(total, options.batch_size(), options.progress(),
                                     [&](int64_t b, int64_t e) {
    auto idx = torch::arange(b, e, x.options().dtype(torch::kLong));
    auto img = idx.remainder(n), step = order_t.index_select(0, idx.div(n, "floor"));
    auto a = alpha.index_select(0, step).view({-1, 1, 1, 1});
    auto xb = r.baseline.index_select(0, img) + a * diff.index_select(0, img);
    const int64_t c = b == 0 ? riders : 0;
    if (c > 0) xb = torch::cat({x.detach(), r.baseline, xb});
    torch::Tensor tb;  // the target of each row of xb
    auto g = detail::input_gradient(model, xb, [&](const torch::Tensor& logits) {
      if (!r.target.defined()) {  // x's rows lead the first batch
        r.logits = logits.slice(0, 0, n).detach().to(x.scalar_type());
        r.target = target.resolve(r.logits);
      }
      tb = r.target.index_select(0, img);
      if (c > 0) tb = torch::cat({r.target, r.target, tb});
      return tb;
    });
    if (!separate) {
      auto picked = g.logits.gather(1, tb.view({-1, 1})).squeeze(1);
      if (c > 0) {
        r.score = picked.slice(0, 0, n);
        r.baseline_score = picked.slice(0, n, 2 * n);
      } else if (ends_on_path) {
        if (!r.score.defined()) {
          r.score = torch::zeros({n}, x.options());
          r.baseline_score = torch::zeros({n}, x.options());
        }
        auto at_x = (step == steps - 1).nonzero().view(-1), at_base = (step == 0).nonzero().view(-1);
        r.score.index_copy_(0, img.index_select(0, at_x), picked.index_select(0, at_x));
        r.baseline_score.index_copy_(0, img.index_select(0, at_base), picked.index_select(0, at_base));
      }
    }
    sum.index_add_(0, img, g.grad.slice(0, c) * weight.index_select(0, step).view({-1, 1, 1, 1}));
    covered = e;
    return 0.0;
  });
  if (!separate && ends_on_path && covered < 2 * n) {  // stopped before the baseline's rows ran
    torch::NoGradGuard no_grad;
    auto base = detail::checked_logits(model.forward(r.baseline), n).to(x.scalar_type());
    r.baseline_score = base.gather(1, r.target.view({-1, 1})).squeeze(1);
  }
  r.stopped_early = !done;
  r.attribution = diff * sum;
  r.map = detail::reduce_channels(r.attribution, options.reduction());
  r.delta = r.attribution.sum({1, 2, 3}) - (r.score - r.baseline_score);
  return r;
}

}  // namespace cnnviz
