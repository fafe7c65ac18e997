// The bodies of attribution_common.hpp, attribution_gradients.hpp, cam.hpp, perturbation.hpp
// and lime.hpp, and the batched-evaluation engine (detail/attribution.hpp) they share:
// SmoothGrad, occlusion, Score-CAM and LIME (and integrated gradients, in
// attribution_integrated_gradients.cpp) each make their perturbed rows and weigh what the
// engine returns; the engine runs the chunks, the model, the target's score, its gradient
// and the progress callback.
#include "cnnviz/detail/attribution.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/attribution.hpp"
#include "cnnviz/detail/checked_size.hpp"
#include "cnnviz/detail/slic.hpp"
#include "cnnviz/threads.hpp"

namespace cnnviz {

namespace detail {

torch::Tensor reduce_channels(const torch::Tensor& a, Reduction r) {
  TORCH_CHECK_VALUE(r == Reduction::max || r == Reduction::mean,
                    "cnnviz: a channel reduction must be max or mean, got ", reduction_name(r));
  auto m = a.abs();
  return r == Reduction::max ? std::get<0>(m.max(1)) : m.mean(1);
}

torch::Tensor class_score(const torch::Tensor& logits, const torch::Tensor& target, Score s) {
  auto v = s == Score::probability ? logits.softmax(1) : logits;
  if (target.dim() == 2) return v.gather(1, target);
  return v.gather(1, target.view({-1, 1})).squeeze(1);
}

const torch::Tensor& checked_logits(const torch::Tensor& logits, int64_t n) {
  TORCH_CHECK_VALUE(logits.defined() && logits.dim() == 2 && logits.size(0) == n,
                    "cnnviz: the model must return logits of shape (N, K) for a batch of ", n,
                    " samples, got ", logits.defined() ? logits.sizes() : torch::IntArrayRef{});
  return logits;
}

void check_batch_size(int64_t batch_size) {
  TORCH_CHECK_VALUE(batch_size >= 1, "cnnviz: batch_size must be at least 1, got ", batch_size);
}

bool for_each_batch(int64_t total, int64_t batch_size, const ProgressCallback& progress,
                    const std::function<double(int64_t, int64_t)>& fn) {
  check_batch_size(batch_size);
  TORCH_CHECK_VALUE(total >= 0, "cnnviz: the number of items must be non-negative, got ", total);
  const int64_t chunks = total / batch_size + (total % batch_size != 0);
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t begin = scaled(total, k, chunks), end = scaled(total, k + 1, chunks);
    double value = fn(begin, end);
    if (!report(progress, end, total, value)) return end == total;
  }
  return true;
}

torch::Tensor logits_of(const AnyModel& model, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  return checked_logits(model.forward(x), x.size(0)).to(x.scalar_type());
}

Evaluated evaluate_rows(const AnyModel& model, const Rows& rows, const Evaluation& how) {
  const auto dtype = rows.input.scalar_type();
  const int64_t b = rows.input.size(0);
  Evaluated ev;
  if (how.gradient) {
    auto xi = rows.input.detach().requires_grad_(true);
    CaptureRequest request;
    request.relu = how.relu;
    auto logits = checked_logits(model.capture(xi, request).output, b);
    ev.logits = logits.detach().to(dtype);
    ev.target = rows.target(ev.logits);
    // The rows are independent (models in eval mode), so the gradient of the summed scores
    // holds every row's own gradient.
    auto score = class_score(logits, ev.target, how.score);
    ev.grad = torch::autograd::grad({score.sum()}, {xi})[0].to(dtype);
    ev.score = score.detach().to(dtype);
  } else {
    torch::NoGradGuard no_grad;
    ev.logits = checked_logits(model.forward(rows.input), b).to(dtype);
    ev.target = rows.target(ev.logits);
    ev.score = class_score(ev.logits, ev.target, how.score);
  }
  return ev;
}

BatchRun evaluate_batches(const AnyModel& model, int64_t total, const Evaluation& how,
                          const std::function<Rows(int64_t, int64_t)>& make,
                          const std::function<double(int64_t, int64_t, const Evaluated&)>& consume) {
  BatchRun run;
  ProgressCallback progress;
  if (how.progress) {
    const int64_t reported = how.progress_total >= 0 ? how.progress_total : total;
    progress = [&run, &how, reported](int64_t step, int64_t, double value) {
      run.stopped = !how.progress(how.progress_offset + step, reported, value);
      return !run.stopped;
    };
  }
  for_each_batch(total, how.batch_size, progress, [&](int64_t b, int64_t e) {
    const double value = consume(b, e, evaluate_rows(model, make(b, e), how));
    run.done = e;
    return value;
  });
  return run;
}

std::function<torch::Tensor(const torch::Tensor&)> fixed_target(torch::Tensor t) {
  return [t = std::move(t)](const torch::Tensor&) { return t; };
}

}  // namespace detail

