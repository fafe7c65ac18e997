#pragma once
// Class activation maps at any spatial layer: Grad-CAM (Selvaraju et al. 2017), Grad-CAM++
// (Chattopadhyay et al. 2018, closed form), LayerCAM (Jiang et al. 2021), Score-CAM (Wang
// et al. 2020) and guided Grad-CAM. Several layers and targets share one forward pass.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/attribution_gradients.hpp"

namespace cnnviz {

enum class CamMethod { grad_cam, grad_cam_pp, layer_cam, score_cam };

struct CamOptions {
  /// ReLU on the weighted sum of activations, as the papers do (false keeps negative evidence).
  TORCH_ARG(bool, relu) = true;
  /// Score-CAM: masked inputs per forward pass (bounds memory).
  TORCH_ARG(int64_t, batch_size) = 32;
  /// Score-CAM: called after each batch of masked inputs; returning false stops (channels
  /// not yet scored get weight 0).
  TORCH_ARG(ProgressCallback, progress) = nullptr;
};

/// One map: a layer and a target.
struct CamMap {
  std::string layer;
  torch::Tensor target;     ///< (N,) int64
  torch::Tensor map;        ///< (N, h, w) at the layer's resolution
  torch::Tensor upsampled;  ///< (N, H, W): bilinear to the input's resolution
};

struct CamResult {
  /// For each layer (in request order), for each target (in request order).
  std::vector<CamMap> maps;
  size_t num_targets = 1;
  torch::Tensor logits;  ///< (N, K) for x
  bool stopped_early = false;
  bool interrupted = false;    ///< Ctrl-C stopped the loop (set by the Python bindings)

