#pragma once
// What a network computes, made visible: activations by layer name, feature maps, filter
// weights, a layer summary and top-k predictions.

#include <torch/torch.h>

#include <fstream>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "cnnviz/detail/checked_capture.hpp"
#include "cnnviz/detail/paths.hpp"
#include "cnnviz/errors.hpp"
#include "cnnviz/model.hpp"

namespace cnnviz {

/// Activations of `layers` for a batch x (N, C, H, W), in request order, live in the
/// autograd graph of x. The forward stops after the last requested layer.
inline CaptureResult capture(const AnyModel& model, const torch::Tensor& x, const Layers& layers) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: capture needs at least one layer name");
  CaptureRequest request;
  request.layers = layers;
  request.need_output = false;
  return model.capture(x, request);  // the model's own errors pass through unchanged
}

/// Feature maps of the named layers, or of every leaf layer when `layers` is empty, in
/// one forward pass without autograd: x (N, C, H, W) -> name -> (N, C', H', W') (or
/// whatever shape the layer produces). Leaf layers that never run are left out.
inline std::vector<std::pair<std::string, torch::Tensor>> feature_maps(
    const AnyModel& model, const torch::Tensor& x, const Layers& which = {}) {
  check_image_batch(x);
  std::vector<std::string> layers = which;
  bool all = layers.empty();
  if (all)
    for (auto& l : model.layers())
      if (l.is_leaf) layers.push_back(l.name);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: the model lists no layers");
  torch::NoGradGuard no_grad;
  CaptureRequest request;
  request.layers = layers;
  request.need_output = false;
  request.skip_missing = all;
  auto r = detail::checked_capture(model, x, request, "feature_maps");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& kv : r.activations)
    if (kv.second.defined()) out.push_back(kv);
  return out;
}

/// One row of a model summary.
struct LayerSummary {
  std::string name;
  std::string type;
  std::vector<int64_t> output_shape;  ///< empty when the layer did not run
  int64_t num_parameters = 0;         ///< owned directly, not by children
  bool is_leaf = true;
};

/// Every module with its output shape for an input of `input_size` (N, C, H, W), from
/// one forward pass of zeros.
inline std::vector<LayerSummary> summary(const AnyModel& model, std::vector<int64_t> input_size) {
  TORCH_CHECK_VALUE(input_size.size() == 3 || input_size.size() == 4,
                    "cnnviz: input_size must be (C, H, W) or (N, C, H, W), got ", input_size.size(),
                    " numbers");
  if (input_size.size() == 3) input_size.insert(input_size.begin(), 1);
  for (auto s : input_size) TORCH_CHECK_VALUE(s > 0, "cnnviz: input_size must be positive");
  auto params = model.parameters();
  auto opts = torch::TensorOptions().dtype(torch::kFloat);
  if (!params.empty()) opts = opts.device(params.front().device()).dtype(params.front().dtype());
  auto infos = model.layers();
  std::vector<std::string> names;
  for (auto& l : infos) names.push_back(l.name);
  torch::NoGradGuard no_grad;
  CaptureRequest request;
  request.layers = names;
  request.need_output = names.empty();
  request.skip_missing = true;
  auto r = model.capture(torch::zeros(input_size, opts), request);
  std::vector<LayerSummary> rows;
  for (size_t i = 0; i < infos.size(); ++i) {
    LayerSummary s{infos[i].name, infos[i].type, {}, infos[i].num_parameters, infos[i].is_leaf};
    auto& t = r.activations[i].second;
    if (t.defined()) s.output_shape = t.sizes().vec();
    rows.push_back(std::move(s));
  }
  return rows;
}

/// A summary as a fixed-width table with a total parameter count.
inline std::string format_summary(const std::vector<LayerSummary>& rows) {
  size_t wn = 5, wt = 4;
  for (auto& r : rows) {
    wn = std::max(wn, r.name.size());
    wt = std::max(wt, r.type.size());
  }
  std::ostringstream os;
  os << std::left << std::setw(wn + 2) << "layer" << std::setw(wt + 2) << "type" << std::setw(22)
     << "output shape" << std::right << std::setw(12) << "params" << "\n";
  os << std::string(wn + wt + 38, '-') << "\n";
  int64_t total = 0;
  for (auto& r : rows) {
    std::ostringstream shape;
    if (r.output_shape.empty()) {
      shape << "(not run)";
    } else {
      shape << "(";
      for (size_t i = 0; i < r.output_shape.size(); ++i) shape << (i ? ", " : "") << r.output_shape[i];
      shape << ")";
    }
    total += r.num_parameters;
    os << std::left << std::setw(wn + 2) << r.name << std::setw(wt + 2) << r.type << std::setw(22)
       << shape.str() << std::right << std::setw(12) << r.num_parameters << "\n";
  }
  os << std::string(wn + wt + 38, '-') << "\n" << "total parameters: " << total << "\n";
  return os.str();
}

/// A conv layer's filters ready to show.
struct FilterWeights {
  torch::Tensor weight;  ///< (O, I, kH, kW) as stored, detached
  torch::Tensor mean;    ///< (O, kH, kW): mean over input channels
  torch::Tensor rgb;     ///< (O, 3, kH, kW) in [0, 1], each filter min-max scaled; undefined unless I == 3
};

