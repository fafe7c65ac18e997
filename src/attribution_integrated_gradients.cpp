// The body of integrated_gradients.hpp: the fixed quadratures and the error-controlled
// adaptive path. The path points are the perturbation and the quadrature weights the
// weighting; the batched-evaluation engine (detail/attribution.hpp) runs them.
#include "cnnviz/integrated_gradients.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/detail/adaptive_panels.hpp"
#include "cnnviz/detail/attribution.hpp"
#include "cnnviz/detail/checked_size.hpp"
#include "cnnviz/detail/gaussian_filter.hpp"

namespace cnnviz {
namespace detail {

/// Quadrature nodes in [0, 1] and weights summing to 1 for `steps` points.
std::pair<std::vector<double>, std::vector<double>> quadrature(IntegrationMethod method, int64_t steps) {
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

torch::Tensor make_baseline(const torch::Tensor& x, const IntegratedGradientsOptions& o) {
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

namespace {

/// Checks the error-controlled mode's options against each other.
void check_tolerance_options(const IntegratedGradientsOptions& o) {
  const double tol = *o.tolerance();
  TORCH_CHECK_VALUE(std::isfinite(tol) && tol > 0, "cnnviz: tolerance must be a positive finite number, got ", tol);
  const IntegratedGradientsOptions defaults;
  TORCH_CHECK_VALUE(o.steps() == defaults.steps(), "cnnviz: steps fixes the number of path points and tolerance "
                    "chooses it: give one of them (with tolerance, initial_steps and max_passes bound the points)");
  TORCH_CHECK_VALUE(o.method() == defaults.method(), "cnnviz: tolerance refines trapezoid panels adaptively; "
                    "method applies to fixed steps only and must stay riemann_trapezoid");
  TORCH_CHECK_VALUE(o.initial_steps() >= 2, "cnnviz: initial_steps must be at least 2 (both ends of the path), got ",
                    o.initial_steps());
  TORCH_CHECK_VALUE(o.max_passes() >= o.initial_steps(), "cnnviz: max_passes (", o.max_passes(),
                    ") must be at least initial_steps (", o.initial_steps(), ")");
}

/// The error-controlled path integral: per image, trapezoid panels on [0, 1] bisected where
/// their (exactly known) error is largest until the tolerance holds or the image's budget is
/// spent; the new points of all images share batches. Fills `sum` (N, C, H, W) with the
/// weighted gradient sums and r.passes / converged / relative_error.
bool adaptive_path_integral(const AnyModel& model, const IntegratedGradientsOptions& o,
                                   IntegratedGradientsResult& r, const torch::Tensor& diff, torch::Tensor& sum) {
  const int64_t n = diff.size(0);
  const double tol = *o.tolerance();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // f(x) - f(baseline) per image, from the endpoint forwards (as the reported delta).
  const auto gap_t = (r.score - r.baseline_score).to(torch::kCPU, torch::kDouble).contiguous();
  const std::vector<double> gap(gap_t.data_ptr<double>(), gap_t.data_ptr<double>() + n);
  std::vector<AdaptivePanels> paths(n);
  std::vector<std::vector<torch::Tensor>> grads(n);
  std::vector<char> finished(n, 0), converged(n, 0);
  std::vector<double> error(n, nan);
  const auto diff64 = diff.to(torch::kDouble);

  // One work item: a path point of an image, and the panel it bisects (-1: the first grid).
  struct Item {
    int64_t image, panel;
    double alpha;
  };
  const int64_t budget_total = checked_product(n, o.max_passes(), "integrated_gradients", "images", "max_passes");
  int64_t done_total = 0;
  double worst = nan;
  // Evaluates the items through the engine (path points are the perturbation; each node's
  // score and gradient go into its image's panels); false when the progress callback stopped.
  auto evaluate = [&](const std::vector<Item>& items) {
    Evaluation how;
    how.batch_size = o.batch_size();
    how.progress = o.progress();
    how.progress_offset = done_total;
    how.progress_total = budget_total;
    how.gradient = true;
    torch::Tensor idx;  // the chunk's images
    auto run = evaluate_batches(
        model, static_cast<int64_t>(items.size()), how,
        [&](int64_t b, int64_t e) {
          std::vector<int64_t> img;
          std::vector<double> alpha;
          for (int64_t k = b; k < e; ++k) {
            img.push_back(items[k].image);
            alpha.push_back(items[k].alpha);
          }
          idx = torch::tensor(img, torch::kLong).to(diff.device());
          auto a = torch::tensor(alpha, torch::kDouble).to(diff.device(), diff.scalar_type()).view({-1, 1, 1, 1});
          return Rows{r.baseline.index_select(0, idx) + a * diff.index_select(0, idx),
                      fixed_target(r.target.index_select(0, idx))};
        },
        [&](int64_t b, int64_t e, const Evaluated& ev) {
          auto f = ev.score.to(torch::kCPU, torch::kDouble).contiguous();
          auto dot = (ev.grad.to(torch::kDouble) * diff64.index_select(0, idx)).sum({1, 2, 3}).to(torch::kCPU).contiguous();
          const double* fp = f.data_ptr<double>();
          const double* dp = dot.data_ptr<double>();
          for (int64_t k = b; k < e; ++k) {
            const auto& it = items[k];
            const int64_t node = paths[it.image].add(it.alpha, fp[k - b], dp[k - b]);
            grads[it.image].push_back(ev.grad[k - b].clone());
            if (it.panel >= 0) paths[it.image].bisect(it.panel, node);
          }
          return worst;
        });
    done_total += run.done;
    return !run.stopped;
  };
  // The weighted gradient sum of a finished image; its gradients are released.
  auto collect = [&](int64_t i) {
    auto w = paths[i].weights();
    auto acc = torch::zeros_like(diff[i]);
    for (size_t k = 0; k < w.size(); ++k)
      if (w[k] != 0) acc.add_(grads[i][k], w[k]);
    sum[i].copy_(acc);
    grads[i].clear();
    finished[i] = 1;
  };

  // The first grid, point-major so that a stop leaves every image a prefix of its path.
  std::vector<Item> items;
  const int64_t m = o.initial_steps();
  for (int64_t j = 0; j < m; ++j)
    for (int64_t i = 0; i < n; ++i) items.push_back({i, -1, static_cast<double>(j) / (m - 1)});
  bool going = evaluate(items);
  for (auto& p : paths) p.connect();
  while (going) {
    items.clear();
    worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (finished[i]) continue;
      const auto& p = paths[i];
      const double target = tol * std::abs(gap[i]);
      const double delta = p.integral() - gap[i];
      const double err = std::max(std::abs(delta), p.rms_error());
      error[i] = err / std::abs(gap[i]);
      worst = std::max(worst, error[i]);
      if (err <= target) {
        converged[i] = 1;
        collect(i);
        continue;
      }
      // A non-finite score or gradient cannot be refined away: give up on the image.
      auto chosen = std::isfinite(err) ? p.select(target, o.max_passes() - p.nodes()) : std::vector<int64_t>{};
      if (chosen.empty()) {
        collect(i);
        continue;
      }
      for (int64_t q : chosen) items.push_back({i, q, p.midpoint(q)});
    }
    if (items.empty()) break;
    going = evaluate(items);
  }
  for (int64_t i = 0; i < n; ++i) {
    if (finished[i]) continue;
    error[i] = std::max(std::abs(paths[i].integral() - gap[i]), paths[i].rms_error()) /
               std::abs(gap[i]);
    collect(i);
  }
  std::vector<int64_t> passes(n);
  for (int64_t i = 0; i < n; ++i) passes[i] = paths[i].nodes();
  r.passes = torch::tensor(passes, torch::kLong);
  r.converged = torch::tensor(std::vector<int64_t>(converged.begin(), converged.end()), torch::kLong).to(torch::kBool);
  r.relative_error = torch::tensor(error, torch::kDouble);
  return going;
}

}  // namespace
}  // namespace detail

IntegratedGradientsResult integrated_gradients(const AnyModel& model, const torch::Tensor& x, const Target& target,
                                               const IntegratedGradientsOptions& options) {
  check_image_batch(x);
  const bool adaptive = options.tolerance().has_value();
  if (adaptive) detail::check_tolerance_options(options);
  TORCH_CHECK_VALUE(options.steps() >= 1, "cnnviz: steps must be positive, got ", options.steps());
  detail::check_batch_size(options.batch_size());
  const int64_t total =
      adaptive ? 0 : detail::checked_product(x.size(0), options.steps(), "integrated_gradients", "images", "steps");
  const auto rule = adaptive ? decltype(detail::quadrature(options.method(), 2)){}
                             : detail::quadrature(options.method(), options.steps());
  FreezeParameters frozen(model);
  const int64_t n = x.size(0), steps = options.steps();
  IntegratedGradientsResult r;
  r.baseline = detail::make_baseline(x, options);
  // f(x) and f(baseline) for the delta, and the logits that resolve the targets, come from
  // the path's own passes where they can: the trapezoid rule's end points are x and the
  // baseline, so its steps run in the order (x, baseline, the rest) and the first batch
  // resolves the targets; Gauss-Legendre's nodes are inner points, so x and the baseline
  // ride in front of its first batch. A separate forward of 2N rows (torch's slow path
  // for a batch of one or two images, and a batch more) is left for a first batch too
  // small to hold the N images of x, and for the adaptive mode.
  const bool ends_on_path = !adaptive && options.method() == IntegrationMethod::riemann_trapezoid;
  const int64_t chunks = adaptive ? 0 : total / options.batch_size() + (total % options.batch_size() != 0);
  const int64_t first_end = chunks > 0 ? detail::scaled(total, 1, chunks) : 0;
  const int64_t riders = !adaptive && !ends_on_path && n <= first_end ? 2 * n : 0;  // rows in front of batch 0
  const bool separate = adaptive || (ends_on_path ? first_end < n : riders == 0);
  if (separate) {
    auto both = detail::logits_of(model, torch::cat({x.detach(), r.baseline}));
    r.logits = both.slice(0, 0, n);
    r.target = target.resolve(r.logits);
    r.score = detail::class_score(r.logits, r.target);
    r.baseline_score = detail::class_score(both.slice(0, n), r.target);
  }
  auto diff = x.detach() - r.baseline;
  auto sum = torch::zeros_like(x);
  if (adaptive) {
    r.stopped_early = !detail::adaptive_path_integral(model, options, r, diff, sum);
  } else {
    std::vector<int64_t> order(steps);
    for (int64_t i = 0; i < steps; ++i) order[i] = i;
    if (ends_on_path) {  // x (alpha = 1) first, then the baseline (alpha = 0), then the inner points
      order[0] = steps - 1;
      for (int64_t i = 1; i < steps; ++i) order[i] = i - 1;
    }
    auto order_t = torch::tensor(order, torch::kLong).to(x.device());
    auto alpha = torch::tensor(rule.first, torch::kDouble).to(x.device(), x.scalar_type());
    auto weight = torch::tensor(rule.second, torch::kDouble).to(x.device(), x.scalar_type());
    detail::Evaluation how;
    how.batch_size = options.batch_size();
    how.progress = options.progress();
    how.gradient = true;
    torch::Tensor img, step;  // the chunk's images and path points
    int64_t c = 0;            // rows of x and the baseline in front of the chunk
    // Item k is path point order[k / N] of image k % N.
    auto run = detail::evaluate_batches(
        model, total, how,
        [&](int64_t b, int64_t e) {  // the perturbation: points on the path
          auto idx = torch::arange(b, e, x.options().dtype(torch::kLong));
          img = idx.remainder(n);
          step = order_t.index_select(0, idx.div(n, "floor"));
          auto a = alpha.index_select(0, step).view({-1, 1, 1, 1});
          auto xb = r.baseline.index_select(0, img) + a * diff.index_select(0, img);
          c = b == 0 ? riders : 0;
          if (c > 0) xb = torch::cat({x.detach(), r.baseline, xb});
          return detail::Rows{xb, [&](const torch::Tensor& logits) {
                                if (!r.target.defined()) {  // x's rows lead the first batch
                                  r.logits = logits.slice(0, 0, n);
                                  r.target = target.resolve(r.logits);
                                }
                                auto tb = r.target.index_select(0, img);
                                return c > 0 ? torch::cat({r.target, r.target, tb}) : tb;
                              }};
        },
        [&](int64_t, int64_t, const detail::Evaluated& ev) {  // the weighting: the quadrature's
          if (!separate) {
            const auto& picked = ev.score;
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
          sum.index_add_(0, img, ev.grad.slice(0, c) * weight.index_select(0, step).view({-1, 1, 1, 1}));
          return 0.0;
        });
    const int64_t evaluated = run.done;
    if (!separate && ends_on_path && evaluated < 2 * n) {  // stopped before the baseline's rows ran
      torch::NoGradGuard no_grad;
      auto base = detail::checked_logits(model.forward(r.baseline), n).to(x.scalar_type());
      r.baseline_score = detail::class_score(base, r.target);
    }
    r.stopped_early = evaluated < total;
    // Items [0, evaluated) ran: image i got evaluated / N points, one more if i < evaluated % N.
    r.passes = torch::full({n}, evaluated / n, torch::kLong) +
               (torch::arange(n, torch::kLong) < evaluated % n).to(torch::kLong);
  }
  r.attribution = diff * sum;
  r.map = detail::reduce_channels(r.attribution, options.reduction());
  r.delta = r.attribution.sum({1, 2, 3}) - (r.score - r.baseline_score);
  return r;
}

}  // namespace cnnviz