// ---- gradient maps ----

namespace {

Attribution single_pass(const AnyModel& model, const torch::Tensor& x, const Target& target, Reduction reduction,
                        ReluMode relu) {
  check_image_batch(x);
  FreezeParameters frozen(model);
  detail::Evaluation how;
  how.gradient = true;
  how.relu = relu;
  auto ev = detail::evaluate_rows(model, {x, [&](const torch::Tensor& l) { return target.resolve(l); }}, how);
  Attribution r;
  r.attribution = ev.grad;
  r.map = detail::reduce_channels(ev.grad, reduction);
  r.target = ev.target;
  r.logits = ev.logits;
  return r;
}

}  // namespace

Attribution saliency(const AnyModel& model, const torch::Tensor& x, const Target& target,
                     const SaliencyOptions& options) {
  return single_pass(model, x, target, options.reduction(), ReluMode::normal);
}

Attribution guided_backprop(const AnyModel& model, const torch::Tensor& x, const Target& target,
                            const GuidedBackpropOptions& options) {
  return single_pass(model, x, target, options.reduction(), ReluMode::guided);
}

Attribution smooth_grad(const AnyModel& model, const torch::Tensor& x, const Target& target,
                        const SmoothGradOptions& options) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(options.samples() >= 1, "cnnviz: samples must be at least 1, got ", options.samples());
  TORCH_CHECK_VALUE(options.noise_level() >= 0, "cnnviz: noise_level must be non-negative, got ",
                    options.noise_level());
  detail::check_batch_size(options.batch_size());
  FreezeParameters frozen(model);
  const int64_t n = x.size(0);
  Attribution r;
  // The clean forward that resolves the target rides in front of the first batch when the
  // batch is larger than N: on a small CNN a forward of its own would cost a third of a
  // 16-sample call, as torch runs a batch of one down a slower convolution path.
  const bool ride = n < options.batch_size();
  if (!ride) {
    r.logits = detail::logits_of(model, x);
    r.target = target.resolve(r.logits);
  }
  auto flat = x.detach().flatten(1);
  // Standard deviation (not variance) per image, broadcast over its pixels.
  auto sigma = ((std::get<0>(flat.max(1)) - std::get<0>(flat.min(1))) * options.noise_level()).view({n, 1, 1, 1});
  auto sum = torch::zeros_like(x);
  auto count = torch::zeros({n}, x.options());
  // Item k is sample k / N of image k % N, so every batch mixes images evenly.
  const int64_t total = detail::checked_product(n, options.samples(), "smooth_grad", "images", "samples");
  detail::Evaluation how;
  how.batch_size = options.batch_size();
  how.progress = options.progress();
  how.gradient = true;
  torch::Tensor idx;
  int64_t clean = 0;  // clean images in front of this chunk
  auto run = detail::evaluate_batches(
      model, total, how,
      [&](int64_t b, int64_t e) {  // the perturbation: noisy copies
        clean = ride && b == 0 ? n : 0;
        idx = torch::arange(b, e, x.options().dtype(torch::kLong)).remainder(n);
        auto xb = x.detach().index_select(0, idx);
        xb = xb + torch::randn_like(xb) * sigma.index_select(0, idx);
        if (clean > 0) xb = torch::cat({x.detach(), xb});
        return detail::Rows{xb, [&](const torch::Tensor& logits) {
                              if (clean == 0) return r.target.index_select(0, idx);
                              r.logits = logits.slice(0, 0, n);
                              r.target = target.resolve(r.logits);
                              return torch::cat({r.target, r.target.index_select(0, idx)});
                            }};
      },
      [&](int64_t b, int64_t e, const detail::Evaluated& ev) {  // the weighting: a plain mean
        sum.index_add_(0, idx, ev.grad.slice(0, clean));
        count.index_add_(0, idx, torch::ones({e - b}, x.options()));
        return 0.0;
      });
  r.stopped_early = run.done < total;
  r.attribution = sum / count.clamp_min(1).view({n, 1, 1, 1});
  r.map = detail::reduce_channels(r.attribution, options.reduction());
  return r;
}