  /// The map of `layer` (as spelled in the request) for the k-th target.
  const CamMap& at(const std::string& layer, size_t k = 0) const {
    TORCH_CHECK_INDEX(k < num_targets, "cnnviz: target index ", k, " out of range (", num_targets,
                      " targets)");
    for (size_t i = 0; i < maps.size(); i += num_targets)
      if (maps[i].layer == layer) return maps[i + k];
    TORCH_CHECK_INDEX(false, "cnnviz: no map for layer '", layer, "'");
  }
  /// The first map (first layer, first target).
  const CamMap& front() const {
    TORCH_CHECK_INDEX(!maps.empty(), "cnnviz: the result holds no map");
    return maps.front();
  }
};

namespace detail {

/// Bilinear resize of maps (N, h, w) -> (N, H, W).
inline torch::Tensor upsample_maps(const torch::Tensor& m, int64_t h, int64_t w) {
  namespace F = torch::nn::functional;
  return F::interpolate(m.unsqueeze(1), F::InterpolateFuncOptions()
                                            .size(std::vector<int64_t>{h, w})
                                            .mode(torch::kBilinear)
                                            .align_corners(false))
      .squeeze(1);
}

inline void check_spatial(const std::string& layer, const torch::Tensor& a, int64_t n) {
  TORCH_CHECK_VALUE(a.dim() == 4 && a.size(0) == n, "cnnviz: layer '", layer,
                    "' is not spatial: a CAM needs an output of shape (N, C, h, w), got ", a.sizes());
}

/// The map of one layer from its activations A and the gradients G (both (N, C, h, w)).
inline torch::Tensor gradient_cam(CamMethod method, const torch::Tensor& a, const torch::Tensor& g) {
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

inline CamResult finish_cams(std::vector<CamMap> maps, const CamOptions& o, const torch::Tensor& x) {
  CamResult r;
  for (auto& m : maps) {
    if (o.relu()) m.map = m.map.clamp_min(0);
    m.map = m.map.detach().to(x.scalar_type());
    m.upsampled = upsample_maps(m.map, x.size(2), x.size(3));
  }
  r.maps = std::move(maps);
  return r;
}

inline CamResult gradient_cams(const AnyModel& model, const torch::Tensor& x, const std::vector<std::string>& layers,
                               const std::vector<Target>& targets, CamMethod method, const CamOptions& o) {
  // x needs a graph for the activations to have one; no gradient reaches x itself.
  auto xi = x.detach().requires_grad_(true);
  CaptureRequest request;
  request.layers = layers;
  auto cap = model.capture(xi, request);
  auto logits = checked_logits(cap.output, x.size(0));
  std::vector<torch::Tensor> acts;
  for (auto& kv : cap.activations) {
    check_spatial(kv.first, kv.second, x.size(0));
    acts.push_back(kv.second);
  }
  std::vector<std::vector<CamMap>> per_target;
  for (size_t k = 0; k < targets.size(); ++k) {
    auto t = targets[k].resolve(logits);
    auto grads = torch::autograd::grad({target_score(logits, t)}, acts, {},
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
inline CamResult score_cams(const AnyModel& model, const torch::Tensor& x, const std::vector<std::string>& layers,
                            const std::vector<Target>& targets, const CamOptions& o) {
  torch::NoGradGuard no_grad;
  CaptureRequest request;
  request.layers = layers;
  auto cap = model.capture(x, request);
  auto logits = checked_logits(cap.output, x.size(0));
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
    std::vector<torch::Tensor> weights;
    const int64_t items = checked_product(n, c, "score_cam", "images", "channels");
    for (size_t k = 0; k < ts.size(); ++k) weights.push_back(torch::zeros({items}, x.options()));
    // Item i is channel i % C of image i / C.
    auto flat_acts = a.reshape({n * c, a.size(2), a.size(3)});
    ProgressCallback progress;
    if (o.progress())
      progress = [&](int64_t step, int64_t, double v) { return o.progress()(done_before + step, total, v); };
    if (!stopped)
      stopped = !for_each_batch(items, o.batch_size(), progress, [&](int64_t b, int64_t e) {
        auto idx = torch::arange(b, e, x.options().dtype(torch::kLong));
        auto img = idx.div(c, "floor");
        auto m = upsample_maps(flat_acts.slice(0, b, e).to(x.scalar_type()), h, w).flatten(1);
        auto lo = std::get<0>(m.min(1, true)), hi = std::get<0>(m.max(1, true));
        auto range = hi - lo;
        auto masks = ((m - lo) / torch::where(range > 0, range, torch::ones_like(range))).view({e - b, 1, h, w});
        auto probs = checked_logits(model.forward(x.index_select(0, img) * masks), e - b).softmax(1);
        auto valid = (range.squeeze(1) > 0).to(x.scalar_type());
        for (size_t k = 0; k < ts.size(); ++k)
          weights[k].slice(0, b, e).copy_(probs.gather(1, ts[k].index_select(0, img).view({-1, 1})).squeeze(1) * valid);
        return 0.0;
      });
    done_before += n * c;
    for (size_t k = 0; k < ts.size(); ++k)
      maps.push_back({kv.first, ts[k], (weights[k].view({n, c, 1, 1}) * a.to(x.scalar_type())).sum(1), {}});
  }
  auto r = finish_cams(std::move(maps), o, x);
  r.logits = logits.to(x.scalar_type());
  r.stopped_early = stopped;
  return r;
}

}  // namespace detail

/// Class activation maps of `layers` (each with a spatial output (N, C, h, w)) for each of
/// `targets`, from one forward pass (plus one backward per target for the gradient
/// methods, or the masked forwards of Score-CAM). x (N, C, H, W). Each map comes at the
/// layer's resolution (N, h, w) and upsampled bilinearly to (N, H, W).
inline CamResult cam(const AnyModel& model, const torch::Tensor& x, const Layers& layers,
                     const Targets& which, CamMethod method, const CamOptions& options = {}) {
  const std::vector<Target>& targets = which;
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: a CAM needs at least one layer");
  TORCH_CHECK_VALUE(!targets.empty(), "cnnviz: a CAM needs at least one target");
  detail::check_batch_size(options.batch_size());
  FreezeParameters frozen(model);
  auto r = method == CamMethod::score_cam ? detail::score_cams(model, x, layers, targets, options)
                                          : detail::gradient_cams(model, x, layers, targets, method, options);
  r.num_targets = targets.size();
  return r;
}

/// Grad-CAM: maps ReLU(sum_k mean_ij(dy/dA_k) A_k) of each layer (a name, a vector or a
/// brace list) for each target (default: the predicted class). For one layer and target:
/// result.front().map (N, h, w), .upsampled (N, H, W).
inline CamResult grad_cam(const AnyModel& model, const torch::Tensor& x, const Layers& layers,
                          const Targets& targets = {}, const CamOptions& options = {}) {
  return cam(model, x, layers, targets, CamMethod::grad_cam, options);
}

/// Grad-CAM++ (closed form): weights sum_ij alpha_ij ReLU(dy/dA_ij), alpha = g^2 / (2 g^2 +
/// sum_ab A_ab g^3).
inline CamResult grad_cam_pp(const AnyModel& model, const torch::Tensor& x, const Layers& layers,
                             const Targets& targets = {}, const CamOptions& options = {}) {
  return cam(model, x, layers, targets, CamMethod::grad_cam_pp, options);
}

/// LayerCAM: ReLU(sum_k ReLU(dy/dA_k) * A_k), element-wise weights.
inline CamResult layer_cam(const AnyModel& model, const torch::Tensor& x, const Layers& layers,
                           const Targets& targets = {}, const CamOptions& options = {}) {
  return cam(model, x, layers, targets, CamMethod::layer_cam, options);
}

/// Score-CAM: ReLU(sum_k s_k A_k), s_k the target's softmax score for x * M_k, M_k channel
/// k upsampled to (H, W) and scaled to [0, 1]. N * C masked forwards in batches.
inline CamResult score_cam(const AnyModel& model, const torch::Tensor& x, const Layers& layers,
                           const Targets& targets = {}, const CamOptions& options = {}) {
  return cam(model, x, layers, targets, CamMethod::score_cam, options);
}

struct GuidedGradCamOptions {
  TORCH_ARG(ChannelReduction, reduction) = ChannelReduction::max;
};

/// Guided Grad-CAM: guided backprop (N, C, H, W) times the upsampled Grad-CAM of `layer`
/// (N, 1, H, W); map (N, H, W) = |attribution| reduced over channels.
inline Attribution guided_grad_cam(const AnyModel& model, const torch::Tensor& x, const Layer& layer,
                                   const Target& target = {}, const GuidedGradCamOptions& options = {}) {
  auto guided = guided_backprop(model, x, target, GuidedBackpropOptions());
  auto cam = grad_cam(model, x, layer, Target(guided.target), CamOptions());
  guided.attribution = guided.attribution * cam.front().upsampled.unsqueeze(1);
  guided.map = detail::reduce_channels(guided.attribution, options.reduction());
  return guided;
}

}  // namespace cnnviz