/// The filters of `layer` (a module with a 4-D `weight`, e.g. Conv2d).
inline FilterWeights filter_weights(const AnyModel& model, const Layer& layer) {
  auto w = model.parameter(layer, "weight");
  if (!w.defined()) {
    // A block (e.g. MobileNetV2's "features.0", a Conv-BN-ReLU Sequential): name its first
    // convolution rather than just refusing.
    std::string type, conv;
    for (const auto& l : model.layers()) {
      if (l.name == layer.name()) type = l.type;
      if (conv.empty() && l.name.rfind(layer.name() + ".", 0) == 0) {
        auto cw = model.parameter(l.name, "weight");
        if (cw.defined() && cw.dim() == 4) conv = l.name;
      }
    }
    TORCH_CHECK_VALUE(conv.empty(), "cnnviz: layer '", layer, "' (", type,
                      ") is a block, not a convolution; its first convolution is '", conv, "'");
  }
  TORCH_CHECK_VALUE(w.defined(), "cnnviz: layer '", layer, "' has no weight parameter");
  TORCH_CHECK_VALUE(w.dim() == 4, "cnnviz: layer '", layer,
                    "' is not a 2-D convolution: its weight has shape ", w.sizes());
  FilterWeights f;
  f.weight = w.detach().to(torch::kFloat).cpu();
  f.mean = f.weight.mean(1);
  if (w.size(1) == 3) {
    auto flat = f.weight.flatten(1);
    auto lo = std::get<0>(flat.min(1, true)).view({-1, 1, 1, 1});
    auto hi = std::get<0>(flat.max(1, true)).view({-1, 1, 1, 1});
    f.rgb = (f.weight - lo) / (hi - lo).clamp_min(1e-12);
  }
  return f;
}

/// One class of a top-k prediction.
struct Prediction {
  int64_t index = 0;
  std::string label;
  double probability = 0;
};

/// Class names, one a line: `source` is a file path, or the name of a label set installed
/// with cnnviz ("imagenet": 1000 ImageNet classes in torchvision's order, "cifar10"), looked
/// up in $CNNVIZ_LABELS_DIR, then in the installed package's share/cnnviz/labels, then
/// where the build would install them, then in the source tree. A missing file or set is
/// cnnviz::FileNotFoundError.
namespace detail {
/// load_labels with `package_dir` (may be null) searched after $CNNVIZ_LABELS_DIR: the
/// installed CMake package passes its own share/cnnviz/labels (src/labels.cpp).
std::vector<std::string> load_labels(const std::string& source, const char* package_dir);
}  // namespace detail
inline std::vector<std::string> load_labels(const std::string& source) {
#ifdef CNNVIZ_LABELS_DIR  // set by cnnvizConfig.cmake of an installed package
  return detail::load_labels(source, CNNVIZ_LABELS_DIR);
#else
  return detail::load_labels(source, nullptr);
#endif
}

/// Top-k classes by softmax probability for each image of x (N, C, H, W) -> N lists of k.
/// `labels` (empty: names are the indices) must have one name per class.
inline std::vector<std::vector<Prediction>> predict(const AnyModel& model, const torch::Tensor& x,
                                                    int64_t k = 5,
                                                    const std::vector<std::string>& labels = {}) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(k >= 1, "cnnviz: k must be at least 1, got ", k);
  torch::NoGradGuard no_grad;
  auto logits = model.forward(x);
  TORCH_CHECK_VALUE(logits.dim() == 2, "cnnviz: predict needs logits of shape (N, K), got ",
                    logits.sizes());
  int64_t classes = logits.size(1);
  TORCH_CHECK_VALUE(k <= classes, "cnnviz: k = ", k, " exceeds the ", classes, " classes");
  TORCH_CHECK_VALUE(labels.empty() || static_cast<int64_t>(labels.size()) == classes,
                    "cnnviz: ", labels.size(), " labels for a model with ", classes, " classes");
  auto probs = logits.to(torch::kFloat).softmax(1).cpu();
  auto top = probs.topk(k, 1);
  auto p = std::get<0>(top), idx = std::get<1>(top);
  std::vector<std::vector<Prediction>> out(x.size(0));
  for (int64_t n = 0; n < x.size(0); ++n)
    for (int64_t j = 0; j < k; ++j) {
      int64_t i = idx[n][j].item<int64_t>();
      out[n].push_back({i, labels.empty() ? std::to_string(i) : labels[i], p[n][j].item<double>()});
    }
  return out;
}

/// Top-k classes of one image: x (C, H, W) or (1, C, H, W) -> k predictions. The
/// single-image form of predict(), returned by value so that
/// `for (auto& p : predict_one(model, x))` owns what it iterates.
inline std::vector<Prediction> predict_one(const AnyModel& model, const torch::Tensor& x, int64_t k = 5,
                                           const std::vector<std::string>& labels = {}) {
  TORCH_CHECK_VALUE(x.defined() && (x.dim() == 3 || (x.dim() == 4 && x.size(0) == 1)),
                    "cnnviz: predict_one needs one image (C, H, W) or (1, C, H, W), got shape ",
                    x.defined() ? x.sizes() : torch::IntArrayRef{}, "; use predict() for a batch");
  auto all = predict(model, x.dim() == 3 ? x.unsqueeze(0) : x, k, labels);
  return std::move(all.front());
}

}  // namespace cnnviz