// ---- class activation maps ----

const CamMap& CamResult::at(const std::string& layer, size_t k) const {
  TORCH_CHECK_INDEX(!maps.empty(), "cnnviz: the result holds no map");
  TORCH_CHECK_INDEX(k < num_targets, "cnnviz: target index ", k, " out of range (", num_targets, " targets)");
  if (layer.empty()) return maps[k];
  for (size_t i = 0; i < maps.size(); i += num_targets)
    if (maps[i].layer == layer) return maps[i + k];
  std::string known;
  for (size_t i = 0; i < maps.size(); i += num_targets) known += (known.empty() ? "'" : ", '") + maps[i].layer + "'";
  TORCH_CHECK_INDEX(false, "cnnviz: no map for layer '", layer, "' (the result has ", known, ")");
}

torch::Tensor detail::upsample_maps(const torch::Tensor& m, int64_t h, int64_t w) {
  namespace F = torch::nn::functional;
  return F::interpolate(m.unsqueeze(1), F::InterpolateFuncOptions()
                                            .size(std::vector<int64_t>{h, w})
                                            .mode(torch::kBilinear)
                                            .align_corners(false))
      .squeeze(1);
}

namespace {

void check_spatial(const std::string& layer, const torch::Tensor& a, int64_t n) {
  TORCH_CHECK_VALUE(a.dim() == 4 && a.size(0) == n, "cnnviz: layer '", layer,
                    "' is not spatial: a CAM needs an output of shape (N, C, h, w), got ", a.sizes());
}

/// The map of one layer from its activations A and the gradients G (both (N, C, h, w)).
torch::Tensor gradient_cam(CamMethod method, const torch::Tensor& a, const torch::Tensor& g) {
  switch (method) {
    case CamMethod::grad_cam:
      return (g.mean({2, 3}, true) * a).sum(1);
    case CamMethod::grad_cam_pp: {
      // Closed form of Chattopadhyay et al. (exponential of the score): alpha = g^2 /
      // (2 g^2 + sum_ab A_ab * g^3), zero where the gradient is zero.
      auto g2 = g * g, g3 = g2 * g;
      auto denom = 2 * g2 + a.sum({2, 3}, true) * g3;
      auto alpha = torch::where(g != 0, g2 / torch::where(denom != 0, denom, torch::ones_like(denom)),
                                torch::zeros_like(g));
      auto weights = (alpha * g.clamp_min(0)).sum({2, 3}, true);
      return (weights * a).sum(1);
    }
    case CamMethod::layer_cam:
      return (g.clamp_min(0) * a).sum(1);
    case CamMethod::score_cam:
      break;
  }
  TORCH_CHECK(false, "cnnviz: not a gradient CAM method");
}

CamResult finish_cams(std::vector<CamMap> maps, const CamOptions& o, const torch::Tensor& x) {
  CamResult r;
  for (auto& m : maps) {
    if (o.relu()) m.map = m.map.clamp_min(0);
    m.map = m.map.detach().to(x.scalar_type());
    m.upsampled = detail::upsample_maps(m.map, x.size(2), x.size(3));
  }
  r.maps = std::move(maps);
  return r;
}

CamResult gradient_cams(const AnyModel& model, const torch::Tensor& x, const std::vector<std::string>& layers,
                        const std::vector<Target>& targets, CamMethod method, const CamOptions& o) {
  // Only d(score)/d(activation) is needed. With one layer the adapter starts a new autograd
  // graph at it (CaptureRequest::cut): x needs no gradient, nothing below the layer is
  // recorded, and the backward runs from the logits to the layer only. Otherwise (several
  // layers, where a lower layer's gradient flows through a higher one, or an adapter that
  // cannot cut) x requires grad so that the activations have a graph; no gradient reaches x.
  CaptureRequest request;
  request.layers = layers;
  request.cut = layers.size() == 1 && model.can_cut();
  auto cap = model.capture(request.cut ? x.detach() : x.detach().requires_grad_(true), request);
  if (request.cut && !std::all_of(cap.activations.begin(), cap.activations.end(),
                                  [](const auto& kv) { return !kv.second.defined() || kv.second.requires_grad(); })) {
    request.cut = false;  // the layer's output is not a plain tensor: no cut was made
    cap = model.capture(x.detach().requires_grad_(true), request);
  }
  auto logits = detail::checked_logits(cap.output, x.size(0));
  std::vector<torch::Tensor> acts;
  for (auto& kv : cap.activations) {
    check_spatial(kv.first, kv.second, x.size(0));
    acts.push_back(kv.second);
  }
  std::vector<std::vector<CamMap>> per_target;
  for (size_t k = 0; k < targets.size(); ++k) {
    auto t = targets[k].resolve(logits);
    auto grads = torch::autograd::grad({detail::class_score(logits, t).sum()}, acts, {},
                                       /*retain_graph=*/k + 1 < targets.size());
    std::vector<CamMap> row;
    for (size_t i = 0; i < acts.size(); ++i)
      row.push_back({layers[i], t, gradient_cam(method, acts[i].detach(), grads[i]), {}});
    per_target.push_back(std::move(row));
  }
  std::vector<CamMap> maps;
  for (size_t i = 0; i < layers.size(); ++i)
    for (auto& row : per_target) maps.push_back(row[i]);
  auto r = finish_cams(std::move(maps), o, x);
  r.logits = logits.detach().to(x.scalar_type());
  return r;
}

/// Score-CAM: the weight of channel k is the softmax score of the target for x masked by
/// channel k's activation, upsampled and scaled to [0, 1]; constant channels get weight 0.
CamResult score_cams(const AnyModel& model, const torch::Tensor& x, const std::vector<std::string>& layers,
                     const std::vector<Target>& targets, const CamOptions& o) {
  torch::NoGradGuard no_grad;
  CaptureRequest request;
  request.layers = layers;
  CaptureResult cap;
  {
    // The capture forwards x alone: at the thread count the masked batches get, a small
    // network's batch of one runs torch's im2col + OpenBLAS path with its threads spinning
    // against OpenMP's (ResNet-20: about ten times its one-thread cost).
    ThreadScope scope(policy_threads(model, x, x.size(0)));
    cap = model.capture(x, request);
  }
  auto logits = detail::checked_logits(cap.output, x.size(0));
  std::vector<torch::Tensor> ts;
  for (auto& t : targets) ts.push_back(t.resolve(logits));
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  int64_t total = 0;
  for (auto& kv : cap.activations) {
    check_spatial(kv.first, kv.second, n);
    total += n * kv.second.size(1);
  }
  std::vector<CamMap> maps;
  bool stopped = false;
  int64_t done_before = 0;
  for (auto& kv : cap.activations) {
    auto a = kv.second.detach();
    const int64_t c = a.size(1);
    const int64_t items = detail::checked_product(n, c, "score_cam", "images", "channels");
    std::vector<torch::Tensor> weights;
    for (size_t k = 0; k < ts.size(); ++k) weights.push_back(torch::zeros({items}, x.options()));
    // Item i is channel i % C of image i / C.
    auto flat_acts = a.reshape({n * c, a.size(2), a.size(3)});
    if (!stopped) {
      detail::Evaluation how;
      how.batch_size = o.batch_size();
      how.progress = o.progress();
      how.progress_offset = done_before;
      how.progress_total = total;
      how.score = Score::probability;
      torch::Tensor valid;  // the chunk's non-constant channels
      auto run = detail::evaluate_batches(
          model, items, how,
          [&](int64_t b, int64_t e) {  // the perturbation: x masked by each channel
            auto img = torch::arange(b, e, x.options().dtype(torch::kLong)).div(c, "floor");
            auto m = detail::upsample_maps(flat_acts.slice(0, b, e).to(x.scalar_type()), h, w).flatten(1);
            auto lo = std::get<0>(m.min(1, true)), hi = std::get<0>(m.max(1, true));
            auto range = hi - lo;
            auto masks = ((m - lo) / torch::where(range > 0, range, torch::ones_like(range))).view({e - b, 1, h, w});
            valid = (range.squeeze(1) > 0).to(x.scalar_type());
            std::vector<torch::Tensor> per_target;
            for (auto& t : ts) per_target.push_back(t.index_select(0, img));
            return detail::Rows{x.index_select(0, img) * masks, detail::fixed_target(torch::stack(per_target, 1))};
          },
          [&](int64_t b, int64_t e, const detail::Evaluated& ev) {  // the weighting: the score itself
            for (size_t k = 0; k < ts.size(); ++k)
              weights[k].slice(0, b, e).copy_(ev.score.select(1, static_cast<int64_t>(k)) * valid);
            return 0.0;
          });
      stopped = run.done < items;
    }
    done_before += n * c;
    for (size_t k = 0; k < ts.size(); ++k)
      maps.push_back({kv.first, ts[k], (weights[k].view({n, c, 1, 1}) * a.to(x.scalar_type())).sum(1), {}});
  }
  auto r = finish_cams(std::move(maps), o, x);
  r.logits = logits.to(x.scalar_type());
  r.stopped_early = stopped;
  return r;
}

}  // namespace

