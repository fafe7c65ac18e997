#pragma once
// Class activation maps at any spatial layer: Grad-CAM (Selvaraju et al. 2017), Grad-CAM++
// (Chattopadhyay et al. 2018, closed form), LayerCAM (Jiang et al. 2021), Score-CAM (Wang
// et al. 2020) and guided Grad-CAM. Several layers and targets share one forward pass.
// Bodies in src/attribution.cpp.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/attribution_gradients.hpp"
#include "cnnviz/layers.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

enum class CamMethod { grad_cam, grad_cam_pp, layer_cam, score_cam };

#define CNNVIZ_CAM_OPTIONS(X)                                                                            \
  X(bool, relu, true, "ReLU on the weighted sum of activations, as the papers do (false keeps negative " \
    "evidence).")                                                                                        \
  X(int64_t, batch_size, 32, "Score-CAM: masked inputs per forward pass (bounds memory).") \
  X(ProgressCallback, progress, nullptr, \
    "Score-CAM: called after each batch of masked inputs; returning false stops (channels not yet " \
    "scored get weight 0). Python passes progress= to the call.")

struct CamOptions {
  CNNVIZ_OPTIONS(CamOptions, CNNVIZ_CAM_OPTIONS)
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
  bool stopped_early = false;  ///< Score-CAM's progress callback stopped it (the gradient CAMs never stop)
  bool interrupted = false;    ///< Ctrl-C stopped the loop (set by the Python bindings)

  /// The CamMap of `layer` (as spelled in the request; empty: the first layer) for the
  /// k-th target.
  const CamMap& at(const std::string& layer = {}, size_t k = 0) const;
  /// The first map (first layer, first target).
  const CamMap& front() const { return at(); }
  /// The map (N, h, w) of `layer` (empty: the first) for the k-th target, at the layer's
  /// resolution.
  const torch::Tensor& map(const std::string& layer = {}, size_t k = 0) const { return at(layer, k).map; }
  /// The map of `layer` for the k-th target upsampled to the input: (N, H, W).
  const torch::Tensor& upsampled(const std::string& layer = {}, size_t k = 0) const { return at(layer, k).upsampled; }
  /// The classes (N,) int64 of the k-th target.
  const torch::Tensor& target(size_t k = 0) const { return at({}, k).target; }
};

/// Class activation maps of `layers` (each with a spatial output (N, C, h, w)) for each of
/// `targets`, from one forward pass (plus one backward per target for the gradient
/// methods, or the masked forwards of Score-CAM). x (N, C, H, W). Each map comes at the
/// layer's resolution (N, h, w) and upsampled bilinearly to (N, H, W).
CamResult cam(const AnyModel& model, const torch::Tensor& x, const Layers& layers, const Targets& targets,
              CamMethod method, const CamOptions& options = {});

/// Grad-CAM: maps ReLU(sum_k mean_ij(dy/dA_k) A_k) of each layer (a name, a vector or a
/// brace list) for each target (default: the predicted class). For one layer and target:
/// result.map() (N, h, w), result.upsampled() (N, H, W).
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
  CNNVIZ_OPTIONS(GuidedGradCamOptions, CNNVIZ_GRADIENT_MAP_OPTIONS)
};

/// Guided Grad-CAM: guided backprop (N, C, H, W) times the upsampled Grad-CAM of `layer`
/// (N, 1, H, W); map (N, H, W) = |attribution| reduced over channels.
Attribution guided_grad_cam(const AnyModel& model, const torch::Tensor& x, const Layer& layer,
                            const Target& target = {}, const GuidedGradCamOptions& options = {});

}  // namespace cnnviz
