#pragma once
// LIME for images (Ribeiro et al. 2016): superpixels switched on and off at random, the
// model's score on each perturbed image, and a weighted ridge regression on the on/off
// pattern whose coefficients are the superpixels' importance.

#include <torch/torch.h>

#include <vector>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/detail/slic.hpp"
#include "cnnviz/perturbation.hpp"

namespace cnnviz {

enum class Segmentation { slic, grid };

/// SLIC superpixels: how many and how shaped.
struct SlicOptions {
  /// About how many superpixels (or grid cells, for a grid).
  TORCH_ARG(int64_t, segments) = 50;
  /// Color vs position: higher gives more square segments.
  TORCH_ARG(double, compactness) = 10.0;
  /// k-means iterations.
  TORCH_ARG(int64_t, iterations) = 10;
};

struct LimeOptions {
  TORCH_ARG(Segmentation, segmentation) = Segmentation::slic;
  /// SLIC parameters; `segments` also sets the number of grid cells.
  TORCH_ARG(SlicOptions, superpixels) = SlicOptions();
  /// Segments given by the caller, (H, W) or (N, H, W) integer labels; overrides `segmentation`.
  TORCH_ARG(torch::Tensor, custom_segments) = torch::Tensor();
  /// Perturbed images per input image (the first keeps every segment).
  TORCH_ARG(int64_t, samples) = 1000;
  /// Probability that a segment stays on in a perturbed image.
  TORCH_ARG(double, keep_probability) = 0.5;
  /// Width of the exponential kernel on the cosine distance to the unperturbed image.
  TORCH_ARG(double, kernel_width) = 0.25;
  /// L2 penalty of the ridge regression (the intercept is not penalized).
  TORCH_ARG(double, ridge) = 1.0;
  /// The value switched-off segments get, in the input's (normalized) space.
  TORCH_ARG(double, baseline) = 0.0;
  TORCH_ARG(Score, score) = Score::probability;
  /// How inputs were normalized (SLIC segments the image in pixels).
  TORCH_ARG(Normalization, normalization) = Normalization();
  /// Perturbed images per forward pass (bounds memory).
  TORCH_ARG(int64_t, batch_size) = 64;
  /// Called after each batch; returning false stops (the fit uses the samples that ran).
  TORCH_ARG(ProgressCallback, progress) = nullptr;
};

struct LimeResult {
  torch::Tensor segments;              ///< (N, H, W) int64 labels 0..S_n-1
  std::vector<torch::Tensor> weights;  ///< per image (S_n,): the ridge coefficient of each segment
  torch::Tensor intercept;             ///< (N,)
  torch::Tensor r2;                    ///< (N,): weighted R^2 of the fit
  torch::Tensor map;                   ///< (N, H, W): each pixel's segment weight
  torch::Tensor target;                ///< (N,) int64
  torch::Tensor logits;                ///< (N, K) for x
  bool stopped_early = false;
  bool interrupted = false;    ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// SLIC superpixels (Achanta et al. 2012) of an sRGB image (3, H, W) with values in
/// [0, 1] -> (H, W) int64 labels 0..S-1, each label one connected region.
inline torch::Tensor slic(const torch::Tensor& rgb, const SlicOptions& options = {}) {
  return detail::slic(rgb, options.segments(), options.compactness(), options.iterations());
}

/// A regular grid of about `segments` cells over (H, W) -> (H, W) int64 labels 0..S-1.
inline torch::Tensor grid_segments(int64_t height, int64_t width, int64_t segments) {
  TORCH_CHECK_VALUE(height >= 1 && width >= 1, "cnnviz: grid size must be positive, got (", height, ", ", width, ")");
  return detail::grid_segments(height, width, segments);
}

namespace detail {

struct RidgeFit {
  torch::Tensor coef;  // (S,)
  double intercept = 0;
  double r2 = 0;
};

/// Weighted ridge regression y ~ Z coef + intercept, minimizing
/// sum_i w_i (y_i - z_i coef - b)^2 + alpha |coef|^2; Z (M, S), y (M,), w (M,). In double.
inline RidgeFit weighted_ridge(const torch::Tensor& z, const torch::Tensor& y, const torch::Tensor& w, double alpha) {
  TORCH_CHECK_VALUE(alpha >= 0, "cnnviz: the ridge penalty must be non-negative, got ", alpha);
  auto Z = z.to(torch::kDouble), Y = y.to(torch::kDouble), W = w.to(torch::kDouble);
  auto wsum = W.sum();
  TORCH_CHECK_VALUE(wsum.item<double>() > 0, "cnnviz: the sample weights sum to zero");
  auto zm = (W.unsqueeze(1) * Z).sum(0) / wsum, ym = (W * Y).sum() / wsum;
  auto zc = Z - zm, yc = Y - ym;
  auto zw = zc * W.unsqueeze(1);
  auto a = zw.t().mm(zc) + alpha * torch::eye(Z.size(1), Z.options());
  RidgeFit fit;
  fit.coef = std::get<0>(torch::linalg_lstsq(a, zw.t().mv(yc).unsqueeze(1))).squeeze(1);
  fit.intercept = (ym - zm.dot(fit.coef)).item<double>();
  auto residual = yc - zc.mv(fit.coef);
  double ss_res = (W * residual * residual).sum().item<double>(), ss_tot = (W * yc * yc).sum().item<double>();
  fit.r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : 1.0;
  return fit;
}

/// Segments (N, H, W) of x as the options say.
inline torch::Tensor lime_segments(const torch::Tensor& x, const LimeOptions& o) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  if (o.custom_segments().defined()) {
    auto s = o.custom_segments();
    TORCH_CHECK_VALUE(!s.is_floating_point() && !s.is_complex(), "cnnviz: custom segments must be integer labels");
    if (s.dim() == 2) s = s.unsqueeze(0);
    TORCH_CHECK_VALUE(s.dim() == 3 && (s.size(0) == 1 || s.size(0) == n) && s.size(1) == h && s.size(2) == w,
                      "cnnviz: custom segments must have shape (H, W) or (N, H, W) matching the input ",
                      x.sizes(), ", got ", o.custom_segments().sizes());
    TORCH_CHECK_VALUE(s.min().item<int64_t>() >= 0, "cnnviz: segment labels must be non-negative");
    s = s.to(torch::kCPU, torch::kLong).expand({n, h, w});
    // Compact the labels to 0..S-1 per image.
    std::vector<torch::Tensor> out;
    for (int64_t i = 0; i < n; ++i) out.push_back(std::get<1>(torch::_unique2(s[i], true, true)).view({h, w}));
    return torch::stack(out);
  }
  if (o.segmentation() == Segmentation::grid)
    return grid_segments(h, w, o.superpixels().segments()).expand({n, h, w}).clone();
  TORCH_CHECK_VALUE(x.size(1) == 3, "cnnviz: SLIC segments RGB images; got ", x.size(1),
                    " channels (use grid segmentation or custom segments)");
  auto [mean, std] = normalization_stats(o.normalization(), x, "lime");
  auto pixels = (x.detach() * std + mean).clamp(0, 1).cpu();
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(cnnviz::slic(pixels[i], o.superpixels()));
  return torch::stack(out);
}

}  // namespace detail

/// LIME explanation of each image of x (N, C, H, W) for its target: `samples` random
/// on/off patterns of its segments (the first all on), the target's score for each
/// perturbed image, and a ridge regression weighted by sqrt(exp(-d^2 / width^2)) (d the cosine
/// distance of the pattern to all-on, LIME's kernel). Returns per-segment weights and the
/// map (N, H, W) of each pixel's segment weight.
inline LimeResult lime(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                       const LimeOptions& options = {}) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(options.samples() >= 2, "cnnviz: LIME needs samples >= 2, got ", options.samples());
  TORCH_CHECK_VALUE(options.keep_probability() > 0 && options.keep_probability() < 1,
                    "cnnviz: keep_probability must be in (0, 1), got ", options.keep_probability());
  TORCH_CHECK_VALUE(options.kernel_width() > 0, "cnnviz: kernel_width must be positive, got ",
                    options.kernel_width());
  TORCH_CHECK_VALUE(options.ridge() >= 0, "cnnviz: ridge must be non-negative, got ", options.ridge());
  detail::check_batch_size(options.batch_size());
  FreezeParameters frozen(model);
  torch::NoGradGuard no_grad;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3), m = options.samples();
  const int64_t total = detail::checked_product(n, m, "lime", "images", "samples");
  LimeResult r;
  r.segments = detail::lime_segments(x, options);
  r.logits = detail::logits_of(model, x);
  r.target = target.resolve(r.logits);
  r.intercept = torch::zeros({n}, torch::kDouble);
  r.r2 = torch::zeros({n}, torch::kDouble);
  r.map = torch::zeros({n, h, w}, x.options());
  int64_t done_before = 0;
  for (int64_t i = 0; i < n && !r.stopped_early; ++i) {
    auto seg = r.segments[i].to(x.device());
    const int64_t s = seg.max().item<int64_t>() + 1;
    auto z = torch::bernoulli(torch::full({m, s}, options.keep_probability(), x.options()));
    z[0].fill_(1);
    auto scores = torch::zeros({m}, x.options());
    auto xi = x[i].unsqueeze(0), t = r.target.slice(0, i, i + 1);
    auto flat_seg = seg.flatten();
    ProgressCallback progress;
    if (options.progress())
      progress = [&](int64_t step, int64_t, double v) { return options.progress()(done_before + step, total, v); };
    int64_t ran = m;
    bool done = detail::for_each_batch(m, options.batch_size(), progress, [&](int64_t b, int64_t e) {
      // Each pixel takes its segment's on/off value.
      auto keep = z.slice(0, b, e).index_select(1, flat_seg).view({e - b, 1, h, w});
      auto perturbed = xi * keep + options.baseline() * (1 - keep);
      auto logits = detail::checked_logits(model.forward(perturbed), e - b).to(x.scalar_type());
      scores.slice(0, b, e).copy_(detail::class_score(logits, t.expand({e - b}), options.score()));
      ran = e;
      return 0.0;
    });
    done_before += m;
    r.stopped_early = !done;
    auto zr = z.slice(0, 0, ran);
    // Cosine distance of each pattern to the all-on pattern, then LIME's kernel.
    auto cosine = zr.sum(1) / (zr.norm(2, 1) * std::sqrt(static_cast<double>(s))).clamp_min(1e-12);
    auto d = 1 - cosine;
    auto kernel = torch::sqrt(torch::exp(-(d * d) / (options.kernel_width() * options.kernel_width())));
    auto fit = detail::weighted_ridge(zr, scores.slice(0, 0, ran), kernel, options.ridge());
    r.weights.push_back(fit.coef.cpu());
    r.intercept[i] = fit.intercept;
    r.r2[i] = fit.r2;
    r.map[i] = fit.coef.to(x.device(), x.scalar_type()).index_select(0, flat_seg).view({h, w});
  }
  return r;
}

}  // namespace cnnviz