CamResult cam(const AnyModel& model, const torch::Tensor& x, const Layers& layers, const Targets& which,
              CamMethod method, const CamOptions& options) {
  const std::vector<Target>& targets = which;
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: a CAM needs at least one layer");
  TORCH_CHECK_VALUE(!targets.empty(), "cnnviz: a CAM needs at least one target");
  detail::check_batch_size(options.batch_size());
  FreezeParameters frozen(model);
  auto r = method == CamMethod::score_cam ? score_cams(model, x, layers, targets, options)
                                          : gradient_cams(model, x, layers, targets, method, options);
  r.num_targets = targets.size();
  return r;
}

Attribution guided_grad_cam(const AnyModel& model, const torch::Tensor& x, const Layer& layer, const Target& target,
                            const GuidedGradCamOptions& options) {
  auto guided = guided_backprop(model, x, target, GuidedBackpropOptions());
  auto cam = grad_cam(model, x, layer, Target(guided.target), CamOptions());
  guided.attribution = guided.attribution * cam.upsampled().unsqueeze(1);
  guided.map = detail::reduce_channels(guided.attribution, options.reduction());
  return guided;
}

// ---- occlusion ----

namespace {

/// A (height, width) pair from one or two positive values.
std::pair<int64_t, int64_t> pair_option(const std::vector<int64_t>& v, const char* name) {
  TORCH_CHECK_VALUE(v.size() == 1 || v.size() == 2, "cnnviz: ", name, " must have 1 or 2 values, got ", v.size());
  int64_t a = v[0], b = v.size() == 2 ? v[1] : v[0];
  TORCH_CHECK_VALUE(a >= 1 && b >= 1, "cnnviz: ", name, " must be positive, got ", v);
  return {a, b};
}

}  // namespace

OcclusionResult occlusion(const AnyModel& model, const torch::Tensor& x, const Target& target,
                          const OcclusionOptions& options) {
  check_image_batch(x);
  auto [wh, ww] = pair_option(options.window(), "window");
  auto [sh, sw] = pair_option(options.stride(), "stride");
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  TORCH_CHECK_VALUE(wh <= h && ww <= w, "cnnviz: the occlusion window (", wh, ", ", ww,
                    ") is larger than the image (", h, ", ", w, ")");
  detail::check_batch_size(options.batch_size());
  FreezeParameters frozen(model);
  torch::NoGradGuard no_grad;
  const int64_t nh = (h - wh) / sh + 1, nw = (w - ww) / sw + 1;
  const int64_t positions = detail::checked_product(nh, nw, "occlusion", "window rows", "window columns");
  const int64_t items = detail::checked_product(n, positions, "occlusion", "images", "window positions");
  OcclusionResult r;
  r.logits = detail::logits_of(model, x);
  r.target = target.resolve(r.logits);
  auto clean = detail::class_score(r.logits, r.target, options.score());
  auto drops = torch::zeros({items}, x.options());
  auto sum = torch::zeros({n, h, w}, x.options());
  auto count = torch::zeros({n, h, w}, x.options());
  auto rows = torch::arange(h, x.options().dtype(torch::kLong)).view({1, h});
  auto cols = torch::arange(w, x.options().dtype(torch::kLong)).view({1, w});
  detail::Evaluation how;
  how.batch_size = options.batch_size();
  how.progress = options.progress();
  how.score = options.score();
  torch::Tensor img, mask;  // the chunk's images and windows (B, H, W)
  // Item k is window position k % P of image k / P.
  auto run = detail::evaluate_batches(
      model, items, how,
      [&](int64_t b, int64_t e) {  // the perturbation: one window set to the baseline
        auto idx = torch::arange(b, e, x.options().dtype(torch::kLong));
        img = idx.div(positions, "floor");
        auto pos = idx.remainder(positions);
        auto top = (pos.div(nw, "floor") * sh).view({-1, 1}), left = (pos.remainder(nw) * sw).view({-1, 1});
        auto in_rows = (rows >= top) & (rows < top + wh), in_cols = (cols >= left) & (cols < left + ww);
        mask = in_rows.unsqueeze(2) & in_cols.unsqueeze(1);
        auto occluded = torch::where(mask.unsqueeze(1), torch::full({}, options.baseline(), x.options()),
                                     x.index_select(0, img));
        return detail::Rows{occluded, detail::fixed_target(r.target.index_select(0, img))};
      },
      [&](int64_t b, int64_t e, const detail::Evaluated& ev) {  // the weighting: the drop, per window
        auto drop = clean.index_select(0, img) - ev.score;
        drops.slice(0, b, e).copy_(drop);
        auto m = mask.to(x.scalar_type());
        sum.index_add_(0, img, m * drop.view({-1, 1, 1}));
        count.index_add_(0, img, m);
        return 0.0;
      });
  r.stopped_early = run.done < items;
  r.scores = drops.view({n, nh, nw});
  r.map = sum / count.clamp_min(1);
  return r;
}

// ---- LIME ----

torch::Tensor slic(const torch::Tensor& rgb, const SlicOptions& options) {
  return detail::slic(rgb, options.segments(), options.compactness(), options.iterations());
}

torch::Tensor grid_segments(int64_t height, int64_t width, int64_t segments) {
  TORCH_CHECK_VALUE(height >= 1 && width >= 1, "cnnviz: grid size must be positive, got (", height, ", ", width, ")");
  return detail::grid_segments(height, width, segments);
}

namespace detail {

RidgeFit weighted_ridge(const torch::Tensor& z, const torch::Tensor& y, const torch::Tensor& w, double alpha) {
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

}  // namespace detail

namespace {

/// Segments (N, H, W) of x as the options say.
torch::Tensor lime_segments(const torch::Tensor& x, const LimeOptions& o) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  if (o.custom_segments().defined()) {
    auto s = o.custom_segments();
    TORCH_CHECK_VALUE(!s.is_floating_point() && !s.is_complex(), "cnnviz: custom segments must be integer labels");
    if (s.dim() == 2) s = s.unsqueeze(0);
    TORCH_CHECK_VALUE(s.dim() == 3 && (s.size(0) == 1 || s.size(0) == n) && s.size(1) == h && s.size(2) == w,
                      "cnnviz: custom segments must have shape (H, W) or (N, H, W) matching the input ", x.sizes(),
                      ", got ", o.custom_segments().sizes());
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
  auto [mean, std] = detail::normalization_stats(o.normalization(), x, "lime");
  auto pixels = (x.detach() * std + mean).clamp(0, 1).cpu();
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(cnnviz::slic(pixels[i], o.superpixels()));
  return torch::stack(out);
}

}  // namespace

LimeResult lime(const AnyModel& model, const torch::Tensor& x, const Target& target, const LimeOptions& options) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(options.samples() >= 2, "cnnviz: LIME needs samples >= 2, got ", options.samples());
  TORCH_CHECK_VALUE(options.keep_probability() > 0 && options.keep_probability() < 1,
                    "cnnviz: keep_probability must be in (0, 1), got ", options.keep_probability());
  TORCH_CHECK_VALUE(options.kernel_width() > 0, "cnnviz: kernel_width must be positive, got ", options.kernel_width());
  TORCH_CHECK_VALUE(options.ridge() >= 0, "cnnviz: ridge must be non-negative, got ", options.ridge());
  detail::check_batch_size(options.batch_size());
  FreezeParameters frozen(model);
  torch::NoGradGuard no_grad;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3), m = options.samples();
  const int64_t total = detail::checked_product(n, m, "lime", "images", "samples");
  LimeResult r;
  r.segments = lime_segments(x, options);
  r.logits = detail::logits_of(model, x);
  r.target = target.resolve(r.logits);
  r.intercept = torch::zeros({n}, torch::kDouble);
  r.r2 = torch::zeros({n}, torch::kDouble);
  r.map = torch::zeros({n, h, w}, x.options());
  detail::Evaluation how;
  how.batch_size = options.batch_size();
  how.progress = options.progress();
  how.progress_total = total;
  how.score = options.score();
  for (int64_t i = 0; i < n && !r.stopped_early; ++i) {
    auto seg = r.segments[i].to(x.device());
    const int64_t s = seg.max().item<int64_t>() + 1;
    auto z = torch::bernoulli(torch::full({m, s}, options.keep_probability(), x.options()));
    z[0].fill_(1);
    auto scores = torch::zeros({m}, x.options());
    auto xi = x[i].unsqueeze(0), t = r.target.slice(0, i, i + 1);
    auto flat_seg = seg.flatten();
    how.progress_offset = i * m;
    auto run = detail::evaluate_batches(
        model, m, how,
        [&](int64_t b, int64_t e) {  // the perturbation: each pixel takes its segment's on/off value
          auto keep = z.slice(0, b, e).index_select(1, flat_seg).view({e - b, 1, h, w});
          return detail::Rows{xi * keep + options.baseline() * (1 - keep), detail::fixed_target(t.expand({e - b}))};
        },
        [&](int64_t b, int64_t e, const detail::Evaluated& ev) {
          scores.slice(0, b, e).copy_(ev.score);
          return 0.0;
        });
    r.stopped_early = run.done < m;
    // The weighting: the ridge fit of the scores that ran, weighted by LIME's kernel of the
    // cosine distance of each pattern to the all-on pattern.
    auto zr = z.slice(0, 0, run.done);
    auto cosine = zr.sum(1) / (zr.norm(2, 1) * std::sqrt(static_cast<double>(s))).clamp_min(1e-12);
    auto d = 1 - cosine;
    auto kernel = torch::sqrt(torch::exp(-(d * d) / (options.kernel_width() * options.kernel_width())));
    auto fit = detail::weighted_ridge(zr, scores.slice(0, 0, run.done), kernel, options.ridge());
    r.weights.push_back(fit.coef.cpu());
    r.intercept[i] = fit.intercept;
    r.r2[i] = fit.r2;
    r.map[i] = fit.coef.to(x.device(), x.scalar_type()).index_select(0, flat_seg).view({h, w});
  }
  return r;
}

}  // namespace cnnviz
